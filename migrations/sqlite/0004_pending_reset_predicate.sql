-- The pending-approval index of password resets, with its predicate written as the one store
-- implementation writes the query (`requires_approval`, as on PostgreSQL, instead of
-- `requires_approval = 1`): SQLite uses a partial index only for a query whose WHERE clause
-- contains each term of the index's WHERE clause as written.
drop index password_reset_pending_idx;

create index password_reset_pending_idx on password_reset (created_at, reset_id)
    where requires_approval and approved_by is null and used_at is null;
