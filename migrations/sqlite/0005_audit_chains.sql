-- One audit chain per org (`org:<org_id>`), `platform` for events of no org, and `legacy` for
-- every event written before: those keep their seq and hash (history is never rewritten) and
-- the first checkpoint records where that chain ended.
--
-- `seq` now counts within a chain. `position` (the rowid) orders all events as they were
-- stored (listing, paging). SQLite cannot change a primary key in place, so the table is
-- rebuilt.
create table audit_event_chained (
    position integer not null primary key,
    chain text not null,
    seq integer not null,
    audit_event_id blob not null unique,
    occurred_at text not null,
    org_id blob,
    actor_id text,
    action text not null,
    target_id text,
    hash text not null,
    payload text not null,
    unique (chain, seq)
) strict;
insert into audit_event_chained (position, chain, seq, audit_event_id, occurred_at, org_id,
    actor_id, action, target_id, hash, payload)
select seq, 'legacy', seq, audit_event_id, occurred_at, org_id, actor_id, action, target_id,
    hash, payload
from audit_event;
drop table audit_event;
alter table audit_event_chained rename to audit_event;

-- Audit listing filters, each paged by position.
create index audit_event_org_idx on audit_event (org_id, position);
create index audit_event_actor_idx on audit_event (actor_id, position);
create index audit_event_action_idx on audit_event (action, position);
create index audit_event_target_idx on audit_event (target_id, position);

-- Time-window filters (since/until) and retention.
create index audit_event_occurred_idx on audit_event (occurred_at);

-- The last link of each chain, one row per chain.
create table audit_chain (
    chain text not null primary key,
    seq integer not null,
    hash text not null
) strict;
insert into audit_chain (chain, seq, hash) select 'legacy', seq, hash from audit_head where seq > 0;
drop table audit_head;

-- Signed checkpoints of every chain head. Ids are UUIDv7, so their order is the order of
-- issue.
create table audit_checkpoint (
    checkpoint_id blob not null primary key,
    issued_at text not null,
    payload text not null
) strict;
create index audit_checkpoint_issued_idx on audit_checkpoint (issued_at);
