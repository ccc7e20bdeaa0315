-- The audit table is the outbox: how far the relay has published each chain, and the lease
-- that lets one replica at a time relay.
create table audit_relay (
    chain text not null primary key,
    seq integer not null
) strict;

create table lease (
    name text not null primary key,
    holder text not null,
    expires_at text not null
) strict;
