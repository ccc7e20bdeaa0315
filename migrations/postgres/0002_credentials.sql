-- Credentials around a user that are not the user row itself: TOTP second factor and its
-- recovery codes, password history, password resets and linked upstream identities. Every
-- secret arrives hashed or encrypted; the conventions are those of 0001_init.sql.

-- One TOTP enrolment per user; a new enrolment overwrites the row. last_used_step is the
-- newest accepted RFC 6238 step, so a code is accepted at most once.
create table user_totp (
    user_id uuid primary key references user_account (user_id),
    secret_enc text not null,
    created_at timestamptz not null,
    confirmed_at timestamptz,
    last_used_step bigint not null
);

-- Single-use recovery codes (hashes). A used code keeps its row so that the count of the
-- remaining ones is exact.
create table user_recovery_code (
    user_id uuid not null references user_account (user_id),
    code_hash text not null,
    created_at timestamptz not null,
    used_at timestamptz,
    primary key (user_id, code_hash)
);

-- Hashes a user had before, for the no-reuse rule. password_hash breaks ties between
-- entries of one instant, in byte order as on SQLite.
create table password_history (
    user_id uuid not null references user_account (user_id),
    password_hash text collate "C" not null,
    created_at timestamptz not null
);

-- "The last n hashes of a user", newest first.
create index password_history_user_idx on password_history (user_id, created_at desc);

-- Password resets. token_hash stays null while a reset of a privileged account waits for a
-- second admin's approval; approving it issues the token.
create table password_reset (
    reset_id uuid primary key,
    user_id uuid not null references user_account (user_id),
    token_hash text,
    created_at timestamptz not null,
    expires_at timestamptz not null,
    used_at timestamptz,
    requires_approval boolean not null,
    approved_by uuid references user_account (user_id),
    approved_at timestamptz,
    requested_ip text
);

-- Using a reset looks it up by token hash; two resets must never share one (nulls are
-- distinct, so any number may wait for approval). error.rs maps the name.
create unique index password_reset_token_hash_uq on password_reset (token_hash);

-- A user's resets; also spares a scan of every reset when a user row is deleted.
create index password_reset_user_idx on password_reset (user_id);

-- The approval queue, oldest first. Partial: only the few resets still waiting are indexed.
create index password_reset_pending_idx on password_reset (created_at, reset_id)
    where requires_approval and approved_by is null and used_at is null;

-- Accounts at upstream OIDC providers linked to local users; (issuer, subject) names an
-- upstream account, so it links to at most one user. A second link violates
-- external_identity_pkey (the default name; error.rs maps it).
create table external_identity (
    issuer text not null,
    subject text not null,
    user_id uuid not null references user_account (user_id),
    email text not null,
    created_at timestamptz not null,
    primary key (issuer, subject)
);

-- A user's linked identities; also spares a scan when a user row is deleted.
create index external_identity_user_idx on external_identity (user_id);
