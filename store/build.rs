//! `sqlx::migrate!` embeds the migration folders when the crate compiles, and cargo does not know
//! it read them: without this, adding a migration file leaves a stale build that never runs it.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=build.rs");
}
