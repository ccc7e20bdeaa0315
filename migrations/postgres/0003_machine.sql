-- Machine identities: service accounts, their API keys, revoked client-credentials access
-- tokens, and the org's limit on API-key lifetimes. Conventions are those of 0001_init.sql;
-- day counts are u32 in the domain, so they are bigint here (every u32 fits).

-- Longest lifetime, in days, of an API key issued in the org; null = no org limit.
alter table org add column api_key_max_days bigint;

-- Org-scoped non-human principals. roles is a jsonb array of role names, as for memberships.
-- A deleted account keeps its row (audit trail) but gives up its name. max_key_age_days and
-- refuse_after_days are its key rotation policy; client_secret_hash is the keyed hash of the
-- current OAuth2 client secret.
create table service_account (
    service_account_id uuid primary key,
    org_id uuid not null references org (org_id),
    name text not null,
    description text,
    roles jsonb not null,
    status text not null check (status in ('active', 'disabled', 'deleted')),
    max_key_age_days bigint,
    refuse_after_days bigint,
    client_secret_hash text,
    client_secret_created_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    deleted_at timestamptz,
    version bigint not null
);

-- Names are unique among the org's undeleted accounts; a deleted account's name is free again.
-- error.rs maps the name.
create unique index service_account_org_name_uq on service_account (org_id, name)
    where status <> 'deleted';

-- Account listing of one org, paged in creation order.
create index service_account_org_idx on service_account (org_id, service_account_id);

-- API keys. Only the keyed hash of the key text is kept; prefix is the public lookup part of
-- it. scopes is a jsonb array of permission names, as for custom roles. replaced_by/replaces
-- link the two keys of a rotation (no foreign keys: the service may write either side first).
-- last_used_at is recorded in batches and is not an edit (no version bump).
create table api_key (
    api_key_id uuid primary key,
    org_id uuid not null references org (org_id),
    service_account_id uuid not null references service_account (service_account_id),
    name text not null,
    prefix text not null,
    secret_hash text not null,
    scopes jsonb not null,
    created_at timestamptz not null,
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    replaced_by uuid,
    replaces uuid,
    overdue_reported_at timestamptz,
    version bigint not null
);

-- Every API-key authentication looks its key up by prefix; two keys must never share one.
-- error.rs maps the name.
create unique index api_key_prefix_uq on api_key (prefix);

-- The keys of one account, paged in creation order; also revoking them all at account
-- deletion, the overdue sweeps (which go account by account) and the foreign key check when
-- an account row is deleted.
create index api_key_service_account_idx on api_key (service_account_id, api_key_id);

-- Client-credentials access tokens revoked before their expiry (RFC 7009), by jti. A row is
-- only needed until the token would have expired anyway.
create table revoked_access_token (
    jti uuid primary key,
    expires_at timestamptz not null
);

-- Purging the denials of expired tokens.
create index revoked_access_token_expires_idx on revoked_access_token (expires_at);
