//! CPU time of the processes a benchmark run involves, read from `/proc` (Linux). Where each
//! request's CPU goes is steadier from run to run than throughput on a machine whose speed
//! drifts, and it shows what the server itself controls.

use anyhow::Context;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `/proc` reports CPU time in USER_HZ ticks, 100 a second on every Linux platform we run on.
const TICKS_PER_SEC: f64 = 100.0;

/// The server's hashing threads are named `uos-argon2-<n>` (`uos-service`'s hash pool).
const HASHING_THREAD: &str = "uos-argon2";

/// CPU milliseconds by part (per request, once divided).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuSplit {
    /// The server's argon2 threads.
    pub(crate) hashing: f64,
    /// Every other thread of the server (request handling, drivers, kernel time on them).
    pub(crate) server: f64,
    /// Every PostgreSQL process on the machine.
    pub(crate) postgres: f64,
    /// Every Redis process on the machine.
    pub(crate) redis: f64,
    /// The load generator (`wrk`), which shares the machine's cores with the rest.
    pub(crate) load: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Hashing,
    Server,
    Postgres,
    Redis,
    Load,
}

/// CPU seconds used so far by each thread of the server and each PostgreSQL, Redis and wrk
/// process, by id: processes come and go (a pool opens a connection), so the difference of
/// two samples is taken per id, not of totals.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuSample(HashMap<(Part, u32), f64>);

impl CpuSample {
    /// Now, for the server process `server_pid`.
    pub(crate) fn take(server_pid: u32) -> anyhow::Result<Self> {
        let mut sample = HashMap::new();
        // wrk has ended by the second sample, so its time is read from this process's count
        // of its ended children (the load generator is the only one that ends in between).
        sample.insert((Part::Load, 0), children_cpu_seconds()?);
        let tasks = format!("/proc/{server_pid}/task");
        for (tid, dir) in numbered(Path::new(&tasks))? {
            // A thread may end between listing and reading: it is simply not counted.
            let (Ok(name), Ok(used)) = (comm(&dir), cpu_seconds(&dir)) else {
                continue;
            };
            let part = if name.starts_with(HASHING_THREAD) {
                Part::Hashing
            } else {
                Part::Server
            };
            sample.insert((part, tid), used);
        }
        for (pid, dir) in numbered(Path::new("/proc"))? {
            let part = match comm(&dir).as_deref() {
                Ok("postgres") => Part::Postgres,
                Ok("redis-server") => Part::Redis,
                _ => continue,
            };
            if let Ok(used) = cpu_seconds(&dir) {
                sample.insert((part, pid), used);
            }
        }
        Ok(Self(sample))
    }

    /// CPU milliseconds per request from `self` to the `later` sample, by part. What a
    /// process used after `self` and before it ended is not seen.
    pub(crate) fn per_request_ms(&self, later: &Self, requests: u64) -> CpuSplit {
        let mut split = CpuSplit::default();
        for (&(part, id), &after) in &later.0 {
            let used = after - self.0.get(&(part, id)).copied().unwrap_or(0.0);
            let slot = match part {
                Part::Hashing => &mut split.hashing,
                Part::Server => &mut split.server,
                Part::Postgres => &mut split.postgres,
                Part::Redis => &mut split.redis,
                Part::Load => &mut split.load,
            };
            *slot += used * 1000.0 / requests.max(1) as f64;
        }
        split
    }
}

/// The whole machine's CPU time so far, from the first line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct MachineTimes {
    total: u64,
    /// Nobody ran: idle and waiting for I/O.
    idle: u64,
    /// The hypervisor ran someone else's machine while ours had work.
    steal: u64,
}

/// Shares of a stretch of time, 0 to 1, across all cores.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct MachineShares {
    pub(crate) idle: f64,
    pub(crate) steal: f64,
}

impl MachineTimes {
    pub(crate) fn take() -> anyhow::Result<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?)
    }

    /// The `cpu` line: user nice system idle iowait irq softirq steal (guest time is already
    /// inside user and nice, so it is not added again).
    fn parse(stat: &str) -> anyhow::Result<Self> {
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("/proc/stat has no cpu line")?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        anyhow::ensure!(ticks.len() == 8, "short cpu line in /proc/stat: {line}");
        Ok(Self {
            total: ticks.iter().sum(),
            idle: ticks[3] + ticks[4],
            steal: ticks[7],
        })
    }

    /// How the time from `self` to `later` was shared.
    pub(crate) fn shares(&self, later: &Self) -> MachineShares {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        MachineShares {
            idle: later.idle.saturating_sub(self.idle) as f64 / total,
            steal: later.steal.saturating_sub(self.steal) as f64 / total,
        }
    }
}

/// The numbered entries of a `/proc` directory (processes or threads), with their paths.
fn numbered(dir: &Path) -> anyhow::Result<Vec<(u32, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
        {
            found.push((id, path));
        }
    }
    Ok(found)
}

impl std::fmt::Display for CpuSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "argon2 threads {:.3} ms, other server threads {:.3} ms, PostgreSQL {:.3} ms, Redis {:.3} ms (non-hash {:.3} ms); wrk {:.3} ms",
            self.hashing,
            self.server,
            self.postgres,
            self.redis,
            self.server + self.postgres + self.redis,
            self.load
        )
    }
}

fn comm(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("comm");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim_end()
        .to_string())
}

/// User plus system time from `<dir>/stat`.
fn cpu_seconds(dir: &Path) -> anyhow::Result<f64> {
    // utime and stime: fields 14 and 15 of proc(5).
    stat_seconds(dir, 11)
}

/// User plus system time of this process's ended and waited-for children.
fn children_cpu_seconds() -> anyhow::Result<f64> {
    // cutime and cstime: fields 16 and 17 of proc(5).
    stat_seconds(Path::new("/proc/self"), 13)
}

/// The sum of two adjacent tick fields of `<dir>/stat`, the first `at` places after the
/// command name, in seconds.
fn stat_seconds(dir: &Path, at: usize) -> anyhow::Result<f64> {
    let path = dir.join("stat");
    let stat =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // The command name may contain spaces and parentheses; the fields follow its last ')',
    // which is field 2, so field n of proc(5) is at n - 3 from there.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        let raw = fields
            .get(i)
            .with_context(|| format!("{} has no field {}", path.display(), i + 3))?;
        Ok(raw.parse::<u64>()? as f64)
    };
    Ok((ticks(at)? + ticks(at + 1)?) / TICKS_PER_SEC)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn machine_shares_are_differences_of_the_cpu_line() {
        let a = MachineTimes::parse("cpu  100 0 20 500 10 0 5 15 0 0\ncpu0 1 2 3\n").unwrap();
        let b = MachineTimes::parse("cpu  180 0 30 520 10 0 5 55 7 0\ncpu0 1 2 3\n").unwrap();
        let shares = a.shares(&b);
        // 150 ticks in all: 20 idle, 40 stolen.
        assert!((shares.idle - 20.0 / 150.0).abs() < 1e-9, "{shares:?}");
        assert!((shares.steal - 40.0 / 150.0).abs() < 1e-9, "{shares:?}");
        assert!(MachineTimes::parse("intr 1 2").is_err());
        assert!(MachineTimes::parse("cpu  1 2 3").is_err());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let before = CpuSample::take(me).unwrap();
        assert!(!comm(Path::new("/proc/self")).unwrap().is_empty());
        // Burn some CPU so the count must move.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let used = before.per_request_ms(&CpuSample::take(me).unwrap(), 1);
        assert!(used.server > 0.0 && used.hashing == 0.0, "{used:?}");
    }

    #[test]
    fn counts_an_ended_child_as_load() {
        let me = std::process::id();
        let before = CpuSample::take(me).unwrap();
        // A shell loop that spends a few tenths of a second of CPU, then ends.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let used = before.per_request_ms(&CpuSample::take(me).unwrap(), 1);
        assert!(used.load >= 10.0, "{used:?}");
    }

    #[test]
    fn per_request_is_the_difference_per_id() {
        let before = CpuSample(HashMap::from([
            ((Part::Hashing, 1), 1.0),
            ((Part::Postgres, 7), 3.0),
            // Ended before the second sample: not counted, not subtracted.
            ((Part::Postgres, 8), 50.0),
        ]));
        let after = CpuSample(HashMap::from([
            ((Part::Hashing, 1), 3.0),
            ((Part::Postgres, 7), 3.1),
            // Started after the first sample: all of it counts.
            ((Part::Postgres, 9), 0.2),
            ((Part::Redis, 2), 0.0),
        ]));
        let per = before.per_request_ms(&after, 100);
        assert!((per.hashing - 20.0).abs() < 1e-9, "{per:?}");
        assert!((per.postgres - 3.0).abs() < 1e-9, "{per:?}");
        assert_eq!((per.server, per.redis), (0.0, 0.0));
    }
}
