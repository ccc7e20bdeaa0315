-- Spend budgets and the usage counted against them.

-- One budget per scope: the org itself (scope_id = org_id), a service account of it, or a
-- member (scope_id = user id). Thresholds are percentages of the limit, inclusive.
create table budget (
    org_id blob not null references org (org_id),
    scope text not null check (scope in ('org', 'service_account', 'member')),
    scope_id blob not null,
    period text not null check (period in ('daily', 'weekly', 'monthly', 'total')),
    limit_cents integer not null check (limit_cents >= 0),
    warn_percent integer not null,
    block_percent integer not null,
    created_at text not null,
    updated_at text not null,
    version integer not null,
    primary key (org_id, scope, scope_id)
) strict;

-- Every usage event counted, by the id its source gave it: a second delivery of the same
-- event (a retried POST, a Kafka redelivery) finds its row and counts nothing.
create table usage_event (
    org_id blob not null references org (org_id),
    source_event_id text not null,
    amount_cents integer not null,
    occurred_at text not null,
    recorded_at text not null,
    service_account_id blob,
    user_id blob,
    api_key_id blob,
    primary key (org_id, source_event_id)
) strict;

-- Spend per scope and UTC day (days since the Unix epoch), whether or not a budget exists yet:
-- a budget's spend is the sum over the days of its period, so a budget set or changed
-- mid-period sees what was already spent, and no period boundary needs a job. Increments are
-- single-statement upserts, so concurrent usage never loses one.
create table usage_spend (
    org_id blob not null references org (org_id),
    scope text not null check (scope in ('org', 'service_account', 'member')),
    scope_id blob not null,
    day integer not null,
    spent_cents integer not null,
    primary key (org_id, scope, scope_id, day)
) strict;

-- Each state a budget reached in each period, recorded once: the first writer of a row audits
-- and notifies the change, so spend oscillating around a threshold notifies once.
create table budget_state (
    org_id blob not null references org (org_id),
    scope text not null,
    scope_id blob not null,
    period_start text not null,
    state text not null check (state in ('warn', 'blocked')),
    reached_at text not null,
    primary key (org_id, scope, scope_id, period_start, state)
) strict;
