-- Audit exports: jobs that write one org's trail (or, for platform auditors, all of it) as an
-- NDJSON file in the object store. A replica claims a pending job by moving it to running in
-- one statement; `claim` names that attempt, so a replica that lost a job (it stalled and the
-- job was taken over) can no longer record progress or an outcome for it.
create table audit_export (
    audit_export_id uuid primary key,
    -- Null: the whole trail (platform auditors only).
    org_id uuid references org (org_id),
    -- The actor id of whoever asked for it.
    requested_by text not null,
    since timestamptz,
    until timestamptz,
    status text not null check (status in ('pending', 'running', 'done', 'failed')),
    events_written bigint not null default 0,
    -- Lowercase hex SHA-256 of the whole file, once done.
    sha256 text,
    error text,
    -- Where the file is, once done.
    object_key text,
    claim uuid,
    created_at timestamptz not null,
    -- Moved by every page written: a running job whose row stops moving has lost its replica.
    updated_at timestamptz not null
);

-- The worker's search for jobs to claim: pending ones, and running ones gone quiet.
create index audit_export_open_idx on audit_export (updated_at)
    where status in ('pending', 'running');

-- An org's exports are its own (see 0004): a unit of work confined to one org sees none of
-- another's, nor the platform's whole-trail exports.
alter table audit_export enable row level security;
alter table audit_export force row level security;
create policy audit_export_scope on audit_export
    using (uos_all_orgs() or org_id = uos_scope_org());
