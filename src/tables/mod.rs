//! Lookup tables: versioned, time-travel key -> row stores in RocksDB, and their snapshots.

pub mod bench;
pub mod keys;
pub mod row;
pub mod snapshot;
pub mod store;

pub use store::{StoreError, TableStore, Version};
