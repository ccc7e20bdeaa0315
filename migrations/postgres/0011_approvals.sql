-- The one approval mechanism: budget overrides, break-glass grants and privileged password
-- resets wait here for two distinct approvers (never the requester), then are active until
-- `active_until`. A pending request past `pending_until` or a grant past `active_until` is
-- expired whatever `status` says: the service reads it that way, so no job has to run.
create table approval (
    approval_id uuid primary key,
    kind text not null check (kind in ('budget_override', 'break_glass', 'password_reset')),
    -- The org the grant is in; null for platform-wide break-glass and password resets.
    org_id uuid references org (org_id),
    -- Who asked (for a password reset, the account): never one of the approvers.
    requested_by uuid not null references user_account (user_id),
    -- What it is about, where the kind has one thing: an override's budget scope id, the
    -- password reset's id.
    subject_id uuid,
    reason text not null,
    -- What the kind grants, as JSON: an override's `scope` and `extra_cents`, break-glass
    -- `roles`.
    detail text not null,
    -- `expired` is stored by the sweep that audits the expiry; before it runs, a row past its
    -- time reads as expired all the same.
    status text not null check (status in ('pending', 'active', 'rejected', 'revoked', 'expired')),
    -- The approvals so far, as a JSON array of `{user_id, approved_at}`. Written with the
    -- row's version like every optimistic update, so two approvers at once cannot both be
    -- lost or both be counted as the second.
    approvers text not null,
    created_at timestamptz not null,
    pending_until timestamptz not null,
    grant_secs bigint not null check (grant_secs > 0),
    active_from timestamptz,
    active_until timestamptz,
    ended_at timestamptz,
    ended_by uuid references user_account (user_id),
    version bigint not null
);

-- Lists: an org's requests of one kind, newest first (ids are time-ordered).
create index approval_kind_org_idx on approval (kind, org_id, approval_id);
-- The grants in force: what the authorization and budget checks look up.
create index approval_active_idx on approval (kind, org_id) where status = 'active';
create index approval_subject_idx on approval (subject_id) where subject_id is not null;

-- Privileged resets that were waiting for their one approver wait for two now, on this table.
insert into approval (approval_id, kind, org_id, requested_by, subject_id, reason, detail,
                      status, approvers, created_at, pending_until, grant_secs, version)
select reset_id, 'password_reset', null, user_id, reset_id, 'password reset requested', '{}',
       'pending', '[]', created_at, expires_at, 3600, 1
from password_reset
where requires_approval and approved_by is null and used_at is null;

alter table approval enable row level security;
alter table approval force row level security;
create policy approval_scope on approval
    using (uos_all_orgs() or org_id = uos_scope_org() or org_id is null);
