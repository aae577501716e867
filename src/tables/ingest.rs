//! Table files handed to RocksDB by one background thread, in the order they were written.
//!
//! Finishing a table file syncs it, and each ingestion writes and syncs RocksDB's
//! MANIFEST: ~10 ms a file on the bench VM, four files a write, during which the writing
//! worker (and, through the watermark, every other) stood still. Workers now build the
//! files and queue them; this thread finishes and ingests them. A worker's "written
//! through" mark is queued behind its files, so it only counts once they are ingested.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rocksdb::{SstFileWriter, DB};

use crate::time::Time;

/// Per local worker: every version before this time is ingested.
pub type Progress = Arc<Mutex<Vec<Time>>>;

/// What the thread does, in queue order.
enum Job {
    /// Finish the file at `path` and ingest it into `table`.
    File {
        table: String,
        path: PathBuf,
        file: SstFileWriter<'static>,
    },
    /// Record that `worker` has written every version before `watermark`.
    Mark { worker: usize, watermark: Time },
}

/// Jobs queued and not done yet, and the first failure (after which nothing more is
/// ingested or marked, so no later version becomes visible without an earlier one).
#[derive(Default)]
struct Queue {
    waiting: usize,
    failed: Option<String>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    idle: Condvar,
}

/// The ingestion thread of a writable store.
pub struct Ingester {
    jobs: Option<Sender<Job>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Ingester {
    /// Starts the thread for `db` (whose tables are column families), marking `progress`.
    pub fn start(db: Arc<DB>, progress: Progress) -> Ingester {
        let (jobs, queue) = channel();
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("table-ingest".into())
            .spawn({
                let shared = shared.clone();
                move || run(&db, &progress, queue, &shared)
            })
            .expect("cannot start the table ingestion thread");
        Ingester {
            jobs: Some(jobs),
            shared,
            thread: Some(thread),
        }
    }

    /// Queues a filled table file of `table` at `path`: finished and ingested later.
    pub fn file(
        &self,
        table: &str,
        path: PathBuf,
        file: SstFileWriter<'static>,
    ) -> Result<(), String> {
        self.send(Job::File {
            table: table.to_string(),
            path,
            file,
        })
    }

    /// Queues the mark that `worker` has written every version before `watermark`.
    pub fn mark(&self, worker: usize, watermark: Time) -> Result<(), String> {
        self.send(Job::Mark { worker, watermark })
    }

    fn send(&self, job: Job) -> Result<(), String> {
        {
            let mut q = self.shared.queue.lock().unwrap();
            if let Some(e) = &q.failed {
                return Err(e.clone());
            }
            q.waiting += 1;
        }
        let jobs = self.jobs.as_ref().expect("jobs are sent before drop");
        jobs.send(job)
            .map_err(|_| "the table ingestion thread stopped".to_string())
    }

    /// Waits until every queued job is done; the first failure, if any.
    pub fn wait(&self) -> Result<(), String> {
        let mut q = self.shared.queue.lock().unwrap();
        while q.waiting > 0 && q.failed.is_none() {
            q = self.shared.idle.wait(q).unwrap();
        }
        q.failed.clone().map_or(Ok(()), Err)
    }
}

impl Drop for Ingester {
    /// Ingests what is queued, then stops the thread.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(db: &DB, progress: &Progress, jobs: Receiver<Job>, shared: &Shared) {
    for job in jobs {
        let failed = shared.queue.lock().unwrap().failed.is_some();
        let result = match job {
            Job::File { path, .. } if failed => remove(&path),
            Job::File { table, path, file } => ingest(db, &table, &path, file),
            Job::Mark { .. } if failed => Ok(()),
            Job::Mark { worker, watermark } => {
                let mut p = progress.lock().unwrap();
                let n = p.len();
                if n > 0 {
                    p[worker % n] = p[worker % n].max(watermark);
                }
                Ok(())
            }
        };
        let mut q = shared.queue.lock().unwrap();
        q.waiting -= 1;
        if let Err(e) = result {
            q.failed.get_or_insert(e);
        }
        shared.idle.notify_all();
    }
}

/// Finishes a table file and has RocksDB take it over (a hard link: the file keeps only
/// the database's name for it).
fn ingest(db: &DB, table: &str, path: &Path, mut file: SstFileWriter) -> Result<(), String> {
    let cf = db
        .cf_handle(table)
        .ok_or_else(|| format!("no table {table:?}"))?;
    file.finish().map_err(|e| e.to_string())?;
    let mut opts = rocksdb::IngestExternalFileOptions::default();
    opts.set_move_files(true);
    db.ingest_external_file_cf_opts(cf, &opts, vec![path])
        .map_err(|e| e.to_string())?;
    remove(path)
}

fn remove(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocksdb::Options;

    /// A database with table `t`.
    fn db_with_table(dir: &Path) -> Arc<DB> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        Arc::new(DB::open_cf(&opts, dir.join("db"), ["t"]).unwrap())
    }

    /// A filled table file at `name` holding `key`.
    fn file(dir: &Path, name: &str, key: &[u8]) -> (PathBuf, SstFileWriter<'static>) {
        let opts: &'static Options = Box::leak(Box::default());
        let path = dir.join(name);
        let mut file = SstFileWriter::create(opts);
        file.open(&path).unwrap();
        file.put(key, b"row").unwrap();
        (path, file)
    }

    #[test]
    fn a_mark_counts_only_once_the_files_queued_before_it_are_ingested() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_with_table(dir.path());
        let progress = Progress::new(Mutex::new(vec![0; 2]));
        let ingester = Ingester::start(db.clone(), progress.clone());
        let (path, f) = file(dir.path(), "1.sst", b"k1");
        ingester.file("t", path.clone(), f).unwrap();
        ingester.mark(1, 500).unwrap();
        ingester.wait().unwrap();
        let cf = db.cf_handle("t").unwrap();
        assert_eq!(db.get_cf(cf, b"k1").unwrap().as_deref(), Some(&b"row"[..]));
        assert_eq!(*progress.lock().unwrap(), vec![0, 500]);
        assert!(
            !path.exists(),
            "the ingested file keeps only the database's name"
        );
    }

    #[test]
    fn after_a_failed_ingestion_nothing_later_is_ingested_or_marked() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_with_table(dir.path());
        let progress = Progress::new(Mutex::new(vec![0]));
        let ingester = Ingester::start(db.clone(), progress.clone());
        let (bad, f) = file(dir.path(), "1.sst", b"k1");
        ingester.file("missing", bad, f).unwrap();
        let (later, f) = file(dir.path(), "2.sst", b"k2");
        // Queued before the failure is known, or refused once it is.
        let _ = ingester.file("t", later.clone(), f);
        let _ = ingester.mark(0, 500);
        let e = ingester.wait().unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let cf = db.cf_handle("t").unwrap();
        assert_eq!(db.get_cf(cf, b"k2").unwrap(), None);
        assert_eq!(*progress.lock().unwrap(), vec![0]);
        assert!(ingester.mark(0, 600).unwrap_err().contains("missing"));
    }
}
