-- Webhook deliveries: the outbox of notifications to configured endpoints, and their log.
-- A delivery is written in the same transaction as what it announces (a budget reaching a
-- state), so a committed change is notified and a rolled-back one never is; a worker sends
-- pending ones, retrying with backoff.
create table webhook_delivery (
    delivery_id blob not null primary key,
    -- The org the event is about; null for platform events.
    org_id blob references org (org_id),
    event_type text not null,
    url text not null,
    payload text not null,
    created_at text not null,
    -- `pending` (to send at next_attempt_at), `delivered` or `failed` (gave up).
    state text not null check (state in ('pending', 'delivered', 'failed')),
    attempts integer not null,
    next_attempt_at text not null,
    last_status integer,
    last_error text,
    delivered_at text
) strict;

-- The worker's search: pending deliveries that are due.
create index webhook_delivery_due_idx on webhook_delivery (next_attempt_at) where state = 'pending';
