-- The audit table is the outbox: how far the relay has published each chain, and the lease
-- that lets one replica at a time relay.
create table audit_relay (
    chain text primary key,
    seq bigint not null
);

create table lease (
    name text primary key,
    holder text not null,
    expires_at timestamptz not null
);
