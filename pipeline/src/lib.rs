//! covermap pipeline: the use cases, where the stages meet the store.
//!
//! The stage crates are pure — `ingest` reads and checks what devices send, `roads` matches
//! tracks and cuts them into cells, `vision` looks at frames, `trust` measures and judges,
//! `scoring` closes epochs — and `store` keeps rows and blobs. This crate joins them: it
//! [`accept`]s an upload (check, keep the bytes, queue the job), runs a [`worker`] that leases
//! each job and [`process`]es it stage by stage into the one outcome the store writes (against
//! the [`road_tiles`] around it, read on demand), and
//! [`judge`]s the frames kept pending while the vision models were missing once they are in
//! place, blurs reported frames further where auditors mark them ([`reports`]), erases a
//! contributor's uploads at their request ([`erasure`]), keeps the policy in force and changes it
//! by proposal and vote ([`governance`]), and carries out the epoch use cases ([`epochs`]) the map's ([`maps`]: tiles and reward weights), planners' ([`demand`]) and drivers' before
//! driving ([`estimate`]: what a planned route would earn). `cli` and `web` only wire: they parse
//! arguments or requests and call in here.

pub mod accept;
pub mod demand;
pub mod epochs;
pub mod erasure;
pub mod estimate;
pub mod governance;
pub mod judge;
pub mod maps;
mod process;
pub mod reports;
pub mod road_tiles;
mod verify;
pub mod worker;

pub use accept::{AcceptError, Accepted, accept_upload};
pub use road_tiles::{RoadTiles, Roads};
pub use worker::{WorkerConfig, load_roads, run_pool, sweep_originals, work_once};
