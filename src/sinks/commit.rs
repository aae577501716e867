//! Commits complete partitions: `_SUCCESS`, SageMaker manifests, stale part files removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::json;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::partition::{completion_time, partition_dir, PartWritten, CHANNELS};
use crate::metrics::Metrics;
use crate::time::Time;

/// Collects every worker's part files on worker 0; once the watermark passes a partition's
/// completion time, has its markers written. Manifests live under `<output>/manifests/`,
/// outside the channels, because SageMaker reads every file of a channel not starting with
/// `_` or `.`.
pub fn committer(
    parts: StreamVec<'_, Time, PartWritten>,
    root: PathBuf,
    window: Time,
    metrics: Arc<Metrics>,
) {
    let mut open: BTreeMap<Time, Vec<PartWritten>> = BTreeMap::new();
    // Every part file is reported to worker 0 (global index): only it commits.
    let mut thread = (parts.scope().index() == 0).then(|| CommitThread::start(root, metrics));
    parts.sink(
        Exchange::new(|_: &PartWritten| 0),
        "Committer",
        move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for p in data.drain(..) {
                    open.entry(p.hour).or_default().push(p);
                }
            });
            let Some(commits) = thread.as_ref() else {
                return;
            };
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            while let Some(entry) = open.first_entry() {
                if completion_time(*entry.key(), window) >= watermark {
                    break;
                }
                commits.send(entry.remove_entry());
            }
            // The input is done (or a commit failed): every partition is committed before
            // the worker ends.
            if frontier.frontier().is_empty() || commits.thread.is_finished() {
                if let Some(Err(e)) = thread.take().map(CommitThread::finish) {
                    panic!("{e}");
                }
            }
        },
    );
}

/// Commits partitions in the order given, on their own thread: renaming a channel's
/// manifest over the previous one frees the old file, which on a file system mounted with
/// `discard` waits for the device (8-17 ms each, 75 in a bench run, on worker 0 while the
/// other workers waited on its watermark).
struct CommitThread {
    jobs: Sender<(Time, Vec<PartWritten>)>,
    thread: JoinHandle<Result<(), String>>,
}

impl CommitThread {
    fn start(root: PathBuf, metrics: Arc<Metrics>) -> Self {
        let (jobs, queue) = channel::<(Time, Vec<PartWritten>)>();
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || {
                let mut committed: [Vec<String>; 3] = Default::default();
                for (hour, parts) in queue {
                    commit(&root, hour, &parts, &mut committed).map_err(|e| {
                        format!("cannot commit partition {}: {e}", partition_dir(hour))
                    })?;
                    Metrics::add(&metrics.partitions_committed, 1);
                }
                Ok(())
            })
            .expect("cannot start the committer thread");
        CommitThread { jobs, thread }
    }

    /// Queues a partition's commit. A thread that stopped on an error reports it at
    /// [`CommitThread::finish`].
    fn send(&self, partition: (Time, Vec<PartWritten>)) {
        let _ = self.jobs.send(partition);
    }

    /// Waits for every queued commit; the first error.
    fn finish(self) -> Result<(), String> {
        drop(self.jobs);
        self.thread
            .join()
            .unwrap_or_else(|_| Err("the committer thread panicked".into()))
    }
}

fn commit(
    root: &Path,
    hour: Time,
    parts: &[PartWritten],
    committed: &mut [Vec<String>; 3],
) -> std::io::Result<()> {
    let rel = partition_dir(hour);
    for (ch, name) in CHANNELS.iter().enumerate() {
        let mut files: Vec<&str> = parts
            .iter()
            .filter(|p| p.channel as usize == ch)
            .map(|p| p.file.as_str())
            .collect();
        files.sort();
        let dir = root.join(name).join(&rel);
        if files.is_empty() && !dir.exists() {
            continue;
        }
        fs::create_dir_all(&dir)?;
        // A replay with fewer workers must not leave an earlier run's parts behind.
        for entry in fs::read_dir(&dir)? {
            let file = entry?.file_name().to_string_lossy().to_string();
            if file.starts_with("part-") && !files.contains(&file.as_str()) {
                fs::remove_file(dir.join(&file))?;
            }
        }
        let prefix = format!("{}/", url(&dir));
        let mut manifest = vec![json!({"prefix": prefix})];
        manifest.extend(files.iter().map(|f| json!(f)));
        let mdir = root.join("manifests").join(name).join(&rel);
        write_atomic(&mdir.join("manifest.json"), &serde_json::to_vec(&manifest)?)?;
        committed[ch].extend(files.iter().map(|f| format!("{rel}/{f}")));
        let mut channel = vec![json!({"prefix": format!("{}/", url(&root.join(name)))})];
        channel.extend(committed[ch].iter().map(|f| json!(f)));
        write_atomic(
            &root.join("manifests").join(format!("{name}.json")),
            &serde_json::to_vec(&channel)?,
        )?;
        fs::write(dir.join("_SUCCESS"), b"")?;
    }
    Ok(())
}

fn url(dir: &Path) -> String {
    let abs = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("file://{}", abs.display())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(path.parent().unwrap())?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(tmp, path)
}
