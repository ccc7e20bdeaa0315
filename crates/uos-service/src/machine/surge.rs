//! Per-replica detection of API keys whose request rate jumps past a multiple of their own
//! recent baseline (the quarantine's trigger). Pure: no I/O, and the clock is the caller's
//! (Unix seconds), so the rules below are tested exactly.
//!
//! Each key's requests are counted in fixed windows of `window_secs` (aligned to the epoch).
//! When a window with traffic ends, its count is folded into the key's baseline, an
//! exponentially weighted mean ([`ALPHA`]) of its earlier windows *with traffic*: a key that
//! runs in bursts (a batch job every few minutes) is compared with its bursts, not with the
//! quiet between them. The window a replica first sees a key in is partial and is not history.
//! A window trips the key when its count reaches `multiple` × baseline and `min_requests`
//! (both inclusive), once the key has `min_history_windows` windows of history; a key trips
//! at most once until [`Detector::forget`] (its release, or any change to the key).
//!
//! The request path costs two atomic loads and one atomic add per request; the key's lock is
//! taken once per window (to fold the last one) and when it trips. A key idle for
//! [`IDLE_WINDOWS`] windows starts over (its old baseline says nothing about it any more) and
//! is dropped from memory by [`Detector::forget_idle`]; at most `max_keys` keys are tracked.

use crate::kernel::config::QuarantineConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Weight of the newest window in the baseline: about the last seven windows with traffic
/// matter, so a key's baseline follows it as its traffic grows, but a spike within one window
/// still stands out against it.
pub(crate) const ALPHA: f64 = 0.25;

/// Windows without a request after which a key's history is forgotten.
pub(crate) const IDLE_WINDOWS: u64 = 60;

/// Keys tracked per replica. Only keys whose secret checked out are counted, so only holders
/// of real keys can add entries; past the bound, idle ones go first, then everything.
const MAX_KEYS: usize = 200_000;

/// "Never trips" as a `trip_at`.
const NEVER: u64 = u64::MAX;

/// The thresholds of [`QuarantineConfig`], as the detector uses them.
#[derive(Clone, Copy, Debug)]
struct Thresholds {
    multiple: f64,
    window_secs: u64,
    min_requests: u64,
    min_history_windows: u32,
}

/// What tripped a key: its count in the window, against its baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Trip {
    /// Requests of the key in the window so far (on this replica), when it tripped.
    pub(crate) observed: u64,
    /// The key's baseline: requests per window.
    pub(crate) baseline: f64,
    /// Windows of history the baseline is made of.
    pub(crate) history_windows: u32,
}

/// Every key this replica counts, by prefix (the API-key cache's key, and what key
/// invalidations name).
#[derive(Debug)]
pub(crate) struct Detector {
    limits: Thresholds,
    keys: RwLock<HashMap<String, Arc<KeyRate>>>,
    max_keys: usize,
}

impl Detector {
    /// `None` when detection is switched off.
    pub(crate) fn new(cfg: &QuarantineConfig) -> Option<Self> {
        cfg.enabled.then(|| Self::with_bound(cfg, MAX_KEYS))
    }

    fn with_bound(cfg: &QuarantineConfig, max_keys: usize) -> Self {
        Self {
            limits: Thresholds {
                multiple: cfg.multiple,
                window_secs: cfg.window_secs.max(1),
                min_requests: cfg.min_requests.max(1),
                min_history_windows: cfg.min_history_windows.max(1),
            },
            keys: RwLock::new(HashMap::new()),
            max_keys,
        }
    }

    /// The counter of the key with `prefix`: its history if this replica has one, else a new
    /// one starting at `now` (Unix seconds). Called when the key cache is filled, not per
    /// request.
    pub(crate) fn rate(&self, prefix: &str, now: i64) -> Arc<KeyRate> {
        if let Some(r) = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
        {
            return Arc::clone(r);
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= self.max_keys && !keys.contains_key(prefix) {
            let current = self.window_of(now);
            keys.retain(|_, r| !r.is_idle(current));
            if keys.len() >= self.max_keys {
                keys.clear();
            }
        }
        let window = self.window_of(now);
        let limits = self.limits;
        Arc::clone(
            keys.entry(prefix.to_owned())
                .or_insert_with(|| Arc::new(KeyRate::new(limits, window))),
        )
    }

    /// Start the key over: it was released, revoked or otherwise changed. A request still
    /// holding the old counter counts into it, harmlessly.
    pub(crate) fn forget(&self, prefix: &str) {
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(prefix);
    }

    /// Drop keys idle for [`IDLE_WINDOWS`] windows at `now`.
    pub(crate) fn forget_idle(&self, now: i64) {
        let current = self.window_of(now);
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, r| !r.is_idle(current));
    }

    pub(crate) fn window_secs(&self) -> u64 {
        self.limits.window_secs
    }

    pub(crate) fn multiple(&self) -> f64 {
        self.limits.multiple
    }

    fn window_of(&self, now: i64) -> u64 {
        window_of(now, self.limits.window_secs)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn window_of(now: i64, window_secs: u64) -> u64 {
    u64::try_from(now).unwrap_or(0) / window_secs
}

/// One key's counter on this replica.
#[derive(Debug)]
pub(crate) struct KeyRate {
    limits: Thresholds,
    /// The window `count` counts.
    window: AtomicU64,
    count: AtomicU64,
    /// The count at which the key trips in this window ([`NEVER`]: it cannot).
    trip_at: AtomicU64,
    history: Mutex<History>,
}

#[derive(Debug)]
struct History {
    /// The baseline, requests per window with traffic.
    baseline: f64,
    /// Windows folded into `baseline`.
    windows: u32,
    /// The current window is the first this replica saw the key in (partial).
    first: bool,
    tripped: bool,
}

impl KeyRate {
    fn new(limits: Thresholds, window: u64) -> Self {
        Self {
            limits,
            window: AtomicU64::new(window),
            count: AtomicU64::new(0),
            trip_at: AtomicU64::new(NEVER),
            history: Mutex::new(History {
                baseline: 0.0,
                windows: 0,
                first: true,
                tripped: false,
            }),
        }
    }

    /// Count one request at `now` (Unix seconds); `Some` exactly once, for the request that
    /// trips the key.
    pub(crate) fn hit(&self, now: i64) -> Option<Trip> {
        let window = window_of(now, self.limits.window_secs);
        if self.window.load(Ordering::Acquire) != window {
            self.roll(window);
        }
        let n = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if n < self.trip_at.load(Ordering::Acquire) {
            return None;
        }
        self.trip(n)
    }

    /// Fold the finished window into the history and start counting `window`; once per window
    /// (whoever comes second finds it done). A request whose clock is behind another's never
    /// moves the window back.
    #[cold]
    fn roll(&self, window: u64) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.window.load(Ordering::Acquire);
        if last >= window {
            return;
        }
        // No trip against the old window's threshold while the new one is worked out.
        self.trip_at.store(NEVER, Ordering::Release);
        let finished = self.count.swap(0, Ordering::AcqRel);
        if window - last > IDLE_WINDOWS {
            h.baseline = 0.0;
            h.windows = 0;
            h.first = true;
        } else if h.first {
            // Partial: the replica started counting part way through it.
            h.first = false;
        } else if finished > 0 {
            h.baseline = if h.windows == 0 {
                finished as f64
            } else {
                h.baseline + ALPHA * (finished as f64 - h.baseline)
            };
            h.windows = h.windows.saturating_add(1);
        }
        self.window.store(window, Ordering::Release);
        self.trip_at.store(self.trip_at_for(&h), Ordering::Release);
    }

    /// The count that trips the key in a window, given its history.
    fn trip_at_for(&self, h: &History) -> u64 {
        let l = &self.limits;
        if h.tripped || h.windows < l.min_history_windows {
            return NEVER;
        }
        // `as` saturates; the baseline is at least 1 (only windows with traffic count).
        let spike = (l.multiple * h.baseline).ceil() as u64;
        spike.max(l.min_requests)
    }

    #[cold]
    fn trip(&self, observed: u64) -> Option<Trip> {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.tripped {
            return None;
        }
        h.tripped = true;
        self.trip_at.store(NEVER, Ordering::Release);
        Some(Trip {
            observed,
            baseline: h.baseline,
            history_windows: h.windows,
        })
    }

    /// Arm the key again after a trip that could not be recorded, so a later spike is caught.
    pub(crate) fn rearm(&self) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.tripped = false;
        self.trip_at.store(self.trip_at_for(&h), Ordering::Release);
    }

    fn is_idle(&self, current: u64) -> bool {
        current.saturating_sub(self.window.load(Ordering::Acquire)) > IDLE_WINDOWS
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A window of 10 s; trips at 10× the baseline and at least 100 requests, after 3
    /// windows of history.
    fn cfg() -> QuarantineConfig {
        QuarantineConfig {
            enabled: true,
            multiple: 10.0,
            window_secs: 10,
            min_requests: 100,
            min_history_windows: 3,
        }
    }

    /// The start of window `w` (plus `s` seconds into it).
    fn at(w: i64, s: i64) -> i64 {
        1_800_000_000 + w * 10 + s
    }

    /// `n` hits in window `w`; the trips they gave.
    fn burst(r: &KeyRate, w: i64, n: u64) -> Vec<Trip> {
        (0..n)
            .filter_map(|i| r.hit(at(w, (i % 10) as i64)))
            .collect()
    }

    /// A key counted from part way through window 0, with `per_window` requests in each of
    /// windows 0..=`windows`.
    fn steady(per_window: u64, windows: i64) -> (Detector, Arc<KeyRate>) {
        let d = Detector::new(&cfg()).unwrap();
        let r = d.rate("k", at(0, 5));
        for w in 0..=windows {
            assert!(burst(&r, w, per_window).is_empty(), "steady window {w}");
        }
        (d, r)
    }

    #[test]
    fn steady_traffic_never_trips() {
        let (_, r) = steady(500, 200);
        assert!(burst(&r, 201, 500).is_empty());
        // Doubling, even tripling, is growth, not a spike.
        for w in 202..210 {
            assert!(burst(&r, w, 1500).is_empty(), "window {w}");
        }
    }

    #[test]
    fn a_spike_past_the_multiple_trips_exactly_once_at_the_threshold() {
        // History: windows 1, 2, 3 (window 0 was partial).
        let (_, r) = steady(50, 3);
        // Baseline 50: trips at 10 × 50 = 500, inclusive.
        let mut trips = Vec::new();
        for i in 1..=2000u64 {
            if let Some(t) = r.hit(at(4, 1)) {
                trips.push((i, t));
            }
        }
        assert_eq!(
            trips,
            vec![(
                500,
                Trip {
                    observed: 500,
                    baseline: 50.0,
                    history_windows: 3
                }
            )],
            "one trip, at exactly multiple × baseline"
        );
        // Later windows, however busy, do not trip again.
        assert!(burst(&r, 5, 5000).is_empty());
        assert!(burst(&r, 6, 50_000).is_empty());
    }

    #[test]
    fn one_below_the_threshold_does_not_trip() {
        let (_, r) = steady(50, 3);
        assert!(burst(&r, 4, 499).is_empty(), "499 < 10 × 50");
        assert_eq!(burst(&r, 5, 500).len(), 0, "window 4 raised the baseline");
    }

    #[test]
    fn below_min_requests_never_trips() {
        // A quiet key: 2 a window, then 90 (45×, but under min_requests = 100).
        let (_, r) = steady(2, 5);
        assert!(burst(&r, 6, 99).is_empty());
        // From a baseline of 2, min_requests is the threshold: reached, it trips.
        let (_, r) = steady(2, 5);
        assert_eq!(burst(&r, 6, 100).len(), 1);
    }

    #[test]
    fn without_enough_history_nothing_trips() {
        let d = Detector::new(&cfg()).unwrap();
        let r = d.rate("new", at(0, 5));
        // A brand-new key floods at once: no baseline, no trip.
        assert!(burst(&r, 0, 10_000).is_empty(), "first (partial) window");
        assert!(burst(&r, 1, 10).is_empty());
        assert!(burst(&r, 2, 10).is_empty());
        // Two windows of history only (1 and 2): still not enough.
        assert!(burst(&r, 3, 10_000).is_empty());
    }

    #[test]
    fn quiet_windows_are_not_history_and_long_idleness_starts_over() {
        let (_, r) = steady(50, 3);
        // Nothing for 20 windows: the baseline is still 50 (the bursts), so a spike trips.
        assert_eq!(burst(&r, 24, 600).len(), 1);

        let (_, r) = steady(50, 3);
        // Idle longer than IDLE_WINDOWS: the key starts over, with no history.
        let back = 4 + IDLE_WINDOWS as i64 + 1;
        assert!(burst(&r, back, 10_000).is_empty());
        assert!(burst(&r, back + 1, 10_000).is_empty());
    }

    #[test]
    fn forgetting_starts_over_and_rearming_catches_the_next_spike() {
        let (d, r) = steady(50, 3);
        assert_eq!(burst(&r, 4, 500).len(), 1);
        d.forget("k");
        let fresh = d.rate("k", at(5, 0));
        assert!(!Arc::ptr_eq(&r, &fresh), "a released key starts over");
        assert!(
            burst(&fresh, 5, 5000).is_empty(),
            "no history after release"
        );

        let (_, r) = steady(50, 3);
        assert_eq!(burst(&r, 4, 500).len(), 1);
        r.rearm();
        assert_eq!(burst(&r, 4, 1).len(), 1, "re-armed: the next request trips");
    }

    #[test]
    fn concurrent_hits_trip_once() {
        let (_, r) = steady(50, 3);
        let trips: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| burst(&r, 4, 1000).len()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(trips, 1);
    }

    #[test]
    fn the_counter_outlives_cache_refreshes_and_memory_is_bounded() {
        let d = Detector::with_bound(&cfg(), 3);
        let r = d.rate("a", at(0, 0));
        assert!(
            Arc::ptr_eq(&r, &d.rate("a", at(0, 9))),
            "same key, same counter"
        );
        d.rate("b", at(0, 0));
        d.rate("c", at(0, 0));
        d.rate("d", at(0, 0));
        assert!(d.tracked() <= 3);
        d.rate("old", at(0, 0));
        let later = at(IDLE_WINDOWS as i64 + 2, 0);
        let busy = d.rate("busy", later);
        busy.hit(later);
        d.forget_idle(later);
        assert_eq!(d.tracked(), 1, "only the key seen lately is kept");
    }

    #[test]
    fn disabled_tracks_nothing() {
        let off = QuarantineConfig {
            enabled: false,
            ..cfg()
        };
        assert!(Detector::new(&off).is_none());
    }
}
