// `sqlx::migrate!` embeds the files of migrations/postgres/ (at the workspace root) at compile time
// but cannot tell Cargo to watch that directory on stable Rust, so a new migration alone would
// not rebuild the crate and would silently never run.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
