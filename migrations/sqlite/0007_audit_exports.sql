-- Audit exports: jobs that write one org's trail (or, for platform auditors, all of it) as an
-- NDJSON file in the object store. A replica claims a pending job by moving it to running in
-- one statement; `claim` names that attempt, so a replica that lost a job (it stalled and the
-- job was taken over) can no longer record progress or an outcome for it.
create table audit_export (
    audit_export_id blob not null primary key,
    -- Null: the whole trail (platform auditors only).
    org_id blob references org (org_id),
    -- The actor id of whoever asked for it.
    requested_by text not null,
    since text,
    until text,
    status text not null check (status in ('pending', 'running', 'done', 'failed')),
    events_written integer not null default 0,
    -- Lowercase hex SHA-256 of the whole file, once done.
    sha256 text,
    error text,
    -- Where the file is, once done.
    object_key text,
    claim blob,
    created_at text not null,
    -- Moved by every page written: a running job whose row stops moving has lost its replica.
    updated_at text not null
) strict;

-- The worker's search for jobs to claim: pending ones, and running ones gone quiet.
create index audit_export_open_idx on audit_export (updated_at)
    where status in ('pending', 'running');
