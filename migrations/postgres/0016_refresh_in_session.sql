-- A session keeps its refresh state in its own row: the hash of its current refresh token and
-- a generation counter that every refresh moves on by one. A refresh is then one update of one
-- row, found by its primary key, where it used to mark a refresh_token row used, touch the
-- session and insert the successor's row. Tokens now carry their session id and generation
-- under an HMAC keyed with a server secret, so an earlier token of a session is still told
-- apart as a replay (and revokes the session) without a row of its own, and a made-up one is
-- refused before the store is asked. Only the current token's hash is stored (null: the
-- session has no usable refresh token, e.g. all of its tokens were used before this ran).
alter table session add column refresh_hash text;
alter table session add column refresh_generation bigint not null default 0;

-- Refresh tokens issued before this migration keep working: each session's unused token (the
-- newest, should a session have had several) becomes its current token at generation 0.
update session set refresh_hash = t.token_hash
from (select distinct on (session_id) session_id, token_hash from refresh_token
      where used_at is null order by session_id, created_at desc) as t
where session.session_id = t.session_id;

-- refresh_token stays, read-only, as the path of those earlier tokens: they name no session,
-- so their row maps them to one (unused: it refreshes once, at generation 0; used: a replay).
-- Nothing inserts into it any more. A later migration can drop it once every session older
-- than this one has reached its absolute end (`service.session_ttl_secs` after it ran).
comment on table refresh_token is
    'read-only since migration 0016: maps refresh tokens issued before it to their session';
