-- Initial schema of the embedded (SQLite) store.
--
-- Conventions shared with the PostgreSQL schema: singular table names, `<table>_id` keys,
-- lower-case SQL. SQLite specifics: tables are `strict` so a value of the wrong type is an
-- error instead of a silent coercion; uuids are 16-byte blobs (sqlx's encoding), whose byte
-- order is uuid order, so keyset paging over UUIDv7 keys is creation order; timestamps are
-- RFC 3339 text in UTC as sqlx writes them (same offset everywhere, so text order is time
-- order); JSON is text.

-- Organizations: the tenant boundary. A soft-deleted org keeps its row and its slug.
create table org (
    org_id blob not null primary key,
    slug text not null,
    display_name text not null,
    status text not null check (status in ('active', 'suspended', 'deleted')),
    status_before_delete text check (status_before_delete in ('active', 'suspended')),
    deleted_at text,
    created_at text not null,
    updated_at text not null,
    version integer not null
) strict;

-- Slugs are unique across every status: a deleted org can still be restored under its slug.
create unique index org_slug_uq on org (slug);

-- People. Named user_account because `user` is reserved in PostgreSQL; the key stays `user_id`
-- (not user_account_id) so that every table referencing a user reads the same, `user_id`.
create table user_account (
    user_id blob not null primary key,
    -- Stored normalised (trimmed, lower-case) by the domain's Email type.
    email text not null,
    display_name text,
    locale text,
    timezone text,
    status text not null check (status in ('pending_verification', 'active',
        'password_reset_required', 'suspended', 'deactivated', 'deleted', 'purged')),
    status_before_delete text,
    platform_admin integer not null check (platform_admin in (0, 1)),
    password_hash text,
    preferences text not null,
    created_at text not null,
    updated_at text not null,
    deleted_at text,
    version integer not null
) strict;

-- One account per address; also serves login lookups and the email-prefix range filter.
create unique index user_account_email_uq on user_account (email);

-- Admin listing filtered by status, paged in creation order.
create index user_account_status_idx on user_account (status, user_id);

-- A user's standing in one org: roles (JSON array of role names) and membership status.
create table membership (
    membership_id blob not null primary key,
    org_id blob not null references org (org_id),
    user_id blob not null references user_account (user_id),
    roles text not null,
    status text not null check (status in ('active', 'suspended')),
    created_at text not null,
    updated_at text not null,
    version integer not null
) strict;

-- At most one membership per user and org.
create unique index membership_org_user_uq on membership (org_id, user_id);

-- Member listing of one org, paged in membership creation order.
create index membership_org_idx on membership (org_id, membership_id);

-- "Which orgs is this user in": the org list of a non-admin and the user's own membership list.
create index membership_user_idx on membership (user_id);

-- Pending and past invitations; only the hash of the token is kept.
create table invite (
    invite_id blob not null primary key,
    org_id blob not null references org (org_id),
    email text not null,
    roles text not null,
    token_hash text not null,
    expires_at text not null,
    created_by blob references user_account (user_id),
    created_at text not null,
    accepted_at text,
    revoked_at text,
    version integer not null
) strict;

-- Accepting an invite looks it up by token hash; two invites must never share one.
create unique index invite_token_hash_uq on invite (token_hash);

-- Invite listing of one org, paged in creation order.
create index invite_org_idx on invite (org_id, invite_id);

-- Org-defined roles: permissions and inherited roles are JSON arrays of names.
create table custom_role (
    custom_role_id blob not null primary key,
    org_id blob not null references org (org_id),
    name text not null,
    description text,
    permissions text not null,
    inherits text not null,
    created_at text not null,
    updated_at text not null,
    version integer not null
) strict;

-- Role names are unique within an org; the index also serves lookups and listing by name.
create unique index custom_role_org_name_uq on custom_role (org_id, name);

-- Login sessions; access tokens carry the session id so revocation takes effect at once.
create table session (
    session_id blob not null primary key,
    user_id blob not null references user_account (user_id),
    created_at text not null,
    expires_at text not null,
    revoked_at text,
    -- Last login or refresh: the idle timeout counts from here.
    last_seen_at text not null,
    user_agent text,
    ip text
) strict;

-- Revoking every (or every other) session of a user: logout everywhere, suspension; and
-- listing a user's live sessions.
create index session_user_idx on session (user_id);

-- Refresh tokens, single use: a token presented after it was used means it was stolen or
-- replayed, so the row stays (used_at set) to recognise the reuse and revoke its session.
-- Only the hash is kept, as for invites; the hash is the key because every lookup is by it.
create table refresh_token (
    token_hash text not null primary key,
    session_id blob not null references session (session_id),
    created_at text not null,
    used_at text
) strict, without rowid;

-- The tokens of one session. A foreign key gets no index of its own: without this one, any
-- delete of a session row would scan every token to check for references to it.
create index refresh_token_session_idx on refresh_token (session_id);

-- Idempotency-Key uses, scoped per caller. status/response stay null while in flight.
create table idempotency (
    scope text not null,
    idem_key text not null,
    request_hash text not null,
    status integer,
    response text,
    created_at text not null,
    primary key (scope, idem_key)
) strict, without rowid;

-- The tamper-evident audit trail. seq is assigned by the writer (head seq + 1), so it is the
-- chain order; payload is the sealed event, the other columns are copies for filtering.
-- No foreign keys: audit rows outlive the orgs and users they mention.
create table audit_event (
    seq integer not null primary key,
    audit_event_id blob not null unique,
    occurred_at text not null,
    org_id blob,
    actor_id text,
    action text not null,
    target_id text,
    hash text not null,
    payload text not null
) strict;

-- Audit listing filters, each paged by seq.
create index audit_event_org_idx on audit_event (org_id, seq);
create index audit_event_actor_idx on audit_event (actor_id, seq);
create index audit_event_action_idx on audit_event (action, seq);
create index audit_event_target_idx on audit_event (target_id, seq);

-- Time-window filters (since/until) and retention.
create index audit_event_occurred_idx on audit_event (occurred_at);

-- The last link of the audit chain, one row, so appenders serialise on it.
create table audit_head (
    audit_head_id integer not null primary key check (audit_head_id = 1),
    seq integer not null,
    hash text not null
) strict;

-- Genesis: seq 0 and 64 zero characters, the hash the first event chains to.
insert into audit_head (audit_head_id, seq, hash)
values (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
