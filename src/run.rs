//! Runs a pipeline on timely workers: checks inputs, drives the dataflow, reports progress.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Pipeline;
use crate::metrics::{Metrics, Summary};
use crate::sinks::schema::write_schema;
use crate::sinks::side::SideSinks;
use crate::sources::reader::PartitionReader;
use crate::sources::{partitions, PartitionSpec};
use crate::tables::TableStore;
use crate::time::{display, Time};

/// How to run a pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output directory (overrides the pipeline's `output.dir`).
    pub output: Option<PathBuf>,
    /// Worker threads.
    pub workers: usize,
    /// Show a progress line (stderr TTY) or periodic progress logs.
    pub progress: bool,
    /// Run as one process of several (timely cluster mode); `None` = this process alone.
    pub cluster: Option<Cluster>,
    /// State directory: every table change is written there as a version (RocksDB).
    pub state: Option<PathBuf>,
    /// With a state directory: snapshot it each time the watermark crosses a multiple of
    /// this much event time, and once at the end.
    pub snapshot_every: Option<Time>,
    /// Serve the profile-query API on this address while the job runs and after a finite
    /// replay, until Ctrl-C / SIGTERM (needs `state`).
    pub serve: Option<std::net::SocketAddr>,
}

/// This process's place among the processes of one job. Every process reads the same
/// pipeline and writes to the same output directory (shared by all processes); each
/// worker owns the partitions and keys that hash to it, wherever it runs.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Index of this process, from 0.
    pub process: usize,
    /// `host:port` of every process, by index.
    pub addresses: Vec<String>,
}

impl Cluster {
    /// `processes` processes on this machine, listening on 127.0.0.1 from `base_port`.
    pub fn loopback(process: usize, processes: usize, base_port: u16) -> Self {
        let addresses = (0..processes)
            .map(|i| format!("127.0.0.1:{}", base_port as usize + i))
            .collect();
        Cluster { process, addresses }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            output: None,
            workers: 1,
            progress: false,
            cluster: None,
            state: None,
            snapshot_every: None,
            serve: None,
        }
    }
}

/// Runs a finite replay to the end: every label finishes, every partition commits.
pub fn run(pipeline: Pipeline, opts: &RunOptions) -> anyhow::Result<Summary> {
    // `s3://` outputs: stage locally and publish (sinks::s3), which calls back in here.
    let out = opts.output.as_ref().unwrap_or(&pipeline.output.dir);
    if let Some(dest) = crate::sinks::s3::s3_output(out) {
        return crate::sinks::s3::run_to_s3(pipeline, opts, dest?);
    }
    let parts = partitions(&pipeline)?;
    for part in &parts {
        PartitionReader::open(&pipeline, part)?; // fail before starting on a bad header
    }
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| pipeline.output.dir.clone());
    write_schema(&pipeline, &output)
        .with_context(|| format!("cannot write to output {}", output.display()))?;
    // Each process of a cluster owns the state of its workers' keys: one directory each.
    let state = match (&opts.state, &opts.cluster) {
        (Some(dir), Some(c)) => Some(dir.join(format!("process-{}", c.process))),
        (state, _) => state.clone(),
    };
    // Per table with retention: the history it keeps. Reads of sliding windows subtract the
    // version one window earlier (see `tables::row`): retention keeps that much more.
    let retention: Vec<(String, Time)> = pipeline
        .tables
        .iter()
        .filter_map(|t| {
            let longest = crate::tables::row::windows(&t.features).last().copied();
            Some((t.name.clone(), t.retention? + longest.unwrap_or(0)))
        })
        .collect();
    let store = match &state {
        Some(dir) => {
            let names: Vec<&str> = pipeline.tables.iter().map(|t| t.name.as_str()).collect();
            let retained: Vec<&str> = retention.iter().map(|(t, _)| t.as_str()).collect();
            let store = TableStore::open(dir, &names, &retained)?;
            store.expect_writers(opts.workers.max(1));
            crate::tables::write_schema(dir, &pipeline)?;
            Some(Arc::new(store))
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let api = opts
        .serve
        .map(|addr| {
            let dir = state.as_deref();
            crate::api::JobServer::start(
                addr,
                store.as_ref(),
                dir,
                metrics.clone(),
                &pipeline.api_tokens,
            )
        })
        .transpose()?;
    let started = Instant::now();
    tracing::info!(pipeline = %pipeline.name, partitions = parts.len(), workers = opts.workers,
        output = %output.display(), "starting");

    let stop = Arc::new(AtomicBool::new(false));
    let progress = opts
        .progress
        .then(|| spawn_progress(metrics.clone(), stop.clone()));
    let maintenance = match (&store, &state) {
        (Some(store), Some(dir)) => Some(spawn_maintenance(
            store.clone(),
            dir.clone(),
            opts.snapshot_every.map(|e| e.max(1)),
            retention,
            stop.clone(),
        )),
        _ => None,
    };
    let result = execute(
        Arc::new(pipeline),
        parts,
        output.clone(),
        metrics.clone(),
        opts,
        store.clone(),
    );
    if let Some(store) = &store {
        store.flush()?;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(handle) = progress {
        let _ = handle.join();
    }
    if let Some(handle) = maintenance {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the state maintenance thread failed"))??;
    }
    result?;

    let summary = metrics.snapshot();
    let mut doc = serde_json::to_value(&summary)?;
    doc["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    // Counters are per process: each process of a cluster writes its own summary.
    let name = match &opts.cluster {
        Some(c) => format!("summary.process-{}.json", c.process),
        None => "summary.json".to_string(),
    };
    std::fs::write(output.join(name), serde_json::to_vec_pretty(&doc)?)?;
    if let Some(api) = api {
        api.finish_and_wait()?;
    }
    Ok(summary)
}

fn execute(
    pipeline: Arc<Pipeline>,
    parts: Vec<PartitionSpec>,
    output: PathBuf,
    metrics: Arc<Metrics>,
    opts: &RunOptions,
    store: Option<Arc<TableStore>>,
) -> anyhow::Result<()> {
    let threads = opts.workers.max(1);
    let config = match &opts.cluster {
        None => timely::Config::process(threads),
        Some(c) => timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads,
                process: c.process,
                addresses: c.addresses.clone(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        },
    };
    let guards = timely::execute(config, move |worker| {
        let side = Rc::new(RefCell::new(SideSinks::new(&output, worker.index())));
        let built = worker.dataflow::<Time, _, _>(|scope| {
            crate::dataflow::build(
                scope,
                pipeline.clone(),
                &parts,
                output.clone(),
                metrics.clone(),
                side.clone(),
                store.clone(),
            )
        });
        while !built.done.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
            if worker.index() % threads == 0 {
                let w = built
                    .watermark
                    .with_frontier(|f| f.first().copied().unwrap_or(Time::MAX));
                metrics.watermark.store(w, Ordering::Relaxed);
            }
        }
        while worker.step_or_park(Some(Duration::from_millis(1))) {}
        let flushed = side.borrow_mut().flush();
        flushed
    })
    .map_err(|e| anyhow::anyhow!("cannot start workers: {e}"))?;
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("a worker could not write its side files: {e}"),
            Err(e) => anyhow::bail!("a worker failed: {e}"),
        }
    }
    Ok(())
}

/// Keeps the state directory: moves each table's retention cutoff with the watermark,
/// snapshots each time every worker's versions pass a multiple of `every` (event time),
/// and at the end applies retention fully and takes a final snapshot.
fn spawn_maintenance(
    store: Arc<TableStore>,
    dir: PathBuf,
    every: Option<Time>,
    retention: Vec<(String, Time)>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    use crate::tables::snapshot;
    std::thread::spawn(move || {
        let mut version = snapshot::list(&dir).last().map_or(1, |m| m.version + 1);
        let mut next_due: Option<Time> = None;
        loop {
            let done = stop.load(Ordering::Relaxed);
            if done {
                // The workers are done: the last of their table files are ingested first.
                store.wait_ingested()?;
            }
            // Every version below this is written (MAX once the inputs end).
            let written = store.written_through();
            // Retention counts back from the newest event, not from MAX.
            let now = written.min(store.newest_event_time().saturating_add(1));
            for (table, keep) in &retention {
                let cutoff = now.saturating_sub(*keep);
                // A full compaction at the end only when it can remove a version of this
                // run; otherwise compactions apply the cutoff as they happen.
                if done && cutoff > store.oldest_event_time() {
                    let removed = store.apply_retention(table, cutoff)?;
                    tracing::info!(table, cutoff = %display(cutoff), removed, "retention");
                } else {
                    store.set_retention_cutoff(table, cutoff)?;
                }
            }
            if let Some(every) = every {
                let running = written > 0 && written < Time::MAX && !done;
                if running && next_due.is_some_and(|due| written >= due) {
                    let m = snapshot::create(&store, &dir, version, written)?;
                    tracing::info!(version, watermark = %display(written), bytes = m.bytes, "snapshot");
                    version += 1;
                }
                if running && next_due.is_none_or(|due| written >= due) {
                    next_due = Some((written / every + 1) * every);
                }
                if done {
                    let m = snapshot::create(&store, &dir, version, written)?;
                    tracing::info!(version, bytes = m.bytes, "final snapshot");
                }
            }
            if done {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// One line of progress text.
pub fn progress_line(s: &Summary, rate: f64) -> String {
    format!(
        "events {} ({:.0}/s) | watermark {} | pending {} | rows {} | late {} | dup {} | malformed {}",
        s.events,
        rate,
        display(s.watermark),
        s.pending,
        s.rows,
        s.late,
        s.duplicates,
        s.malformed
    )
}

fn spawn_progress(metrics: Arc<Metrics>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let (mut last, mut last_at, mut last_log) = (0u64, Instant::now(), Instant::now());
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let s = metrics.snapshot();
            let dt = last_at.elapsed().as_secs_f64();
            if dt < 1.0 {
                continue;
            }
            let rate = (s.events - last) as f64 / dt;
            (last, last_at) = (s.events, Instant::now());
            match &bar {
                Some(bar) => bar.set_message(progress_line(&s, rate)),
                None if last_log.elapsed() >= Duration::from_secs(10) => {
                    tracing::info!("{}", progress_line(&s, rate));
                    last_log = Instant::now();
                }
                None => {}
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    })
}
