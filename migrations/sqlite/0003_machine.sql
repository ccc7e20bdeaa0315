-- Machine identities: service accounts, their API keys, revoked client-credentials access
-- tokens, and the org's limit on API-key lifetimes. Conventions are those of 0001_init.sql.

-- Longest lifetime, in days, of an API key issued in the org; null = no org limit.
alter table org add column api_key_max_days integer;

-- Org-scoped non-human principals. roles is a JSON array of role names, as for memberships.
-- A deleted account keeps its row (audit trail) but gives up its name. max_key_age_days and
-- refuse_after_days are its key rotation policy; client_secret_hash is the keyed hash of the
-- current OAuth2 client secret.
create table service_account (
    service_account_id blob not null primary key,
    org_id blob not null references org (org_id),
    name text not null,
    description text,
    roles text not null,
    status text not null check (status in ('active', 'disabled', 'deleted')),
    max_key_age_days integer,
    refuse_after_days integer,
    client_secret_hash text,
    client_secret_created_at text,
    created_at text not null,
    updated_at text not null,
    deleted_at text,
    version integer not null
) strict;

-- Names are unique among the org's undeleted accounts; a deleted account's name is free again.
create unique index service_account_org_name_uq on service_account (org_id, name)
    where status <> 'deleted';

-- Account listing of one org, paged in creation order.
create index service_account_org_idx on service_account (org_id, service_account_id);

-- API keys. Only the keyed hash of the key text is kept; prefix is the public lookup part of
-- it. scopes is a JSON array of permission names, as for custom roles. replaced_by/replaces
-- link the two keys of a rotation (no foreign keys: the service may write either side first).
-- last_used_at is recorded in batches and is not an edit (no version bump).
create table api_key (
    api_key_id blob not null primary key,
    org_id blob not null references org (org_id),
    service_account_id blob not null references service_account (service_account_id),
    name text not null,
    prefix text not null,
    secret_hash text not null,
    scopes text not null,
    created_at text not null,
    expires_at text,
    revoked_at text,
    last_used_at text,
    replaced_by blob,
    replaces blob,
    overdue_reported_at text,
    version integer not null
) strict;

-- Every API-key authentication looks its key up by prefix; two keys must never share one.
create unique index api_key_prefix_uq on api_key (prefix);

-- The keys of one account, paged in creation order; also revoking them all at account
-- deletion, the overdue sweeps (which go account by account) and the foreign key check when
-- an account row is deleted.
create index api_key_service_account_idx on api_key (service_account_id, api_key_id);

-- Client-credentials access tokens revoked before their expiry (RFC 7009), by jti. A row is
-- only needed until the token would have expired anyway.
create table revoked_access_token (
    jti blob not null primary key,
    expires_at text not null
) strict, without rowid;

-- Purging the denials of expired tokens.
create index revoked_access_token_expires_idx on revoked_access_token (expires_at);
