-- Declarative config: the reconciler's record of every org a config repo declares, what it
-- owns in them, and the switches people use on it (pause, sync now). Status must survive
-- restarts and be readable from any admin-api replica, so it lives in the store.
create table declared_org (
    -- The file's slug: an org is declared (and can fail validation) before it exists.
    slug text primary key,
    org_id uuid references org (org_id),
    file text not null,
    -- The commit whose version of the file was last applied (a later commit that leaves the
    -- file as it was changes nothing here).
    last_applied_revision text,
    last_applied_at timestamptz,
    -- The file as last applied: what the drift check compares the live org with.
    applied_text text,
    attempt_revision text,
    attempt_at timestamptz,
    attempt_result text check (attempt_result in ('applied', 'failed', 'rejected')),
    attempt_error text,
    drift_checked_at timestamptz,
    -- JSON array of `{path, declared, live}`; null until first checked.
    drift_differences text,
    paused_at timestamptz,
    pause_reason text,
    paused_by text
);

-- The guard of interactive writes looks a managed org up by its id.
create unique index declared_org_org_idx on declared_org (org_id) where org_id is not null;

-- One row: the newest revision read, the global pause, and the latest request to reconcile
-- now.
create table declarative_control (
    id text primary key check (id = 'global'),
    revision text,
    paused_at timestamptz,
    pause_reason text,
    paused_by text,
    sync_requested_at timestamptz
);

-- What the reconciler created, so pruning removes nothing a person made.
create table declared_object (
    org_id uuid not null references org (org_id),
    kind text not null check (kind in ('role', 'member', 'service_account')),
    -- Role or service account name, or member email (joined or invited).
    name text not null,
    created_at timestamptz not null,
    primary key (org_id, kind, name)
);

alter table declared_org enable row level security;
alter table declared_org force row level security;
create policy declared_org_scope on declared_org
    using (uos_all_orgs() or org_id = uos_scope_org() or org_id is null);
alter table declared_object enable row level security;
alter table declared_object force row level security;
create policy declared_object_scope on declared_object
    using (uos_all_orgs() or org_id = uos_scope_org());
