//! Time argon2id with the default (OWASP) parameters, as the service configures them:
//! `cargo run --release -p uos-authn --example hash_time`. Prints three numbers: the median
//! time of one hash in ms (30 hashes, one thread), hashes per second with one thread per core
//! for 5 s (the measured bound, memory contention included), and the mean CPU time of those
//! 30 hashes in ms. The CPU time leaves out what a hypervisor took from the thread (steal), so it
//! stays put when the machine's neighbours are busy; the wall time does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use uos_authn::{PasswordHasher, PasswordParams};

fn main() {
    let hasher = PasswordHasher::new(PasswordParams::default()).expect("default parameters");
    // One warm-up hash: the first allocation of the 19 MiB block is not representative.
    hasher.hash("warm up the allocator").unwrap();
    let cpu_before = thread_cpu_ms();
    let mut ms: Vec<f64> = (0..30)
        .map(|i| {
            let t = Instant::now();
            hasher.hash(&format!("benchmark password {i}")).unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    // A mean: the scheduler updates this figure at its ticks, too coarse for one hash.
    let cpu_ms = (thread_cpu_ms() - cpu_before) / ms.len() as f64;
    ms.sort_by(f64::total_cmp);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run = Duration::from_secs(5);
    let start = Instant::now();
    let done: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cores)
            .map(|_| {
                let hasher = hasher.clone();
                s.spawn(move || {
                    let mut n = 0;
                    while start.elapsed() < run {
                        hasher.hash("benchmark password").unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let per_sec = done as f64 / start.elapsed().as_secs_f64();
    println!("{:.2} {per_sec:.1} {cpu_ms:.2}", ms[ms.len() / 2]);
}

/// This thread's CPU time so far in ms: the first field of Linux's `schedstat`, in ns, which
/// the scheduler keeps without the time the hypervisor took. NaN where there is no such file.
fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e6)
}
