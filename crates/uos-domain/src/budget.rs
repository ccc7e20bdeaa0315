//! Spend budgets: what a budget covers, its UTC calendar period, and the state a spend puts it
//! in. Thresholds are inclusive (spent ≥ block% of the effective limit is blocked), and a cost
//! may spend a budget exactly to its threshold but not past it: these two rules are the whole
//! of "at the limit", written once here and used by the API, the decision point and the tests.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use crate::{DomainError, OrgId};

/// The largest limit a budget may have, in cents (ten trillion dollars): far above any real
/// budget, and small enough that `limit × percent` never overflows.
pub const MAX_LIMIT_CENTS: i64 = 1_000_000_000_000_000;

/// The largest threshold percentage: a block threshold above 100 lets spend overrun the limit
/// by a set margin; beyond ten times the limit a budget means nothing.
pub const MAX_PERCENT: i32 = 1000;

pub const DEFAULT_WARN_PERCENT: i32 = 80;
pub const DEFAULT_BLOCK_PERCENT: i32 = 100;

/// Who a budget limits: the whole org, one of its service accounts (and so every key of it),
/// or one member's spend in the org.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    Org,
    ServiceAccount,
    Member,
}

impl BudgetScope {
    pub const ALL: [BudgetScope; 3] = [Self::Org, Self::ServiceAccount, Self::Member];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::ServiceAccount => "service_account",
            Self::Member => "member",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| DomainError::invalid("invalid_scope", format!("unknown scope {raw}")))
    }
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One budget's target: the scope and the id it names (the org's own id for an org budget, the
/// service account's or the user's otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BudgetKey {
    pub org_id: OrgId,
    pub scope: BudgetScope,
    pub scope_id: Uuid,
}

/// A UTC calendar period; weeks start on Monday (ISO 8601).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    Total,
}

impl Period {
    pub const ALL: [Period; 4] = [Self::Daily, Self::Weekly, Self::Monthly, Self::Total];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Total => "total",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    "invalid_period",
                    "period must be daily, weekly, monthly or total",
                )
            })
    }

    /// The period that `at` falls in: its first instant and, except for `total`, the first
    /// instant after it. `total` starts at the Unix epoch and never ends.
    pub fn bounds(self, at: DateTime<Utc>) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        let day = at.date_naive();
        let (start, end) = match self {
            Self::Total => return (DateTime::UNIX_EPOCH, None),
            Self::Daily => (day, day + Duration::days(1)),
            Self::Weekly => {
                let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (monday, monday + Duration::days(7))
            }
            Self::Monthly => {
                let first = day.with_day(1).unwrap_or(day);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                };
                (first, next.unwrap_or(first + Duration::days(31)))
            }
        };
        (midnight(start), Some(midnight(end)))
    }

    /// [`bounds`](Self::bounds) as day numbers (days since the Unix epoch), the unit spend is
    /// kept in: the first day of the period and the first day after it.
    pub fn day_range(self, at: DateTime<Utc>) -> (i64, Option<i64>) {
        let (start, end) = self.bounds(at);
        (day_number(start), end.map(day_number))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
}

/// The UTC day `at` falls in, as days since the Unix epoch.
pub fn day_number(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(86_400)
}

/// Where spend stands against a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetState {
    Ok,
    Warn,
    Blocked,
}

impl BudgetState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Blocked => "blocked",
        }
    }
}

/// A budget as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub key: BudgetKey,
    pub period: Period,
    pub limit_cents: i64,
    pub warn_percent: i32,
    pub block_percent: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A budget's settings, checked: every bad field named at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetSettings {
    pub period: Period,
    pub limit_cents: i64,
    pub warn_percent: i32,
    pub block_percent: i32,
}

impl BudgetSettings {
    /// Checks the settings; each failure is `(field, message)`.
    pub fn check(
        period: Period,
        limit_cents: i64,
        warn_percent: Option<i32>,
        block_percent: Option<i32>,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let warn_percent = warn_percent.unwrap_or(DEFAULT_WARN_PERCENT);
        let block_percent = block_percent.unwrap_or(DEFAULT_BLOCK_PERCENT);
        let mut bad = Vec::new();
        if !(0..=MAX_LIMIT_CENTS).contains(&limit_cents) {
            bad.push((
                "limit_cents",
                format!("must be between 0 and {MAX_LIMIT_CENTS}"),
            ));
        }
        if !(1..=MAX_PERCENT).contains(&block_percent) {
            bad.push((
                "block_percent",
                format!("must be between 1 and {MAX_PERCENT}"),
            ));
        }
        // A warn threshold at or above the block threshold is allowed: the budget then goes
        // straight from `ok` to `blocked`, which is what such a setting asks for.
        if !(1..=MAX_PERCENT).contains(&warn_percent) {
            bad.push((
                "warn_percent",
                format!("must be between 1 and {MAX_PERCENT}"),
            ));
        }
        if bad.is_empty() {
            Ok(Self {
                period,
                limit_cents,
                warn_percent,
                block_percent,
            })
        } else {
            Err(bad)
        }
    }
}

impl Budget {
    /// The state `spent_cents` puts this budget in under `effective_limit_cents` (the limit
    /// raised by active overrides). Inclusive: reaching a threshold is being past it.
    pub fn state(&self, spent_cents: i64, effective_limit_cents: i64) -> BudgetState {
        let spent = i128::from(spent_cents) * 100;
        let limit = i128::from(effective_limit_cents);
        if spent >= limit * i128::from(self.block_percent) {
            BudgetState::Blocked
        } else if spent >= limit * i128::from(self.warn_percent) {
            BudgetState::Warn
        } else {
            BudgetState::Ok
        }
    }

    /// Whether spending `cost_cents` more is refused: the budget is already blocked, or the
    /// cost would take spend past the block threshold. Spending exactly up to the threshold
    /// is allowed (the budget is blocked afterwards).
    pub fn refuses(&self, spent_cents: i64, cost_cents: i64, effective_limit_cents: i64) -> bool {
        let threshold = i128::from(effective_limit_cents) * i128::from(self.block_percent);
        let spent = i128::from(spent_cents) * 100;
        let after = (i128::from(spent_cents) + i128::from(cost_cents.max(0))) * 100;
        spent >= threshold || after > threshold
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn budget(limit: i64, warn: i32, block: i32) -> Budget {
        Budget {
            key: BudgetKey {
                org_id: OrgId(Uuid::nil()),
                scope: BudgetScope::Org,
                scope_id: Uuid::nil(),
            },
            period: Period::Monthly,
            limit_cents: limit,
            warn_percent: warn,
            block_percent: block,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            version: 1,
        }
    }

    #[test]
    fn thresholds_are_inclusive() {
        let b = budget(1000, 80, 100);
        assert_eq!(b.state(799, 1000), BudgetState::Ok);
        assert_eq!(b.state(800, 1000), BudgetState::Warn);
        assert_eq!(b.state(999, 1000), BudgetState::Warn);
        assert_eq!(b.state(1000, 1000), BudgetState::Blocked);
        assert_eq!(b.state(5000, 1000), BudgetState::Blocked);
    }

    #[test]
    fn a_cost_may_reach_the_threshold_but_not_pass_it() {
        let b = budget(1000, 80, 100);
        assert!(
            !b.refuses(900, 100, 1000),
            "exactly to the limit is allowed"
        );
        assert!(b.refuses(900, 101, 1000), "one cent past it is not");
        assert!(
            b.refuses(1000, 0, 1000),
            "at the limit nothing more goes through"
        );
        assert!(!b.refuses(0, 0, 1000));
        let zero = budget(0, 80, 100);
        assert!(zero.refuses(0, 0, 0), "a zero budget allows nothing");
    }

    #[test]
    fn overrides_raise_the_effective_limit_and_percentages_scale_it() {
        let b = budget(1000, 50, 110);
        assert_eq!(b.state(1000, 1000), BudgetState::Warn);
        assert_eq!(b.state(1100, 1000), BudgetState::Blocked);
        assert_eq!(b.state(1100, 1500), BudgetState::Warn);
        assert!(!b.refuses(1000, 100, 1000));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let b = budget(MAX_LIMIT_CENTS, MAX_PERCENT, MAX_PERCENT);
        assert_eq!(b.state(i64::MAX, MAX_LIMIT_CENTS), BudgetState::Blocked);
        assert_eq!(b.state(MAX_LIMIT_CENTS, MAX_LIMIT_CENTS), BudgetState::Ok);
        assert!(!b.refuses(0, i64::MAX / 1000, MAX_LIMIT_CENTS));
        assert!(b.refuses(i64::MAX, i64::MAX, MAX_LIMIT_CENTS));
    }

    #[test]
    fn periods_are_utc_calendar_periods() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let day = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
        assert_eq!(
            Period::Daily.bounds(at),
            (day(2026, 12, 31), Some(day(2027, 1, 1)))
        );
        // 2026-12-31 is a Thursday.
        assert_eq!(
            Period::Weekly.bounds(at),
            (day(2026, 12, 28), Some(day(2027, 1, 4)))
        );
        assert_eq!(
            Period::Monthly.bounds(at),
            (day(2026, 12, 1), Some(day(2027, 1, 1)))
        );
        assert_eq!(
            Period::Monthly.bounds(day(2028, 2, 29)),
            (day(2028, 2, 1), Some(day(2028, 3, 1)))
        );
        assert_eq!(Period::Total.bounds(at), (DateTime::UNIX_EPOCH, None));
        let (first, end) = Period::Daily.day_range(at);
        assert_eq!(end, Some(first + 1));
        assert_eq!(day_number(DateTime::UNIX_EPOCH), 0);
        assert_eq!(day_number(day(1969, 12, 31)), -1);
    }

    #[test]
    fn settings_name_every_bad_field() {
        let bad = BudgetSettings::check(Period::Daily, -1, Some(0), Some(2000)).unwrap_err();
        let fields: Vec<_> = bad.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["limit_cents", "block_percent", "warn_percent"]);
        let above = BudgetSettings::check(Period::Daily, 10, Some(90), Some(80)).unwrap();
        assert_eq!((above.warn_percent, above.block_percent), (90, 80));
        let ok = BudgetSettings::check(Period::Total, 0, None, None).unwrap();
        assert_eq!((ok.warn_percent, ok.block_percent), (80, 100));
    }
}
