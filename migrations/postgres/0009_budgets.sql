-- Spend budgets and the usage counted against them.

-- One budget per scope: the org itself (scope_id = org_id), a service account of it, or a
-- member (scope_id = user id). Thresholds are percentages of the limit, inclusive.
create table budget (
    org_id uuid not null references org (org_id),
    scope text not null check (scope in ('org', 'service_account', 'member')),
    scope_id uuid not null,
    period text not null check (period in ('daily', 'weekly', 'monthly', 'total')),
    limit_cents bigint not null check (limit_cents >= 0),
    warn_percent bigint not null,
    block_percent bigint not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    version bigint not null,
    primary key (org_id, scope, scope_id)
);

-- Every usage event counted, by the id its source gave it: a second delivery of the same
-- event (a retried POST, a Kafka redelivery) finds its row and counts nothing.
create table usage_event (
    org_id uuid not null references org (org_id),
    source_event_id text collate "C" not null,
    amount_cents bigint not null,
    occurred_at timestamptz not null,
    recorded_at timestamptz not null,
    service_account_id uuid,
    user_id uuid,
    api_key_id uuid,
    primary key (org_id, source_event_id)
);

-- Spend per scope and UTC day (days since the Unix epoch), whether or not a budget exists yet:
-- a budget's spend is the sum over the days of its period, so a budget set or changed
-- mid-period sees what was already spent, and no period boundary needs a job. Increments are
-- single-statement upserts, so concurrent usage never loses one.
create table usage_spend (
    org_id uuid not null references org (org_id),
    scope text not null check (scope in ('org', 'service_account', 'member')),
    scope_id uuid not null,
    day bigint not null,
    spent_cents bigint not null,
    primary key (org_id, scope, scope_id, day)
);

-- Each state a budget reached in each period, recorded once: the first writer of a row audits
-- and notifies the change, so spend oscillating around a threshold notifies once.
create table budget_state (
    org_id uuid not null references org (org_id),
    scope text not null,
    scope_id uuid not null,
    period_start timestamptz not null,
    state text not null check (state in ('warn', 'blocked')),
    reached_at timestamptz not null,
    primary key (org_id, scope, scope_id, period_start, state)
);

-- Org data: visible only inside its org's scope (see 0004).
alter table budget enable row level security;
alter table budget force row level security;
create policy budget_scope on budget using (uos_all_orgs() or org_id = uos_scope_org());
alter table usage_event enable row level security;
alter table usage_event force row level security;
create policy usage_event_scope on usage_event using (uos_all_orgs() or org_id = uos_scope_org());
alter table usage_spend enable row level security;
alter table usage_spend force row level security;
create policy usage_spend_scope on usage_spend using (uos_all_orgs() or org_id = uos_scope_org());
alter table budget_state enable row level security;
alter table budget_state force row level security;
create policy budget_state_scope on budget_state using (uos_all_orgs() or org_id = uos_scope_org());
