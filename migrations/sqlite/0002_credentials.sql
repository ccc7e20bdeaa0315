-- Credentials around a user that are not the user row itself: TOTP second factor and its
-- recovery codes, password history, password resets and linked upstream identities. Every
-- secret arrives hashed or encrypted; the conventions are those of 0001_init.sql.

-- One TOTP enrolment per user; a new enrolment overwrites the row. last_used_step is the
-- newest accepted RFC 6238 step, so a code is accepted at most once.
create table user_totp (
    user_id blob not null primary key references user_account (user_id),
    secret_enc text not null,
    created_at text not null,
    confirmed_at text,
    last_used_step integer not null
) strict;

-- Single-use recovery codes (hashes). A used code keeps its row so that the count of the
-- remaining ones is exact.
create table user_recovery_code (
    user_id blob not null references user_account (user_id),
    code_hash text not null,
    created_at text not null,
    used_at text,
    primary key (user_id, code_hash)
) strict, without rowid;

-- Hashes a user had before, for the no-reuse rule.
create table password_history (
    user_id blob not null references user_account (user_id),
    password_hash text not null,
    created_at text not null
) strict;

-- "The last n hashes of a user", newest first.
create index password_history_user_idx on password_history (user_id, created_at desc);

-- Password resets. token_hash stays null while a reset of a privileged account waits for a
-- second admin's approval; approving it issues the token.
create table password_reset (
    reset_id blob not null primary key,
    user_id blob not null references user_account (user_id),
    token_hash text,
    created_at text not null,
    expires_at text not null,
    used_at text,
    requires_approval integer not null check (requires_approval in (0, 1)),
    approved_by blob references user_account (user_id),
    approved_at text,
    requested_ip text
) strict;

-- Using a reset looks it up by token hash; two resets must never share one (nulls are
-- distinct, so any number may wait for approval).
create unique index password_reset_token_hash_uq on password_reset (token_hash);

-- A user's resets; also spares a scan of every reset when a user row is deleted.
create index password_reset_user_idx on password_reset (user_id);

-- The approval queue, oldest first. Partial: only the few resets still waiting are indexed,
-- and a query must repeat this predicate word for word for SQLite to use it.
create index password_reset_pending_idx on password_reset (created_at, reset_id)
    where requires_approval = 1 and approved_by is null and used_at is null;

-- Accounts at upstream OIDC providers linked to local users; (issuer, subject) names an
-- upstream account, so it links to at most one user.
create table external_identity (
    issuer text not null,
    subject text not null,
    user_id blob not null references user_account (user_id),
    email text not null,
    created_at text not null,
    primary key (issuer, subject)
) strict, without rowid;

-- A user's linked identities; also spares a scan when a user row is deleted.
create index external_identity_user_idx on external_identity (user_id);
