-- Webhook deliveries: the outbox of notifications to configured endpoints, and their log.
-- A delivery is written in the same transaction as what it announces (a budget reaching a
-- state), so a committed change is notified and a rolled-back one never is; a worker sends
-- pending ones, retrying with backoff.
create table webhook_delivery (
    delivery_id uuid primary key,
    -- The org the event is about; null for platform events.
    org_id uuid references org (org_id),
    event_type text not null,
    url text not null,
    payload text not null,
    created_at timestamptz not null,
    -- `pending` (to send at next_attempt_at), `delivered` or `failed` (gave up).
    state text not null check (state in ('pending', 'delivered', 'failed')),
    attempts bigint not null,
    next_attempt_at timestamptz not null,
    last_status bigint,
    last_error text,
    delivered_at timestamptz
);

-- The worker's search: pending deliveries that are due.
create index webhook_delivery_due_idx on webhook_delivery (next_attempt_at) where state = 'pending';

alter table webhook_delivery enable row level security;
alter table webhook_delivery force row level security;
create policy webhook_delivery_scope on webhook_delivery
    using (uos_all_orgs() or org_id = uos_scope_org() or org_id is null);
