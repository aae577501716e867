//! A RocksDB store of versioned table rows: one column family per table, every change kept
//! as a version stamped with its event time, read as of any time.

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};

use super::keys;
use crate::time::Time;

/// Layout version of the state directory; bump on any incompatible change.
pub const FORMAT: &str = "labeljoin-tables 1";
const FORMAT_FILE: &str = "FORMAT";

/// Why the store could not be used. Each names the directory and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or handle) has the store open for writing.
    #[error(
        "state directory {0} is locked by another running job; stop it or use another --state"
    )]
    Locked(PathBuf),
    /// The directory was written by an incompatible version of labeljoin.
    #[error("state directory {dir} has format {found:?}, this build reads {FORMAT:?}; use a new --state directory")]
    Incompatible {
        /// The directory.
        dir: PathBuf,
        /// What its FORMAT file says.
        found: String,
    },
    /// A snapshot's files do not match its manifest.
    #[error("snapshot {dir} is corrupted: checksum {found} does not match its manifest's {expected}; restore another version")]
    Corrupt {
        /// The snapshot directory.
        dir: PathBuf,
        /// Checksum in the manifest.
        expected: String,
        /// Checksum of the files.
        found: String,
    },
    /// A table name the store does not have.
    #[error("no table {0:?} in this state directory")]
    UnknownTable(String),
    /// Any other RocksDB or file error.
    #[error("state directory {dir}: {message}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        message: String,
    },
}

/// One version of a row: the event time of the change and the encoded row.
pub type Version = (Time, Vec<u8>);

/// Versioned tables in one RocksDB instance.
///
/// A state directory holds `FORMAT` and the database in `db/`; snapshots (see
/// [`super::snapshot`]) have the same layout, so a snapshot opens like a state directory.
pub struct TableStore {
    db: DB,
    dir: PathBuf,
    /// Per local worker: every version before this time is written (see `written_through`).
    progress: std::sync::Mutex<Vec<Time>>,
}

/// The RocksDB directory inside a state (or snapshot) directory.
pub fn db_dir(state: &Path) -> PathBuf {
    state.join("db")
}

/// Block cache shared by every table: hot rows are served without decompressing.
const BLOCK_CACHE_BYTES: usize = 256 << 20;

fn db_options() -> Options {
    static CACHE: std::sync::OnceLock<rocksdb::Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES));
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    let mut opts = Options::default();
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_block_based_table_factory(&table);
    opts
}

impl TableStore {
    /// Opens (creating if needed) the writable store of a state directory with these tables.
    pub fn open(dir: &Path, tables: &[&str]) -> Result<TableStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        check_format(dir, true)?;
        let mut opts = db_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let path = db_dir(dir);
        let mut names: Vec<String> = DB::list_cf(&opts, &path).unwrap_or_default();
        for t in tables {
            if !names.iter().any(|n| n == t) {
                names.push(t.to_string());
            }
        }
        let cfs = names
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(n, db_options()));
        let db = DB::open_cf_descriptors(&opts, &path, cfs).map_err(|e| rocks(dir, e))?;
        Ok(TableStore {
            db,
            dir: dir.to_path_buf(),
            progress: Default::default(),
        })
    }

    /// Opens an existing state or snapshot directory for reading only (no lock taken, no
    /// file written); a writer may have it open meanwhile.
    pub fn open_read_only(dir: &Path) -> Result<TableStore, StoreError> {
        check_format(dir, false)?;
        let opts = db_options();
        let path = db_dir(dir);
        let names = DB::list_cf(&opts, &path).map_err(|e| rocks(dir, e))?;
        let db =
            DB::open_cf_for_read_only(&opts, &path, names, false).map_err(|e| rocks(dir, e))?;
        Ok(TableStore {
            db,
            dir: dir.to_path_buf(),
            progress: Default::default(),
        })
    }

    /// Opens a state directory that a running job may be writing, as a RocksDB secondary
    /// instance: it takes no lock and sees the writer's changes after each
    /// [`catch_up`](Self::catch_up). `scratch` holds the secondary's own log files.
    pub fn open_secondary(dir: &Path, scratch: &Path) -> Result<TableStore, StoreError> {
        check_format(dir, false)?;
        let mut opts = db_options();
        opts.set_max_open_files(-1); // required by secondary instances
        let path = db_dir(dir);
        let names = DB::list_cf(&opts, &path).map_err(|e| rocks(dir, e))?;
        let db = DB::open_cf_as_secondary(&opts, &path, &scratch.to_path_buf(), names)
            .map_err(|e| rocks(dir, e))?;
        Ok(TableStore {
            db,
            dir: dir.to_path_buf(),
            progress: Default::default(),
        })
    }

    /// A secondary instance: reads what the writer has written since the last call.
    pub fn catch_up(&self) -> Result<(), StoreError> {
        self.db
            .try_catch_up_with_primary()
            .map_err(|e| rocks(&self.dir, e))
    }

    /// Table names (column families other than RocksDB's default).
    pub fn tables(&self) -> Vec<String> {
        let names = DB::list_cf(&Options::default(), db_dir(&self.dir)).unwrap_or_default();
        names.into_iter().filter(|n| n != "default").collect()
    }

    fn cf(&self, table: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(table)
            .ok_or_else(|| StoreError::UnknownTable(table.to_string()))
    }

    /// Writes versions `(key, time, row)` of one table atomically.
    pub fn put_versions<'a>(
        &self,
        table: &str,
        versions: impl IntoIterator<Item = (&'a [u8], Time, &'a [u8])>,
    ) -> Result<(), StoreError> {
        let cf = self.cf(table)?;
        let mut batch = WriteBatch::default();
        let mut k = Vec::new();
        for (key, time, row) in versions {
            keys::encode(key, time, &mut k);
            batch.put_cf(cf, &k, row);
        }
        self.db.write(batch).map_err(|e| rocks(&self.dir, e))
    }

    /// The newest version of `key` at or before `as_of`: the row after all events `<= as_of`.
    pub fn get(&self, table: &str, key: &[u8], as_of: Time) -> Result<Option<Version>, StoreError> {
        let mut it = self.db.raw_iterator_cf(self.cf(table)?);
        let mut seek = Vec::new();
        keys::encode(key, as_of, &mut seek);
        it.seek(&seek);
        let found = match (it.key(), it.value()) {
            (Some(k), Some(v)) => match keys::decode(k) {
                Some((kk, t)) if kk == key => Some((t, v.to_vec())),
                _ => None,
            },
            _ => None,
        };
        it.status().map_err(|e| rocks(&self.dir, e))?;
        Ok(found)
    }

    /// Versions of `key` with time in `[from, to]`, oldest first.
    pub fn history(
        &self,
        table: &str,
        key: &[u8],
        from: Time,
        to: Time,
    ) -> Result<Vec<Version>, StoreError> {
        let mut it = self.db.raw_iterator_cf(self.cf(table)?);
        let mut seek = Vec::new();
        keys::encode(key, to, &mut seek);
        it.seek(&seek);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            match keys::decode(k) {
                Some((kk, t)) if kk == key && t >= from => out.push((t, v.to_vec())),
                _ => break,
            }
            it.next();
        }
        it.status().map_err(|e| rocks(&self.dir, e))?;
        out.reverse();
        Ok(out)
    }

    /// Drops versions older than `cutoff`, always keeping each key's newest version at or
    /// before it (so reads as of `cutoff` or later are unchanged). Returns how many went.
    pub fn apply_retention(&self, table: &str, cutoff: Time) -> Result<u64, StoreError> {
        let cf = self.cf(table)?;
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek_to_first();
        let mut batch = WriteBatch::default();
        let (mut removed, mut current, mut kept_old): (u64, Vec<u8>, bool) = (0, Vec::new(), false);
        while let Some(k) = it.key() {
            let Some((key, t)) = keys::decode(k) else {
                break;
            };
            if key != current.as_slice() {
                current = key.to_vec();
                kept_old = false;
            }
            if t < cutoff {
                // Newest first: the first version below the cutoff is the one reads need.
                if kept_old {
                    batch.delete_cf(cf, k);
                    removed += 1;
                }
                kept_old = true;
            }
            it.next();
        }
        it.status().map_err(|e| rocks(&self.dir, e))?;
        self.db.write(batch).map_err(|e| rocks(&self.dir, e))?;
        Ok(removed)
    }

    /// Declares how many workers of this process write versions.
    pub fn expect_writers(&self, workers: usize) {
        *self.progress.lock().unwrap() = vec![0; workers];
    }

    /// Records that `worker` (global index) has written every version before `watermark`.
    pub fn mark_written(&self, worker: usize, watermark: Time) {
        let mut p = self.progress.lock().unwrap();
        let n = p.len();
        if n > 0 {
            p[worker % n] = p[worker % n].max(watermark);
        }
    }

    /// Every version with a time below this is written: reads as of earlier times are final.
    pub fn written_through(&self) -> Time {
        self.progress
            .lock()
            .unwrap()
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
    }

    /// The RocksDB handle (for checkpoints).
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn io(dir: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    }
}

fn rocks(dir: &Path, e: rocksdb::Error) -> StoreError {
    let message = e.to_string();
    // RocksDB's words for a held LOCK file, from another process or from this one.
    if message.contains("/LOCK:") || message.contains("lock hold by current process") {
        StoreError::Locked(dir.to_path_buf())
    } else {
        io(dir, message)
    }
}

/// Checks (or, for a new writable directory, writes) the FORMAT file.
fn check_format(dir: &Path, create: bool) -> Result<(), StoreError> {
    let path = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == FORMAT => Ok(()),
        Ok(found) => Err(StoreError::Incompatible {
            dir: dir.to_path_buf(),
            found: found.trim().to_string(),
        }),
        Err(_)
            if create
                && std::fs::read_dir(dir)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(true) =>
        {
            std::fs::write(&path, format!("{FORMAT}\n")).map_err(|e| io(dir, e))
        }
        Err(e) => Err(io(
            dir,
            format!("no {FORMAT_FILE} file ({e}): not a labeljoin state directory"),
        )),
    }
}
