//! A RocksDB store of versioned table rows: one column family per table, every change kept
//! as a version stamped with its event time, read as of any time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB};

use super::ingest::{Ingester, Progress};
pub use super::options::all_keys;
use super::options::{db_options, one_key, sst_options};
use super::retention::{Cutoff, RetentionFilterFactory};
use super::{keys, pack};
use crate::time::Time;

/// Layout version of the state directory; bump on any incompatible change.
pub const FORMAT: &str = "labeljoin-tables 2";
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
    /// A retention cutoff for a table opened without retention.
    #[error("table {0:?} keeps every version: declare `retention` on it in the pipeline to drop old ones")]
    NoRetention(String),
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
    /// Finishes and ingests the table files of a writable store (first: dropped first,
    /// after ingesting what is queued).
    ingester: Option<Ingester>,
    db: Arc<DB>,
    dir: PathBuf,
    /// Per local worker: every version before this time is written (see `written_through`).
    progress: Progress,
    /// Table names (column families other than RocksDB's default), as opened.
    names: Vec<String>,
    /// Per table opened with retention: the cutoff its compactions apply (writable stores
    /// only).
    cutoffs: HashMap<String, Arc<Cutoff>>,
    /// Oldest and newest event times applied (see `observe_event_times`).
    oldest: AtomicU64,
    newest: AtomicU64,
    /// Table files written so far (names them in [`ingest_dir`]).
    ingested: AtomicU64,
    /// Writes of pending versions asked of every worker of this process (see
    /// [`TableStore::request_write`]).
    write_requests: AtomicU64,
    /// Digests of the table files of this store's previous snapshot.
    pub(super) snapshot_digests: std::sync::Mutex<super::snapshot::FileDigests>,
}

/// The RocksDB directory inside a state (or snapshot) directory.
pub fn db_dir(state: &Path) -> PathBuf {
    state.join("db")
}

/// Where a writable store puts table files before RocksDB ingests them.
fn ingest_dir(state: &Path) -> PathBuf {
    state.join("ingest")
}

/// Entries [`TableStore::get_at`] steps over before it seeks instead.
const STEPS_BEFORE_SEEK: usize = 8;

/// Column family names without RocksDB's `default`.
fn tables_of(names: Vec<String>) -> Vec<String> {
    names.into_iter().filter(|n| n != "default").collect()
}

impl TableStore {
    /// Opens (creating if needed) the writable store of a state directory with these
    /// tables; compactions of those in `retained` apply a retention cutoff
    /// ([`TableStore::set_retention_cutoff`]). The others' compactions run no filter: a
    /// filter is a call per record into it, ~8 % of a compaction's instructions.
    pub fn open(dir: &Path, tables: &[&str], retained: &[&str]) -> Result<TableStore, StoreError> {
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
        let cutoffs: HashMap<String, Arc<Cutoff>> = (retained.iter())
            .filter(|n| names.iter().any(|t| t == *n))
            .map(|n| (n.to_string(), Arc::default()))
            .collect();
        let cfs = names.iter().map(|n| {
            let mut cf = db_options();
            if let Some(cutoff) = cutoffs.get(n) {
                cf.set_compaction_filter_factory(RetentionFilterFactory::new(n, cutoff.clone()));
            }
            ColumnFamilyDescriptor::new(n, cf)
        });
        let db = Arc::new(DB::open_cf_descriptors(&opts, &path, cfs).map_err(|e| rocks(dir, e))?);
        // Files a crashed run wrote but did not ingest are not part of the state.
        std::fs::remove_dir_all(ingest_dir(dir))
            .or_else(ignore_missing)
            .and_then(|()| std::fs::create_dir_all(ingest_dir(dir)))
            .map_err(|e| io(dir, e))?;
        let progress = Progress::default();
        Ok(TableStore {
            ingester: Some(Ingester::start(db.clone(), progress.clone())),
            db,
            dir: dir.to_path_buf(),
            progress,
            names: tables_of(names),
            cutoffs,
            oldest: AtomicU64::new(Time::MAX),
            newest: AtomicU64::new(0),
            ingested: AtomicU64::new(0),
            write_requests: AtomicU64::new(0),
            snapshot_digests: Default::default(),
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
            DB::open_cf_for_read_only(&opts, &path, &names, false).map_err(|e| rocks(dir, e))?;
        Ok(TableStore::reader(db, dir, names))
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
        let db = DB::open_cf_as_secondary(&opts, &path, &scratch.to_path_buf(), &names)
            .map_err(|e| rocks(dir, e))?;
        Ok(TableStore::reader(db, dir, names))
    }

    /// A secondary instance: reads what the writer has written since the last call.
    pub fn catch_up(&self) -> Result<(), StoreError> {
        self.db
            .try_catch_up_with_primary()
            .map_err(|e| rocks(&self.dir, e))
    }

    /// A handle that only reads (no retention cutoffs).
    fn reader(db: DB, dir: &Path, names: Vec<String>) -> TableStore {
        TableStore {
            ingester: None,
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            progress: Default::default(),
            names: tables_of(names),
            cutoffs: HashMap::new(),
            oldest: AtomicU64::new(Time::MAX),
            newest: AtomicU64::new(0),
            ingested: AtomicU64::new(0),
            write_requests: AtomicU64::new(0),
            snapshot_digests: Default::default(),
        }
    }

    /// Table names (column families other than RocksDB's default).
    pub fn tables(&self) -> Vec<String> {
        self.names.clone()
    }

    fn cf(&self, table: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(table)
            .ok_or_else(|| StoreError::UnknownTable(table.to_string()))
    }

    /// Writes versions `(key, time, row)` of one table atomically.
    ///
    /// They go straight into a sorted table file that RocksDB takes over (ingestion):
    /// no memtable insert (a skip-list search with cache misses per entry), no
    /// write-ahead log and no flush. A file is visible to readers, secondary instances
    /// included, once ingested.
    pub fn put_versions<'a>(
        &self,
        table: &str,
        versions: impl IntoIterator<Item = (&'a [u8], Time, &'a [u8])>,
    ) -> Result<(), StoreError> {
        let versions: Vec<(&[u8], Time, &[u8])> = versions.into_iter().collect();
        self.ingest(table, !versions.is_empty(), |put| {
            pack::by_key(&versions, put)
        })?;
        self.wait_ingested()
    }

    /// [`TableStore::put_versions`] for versions that name their key by a number (see
    /// [`pack::by_number`]), without waiting: the file is ingested in the background, in
    /// order (see [`super::ingest`]); [`TableStore::mark_written`] after it counts once it
    /// is, and [`TableStore::wait_ingested`] waits for it.
    pub fn put_numbered<V: pack::Numbered + ?Sized>(
        &self,
        table: &str,
        versions: &V,
        scratch: &mut pack::Scratch,
    ) -> Result<(), StoreError> {
        self.ingest(table, !versions.is_empty(), |put| {
            pack::by_number(versions, scratch, put)
        })
    }

    /// Writes the entries `fill` puts (one per key, in stored-key order, as a table file
    /// requires) to a table file and queues it for ingestion.
    fn ingest(
        &self,
        table: &str,
        any: bool,
        fill: impl FnOnce(
            &mut dyn FnMut(&[u8], Time, &[u8]) -> Result<(), rocksdb::Error>,
        ) -> Result<(), rocksdb::Error>,
    ) -> Result<(), StoreError> {
        self.cf(table)?;
        if !any {
            return Ok(());
        }
        let path =
            ingest_dir(&self.dir).join(format!("{}.sst", self.ingested.fetch_add(1, Relaxed)));
        let mut file = rocksdb::SstFileWriter::create(sst_options());
        file.open(&path).map_err(|e| rocks(&self.dir, e))?;
        let mut stored = Vec::new();
        fill(&mut |key, oldest, value| {
            keys::encode(key, oldest, &mut stored);
            file.put(&stored, value)
        })
        .map_err(|e| rocks(&self.dir, e))?;
        self.ingester()?
            .file(table, path, file)
            .map_err(|message| self.failed(message))
    }

    /// The ingestion thread (writable stores only).
    fn ingester(&self) -> Result<&Ingester, StoreError> {
        self.ingester.as_ref().ok_or_else(|| StoreError::Io {
            dir: self.dir.clone(),
            message: "opened for reading only".into(),
        })
    }

    fn failed(&self, message: String) -> StoreError {
        StoreError::Io {
            dir: self.dir.clone(),
            message: format!("cannot ingest versions: {message}"),
        }
    }

    /// Waits until every table file queued so far is ingested (and every mark queued
    /// after it counted).
    pub fn wait_ingested(&self) -> Result<(), StoreError> {
        match &self.ingester {
            Some(i) => i.wait().map_err(|message| self.failed(message)),
            None => Ok(()),
        }
    }

    /// The newest version of `key` at or before `as_of`: the row after all events `<= as_of`.
    pub fn get(&self, table: &str, key: &[u8], as_of: Time) -> Result<Option<Version>, StoreError> {
        Ok(self.get_at(table, key, &[as_of])?.pop().flatten())
    }

    /// [`get`](Self::get) at several times through one iterator (a row read with its
    /// windows' earlier versions).
    pub fn get_at(
        &self,
        table: &str,
        key: &[u8],
        times: &[Time],
    ) -> Result<Vec<Option<Version>>, StoreError> {
        let mut it = self.db.raw_iterator_cf_opt(self.cf(table)?, one_key());
        let mut seek = Vec::new();
        let mut found = Vec::with_capacity(times.len());
        let mut previous = Time::MAX;
        for &as_of in times {
            // An earlier time a few entries further on (a window's start, for a key with
            // few versions per window) is reached by stepping, cheaper than a seek.
            // Stepping off the key's last entry also answers: it has nothing that early.
            let (mut stepped, mut none_older) = (false, false);
            if as_of <= previous && it.valid() {
                for _ in 0..STEPS_BEFORE_SEEK {
                    match it.key().and_then(keys::decode) {
                        Some((k, oldest)) if k == key && oldest > as_of => it.next(),
                        Some((k, _)) if k == key => {
                            stepped = true;
                            break;
                        }
                        _ => {
                            none_older = it.status().is_ok();
                            break;
                        }
                    }
                }
            }
            previous = as_of;
            if none_older {
                found.push(None);
                continue;
            }
            if !stepped {
                keys::encode(key, as_of, &mut seek);
                it.seek(&seek);
            }
            found.push(match (it.key(), it.value()) {
                (Some(k), Some(v)) => match keys::decode(k) {
                    Some((kk, oldest)) if kk == key => {
                        pack::at(v, oldest, as_of).map(|(t, row)| (t, row.to_vec()))
                    }
                    _ => None,
                },
                _ => None,
            });
        }
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
        self.newest_versions(table, key, from, to, usize::MAX)
    }

    /// The newest `limit` versions of `key` with time in `[from, to]`, oldest first (reads
    /// no further back than those).
    pub fn newest_versions(
        &self,
        table: &str,
        key: &[u8],
        from: Time,
        to: Time,
        limit: usize,
    ) -> Result<Vec<Version>, StoreError> {
        let mut it = self.db.raw_iterator_cf_opt(self.cf(table)?, one_key());
        let mut seek = Vec::new();
        keys::encode(key, to, &mut seek);
        it.seek(&seek);
        let mut out = Vec::new();
        // Entries newest first; an entry's versions at or after a newer entry's oldest one
        // were rewritten by it (a replay) and are skipped.
        let mut shadowed_from = Time::MAX;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let Some((_, oldest)) = keys::decode(k).filter(|(kk, _)| *kk == key) else {
                break;
            };
            out.extend(
                pack::versions(v, oldest)
                    .filter(|(t, _)| *t <= to && *t >= from && *t < shadowed_from)
                    .map(|(t, row)| (t, row.to_vec()))
                    .take(limit - out.len()),
            );
            if oldest < from || out.len() >= limit {
                break;
            }
            shadowed_from = oldest;
            it.next();
        }
        it.status().map_err(|e| rocks(&self.dir, e))?;
        out.reverse();
        Ok(out)
    }

    /// Lets compactions of `table` drop versions older than `cutoff`, always keeping each
    /// key's newest version before it (reads as of `cutoff` or later are unchanged).
    pub fn set_retention_cutoff(&self, table: &str, cutoff: Time) -> Result<(), StoreError> {
        let c = self.cutoff(table)?;
        c.time.fetch_max(cutoff, Relaxed);
        Ok(())
    }

    /// Applies retention now: sets the cutoff and compacts the whole table. Returns how
    /// many versions the compaction removed.
    pub fn apply_retention(&self, table: &str, cutoff: Time) -> Result<u64, StoreError> {
        let c = self.cutoff(table)?;
        let before = c.removed.load(Relaxed);
        self.set_retention_cutoff(table, cutoff)?;
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db
            .compact_range_cf_opt(self.cf(table)?, None::<&[u8]>, None::<&[u8]>, &opts);
        Ok(c.removed.load(Relaxed) - before)
    }

    fn cutoff(&self, table: &str) -> Result<&Arc<Cutoff>, StoreError> {
        self.cutoffs.get(table).ok_or_else(|| {
            if self.names.iter().any(|n| n == table) {
                StoreError::NoRetention(table.to_string())
            } else {
                StoreError::UnknownTable(table.to_string())
            }
        })
    }

    /// Records that events from `first` to `last` have been applied (versions at
    /// window-expiry instants may lie beyond `last`).
    pub fn observe_event_times(&self, first: Time, last: Time) {
        self.oldest.fetch_min(first, Relaxed);
        self.newest.fetch_max(last, Relaxed);
    }

    /// The oldest event time applied by this handle (`Time::MAX` if none).
    pub fn oldest_event_time(&self) -> Time {
        self.oldest.load(Relaxed)
    }

    /// The newest event time applied to the tables (0 if none): with the watermark, the
    /// event time retention is measured from.
    pub fn newest_event_time(&self) -> Time {
        self.newest.load(Relaxed)
    }

    /// Writes every memtable to disk (at the end of a run: the state is then complete in
    /// its table files).
    pub fn flush(&self) -> Result<(), StoreError> {
        let cfs: Vec<_> = self
            .tables()
            .iter()
            .filter_map(|t| self.db.cf_handle(t))
            .collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
            .map_err(|e| rocks(&self.dir, e))
    }

    /// Declares how many workers of this process write versions.
    pub fn expect_writers(&self, workers: usize) {
        *self.progress.lock().unwrap() = vec![0; workers];
    }

    /// Asks every worker of this process to write its pending versions. The watermark
    /// couples the workers: one writing alone stalls the others for as long as its write
    /// takes, so they write together.
    pub fn request_write(&self) {
        self.write_requests.fetch_add(1, Relaxed);
    }

    /// The number of the latest [`TableStore::request_write`] (0: none yet).
    pub fn write_requests(&self) -> u64 {
        self.write_requests.load(Relaxed)
    }

    /// Records that `worker` (global index) has written every version before `watermark`,
    /// once the table files it queued before are ingested.
    pub fn mark_written(&self, worker: usize, watermark: Time) -> Result<(), StoreError> {
        self.ingester()?
            .mark(worker, watermark)
            .map_err(|message| self.failed(message))
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

/// `Ok` for a file or directory that is already gone.
fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(e),
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
