-- Retention and erasure: per-subject keys that encrypt personal data inside audit events
-- (purging a subject destroys its key, so the data is unreadable everywhere the sealed event
-- went while every chain still verifies), legal holds that stop the purge, and the marks the
-- purge job leaves on orgs.

-- One data key per subject: `user:<user id>`, or `email:<hex HMAC-SHA256 of the normalised
-- email>` for an address no account had when it was recorded (invites, failed logins). The
-- key is 32 random bytes, stored only as the key provider's ciphertext (`KeyProvider::encrypt`
-- with the context `subject-key:<subject>`). Destroying a subject deletes its row: nothing
-- else holds the key, so what it encrypted is erased.
create table subject_key (
    subject text collate "C" primary key,
    wrapped_key text not null,
    created_at timestamptz not null
);

-- A legal hold on a user or an org: while it stands, the purge job skips the user (and, for
-- an org, the org and every user who is a member of it). Exactly one of user_id and org_id.
create table legal_hold (
    legal_hold_id uuid primary key,
    user_id uuid references user_account (user_id),
    org_id uuid references org (org_id),
    reason text not null,
    -- The actor id of the platform admin who placed it.
    placed_by text not null,
    placed_at timestamptz not null,
    version bigint not null,
    check ((user_id is null) <> (org_id is null))
);

-- One hold per user and per org; the indexes also serve the purge job's "is it held" checks.
create unique index legal_hold_user_uq on legal_hold (user_id) where user_id is not null;
create unique index legal_hold_org_uq on legal_hold (org_id) where org_id is not null;

-- An org's hold is its own (see 0004); a user's hold (no org) is visible to every scope, as
-- events of no org are.
alter table legal_hold enable row level security;
alter table legal_hold force row level security;
create policy legal_hold_scope on legal_hold
    using (uos_all_orgs() or org_id = uos_scope_org() or org_id is null);

-- When the purge job removed the org's data (members, invites, roles, service accounts) and
-- anonymised its row; the row itself stays, as its audit chain names it.
alter table org add column purged_at timestamptz;

-- The purge job's search: deleted users and not yet purged deleted orgs, oldest deletion
-- first.
create index user_account_deleted_idx on user_account (deleted_at) where status = 'deleted';
create index org_deleted_idx on org (deleted_at) where status = 'deleted' and purged_at is null;
