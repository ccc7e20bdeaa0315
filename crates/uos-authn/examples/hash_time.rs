//! Time one argon2id hash with the default (OWASP) parameters, as the service configures them:
//! `cargo run --release -p uos-authn --example hash_time`. Prints the median of 30 hashes in ms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;
use uos_authn::{PasswordHasher, PasswordParams};

fn main() {
    let hasher = PasswordHasher::new(PasswordParams::default()).expect("default parameters");
    // One warm-up hash: the first allocation of the 19 MiB block is not representative.
    hasher.hash("warm up the allocator").unwrap();
    let mut ms: Vec<f64> = (0..30)
        .map(|i| {
            let t = Instant::now();
            hasher.hash(&format!("benchmark password {i}")).unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!("{:.2}", ms[ms.len() / 2]);
}
