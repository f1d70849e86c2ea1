//! Build script: rebuild when a migration changes.
//!
//! `sqlx::migrate!` embeds `migrations/` at compile time, but cargo does not know about those
//! files; without this line a new or edited migration would not trigger a rebuild.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
