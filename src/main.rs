//! The `labeljoin` command line: run, validate and gen.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use labeljoin::bench::{bench, default_dir, BenchOptions, BenchReport};
use labeljoin::config::Pipeline;
use labeljoin::gen::{write_files, GenConfig};
use labeljoin::run::{run, Cluster, RunOptions};
use labeljoin::time::TimeFormat;

// The dataflow allocates many small short-lived records; mimalloc halves their cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (the same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Keeps freed memory 60 s before returning it to the OS (mimalloc's default is 1 s). With
/// the default, label-join buffers freed at each deadline went back to the kernel and
/// were faulted in and zeroed again moments later: 10 % of the job's samples were the
/// kernel clearing pages (16,700 page faults on 1.16M events, 1,200 with 10 s). A job's
/// working set is steady, so memory it frees is nearly always used again within a
/// minute; 60 s instead of 10 s saved the purges' TLB shootdowns and the zeroing of the
/// same pages again (replays with the state ~-3 % wall, peak RSS +30 MiB;
/// docs/PERFORMANCE-HISTORY.md). Memory of a passing spike still goes back after a minute.
fn keep_freed_memory_longer() {
    // SAFETY: a plain setter of mimalloc (linked as the global allocator above).
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 60_000) }
}

/// Point-in-time-correct, labeled training sets from ad event streams.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: a finite replay finishes every label and exits.
    Run {
        /// Pipeline file (pipelines/*.toml).
        pipeline: PathBuf,
        /// Output directory (overrides output.dir of the pipeline).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Worker threads (at least 1).
        #[arg(long, short, default_value_t = 1, value_parser = at_least_one)]
        workers: usize,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
        /// Number of processes of this job (timely cluster mode; each runs this command).
        #[arg(long, default_value_t = 1)]
        processes: usize,
        /// Index of this process, from 0.
        #[arg(long, default_value_t = 0)]
        process: usize,
        /// File with one `host:port` per process (default: 127.0.0.1 from port 2101).
        #[arg(long)]
        hostfile: Option<PathBuf>,
        /// State directory, where every table change is written as a version (RocksDB) for
        /// time travel [default: the pipeline's state.dir, else ./state].
        #[arg(long, conflicts_with = "no_state")]
        state: Option<PathBuf>,
        /// Keep no state: write the training rows only (no table versions, no snapshots).
        #[arg(long)]
        no_state: bool,
        /// Snapshot the state every this much event time (e.g. 1h) and at the end
        /// [default: the pipeline's state.snapshot_every, else none].
        #[arg(long)]
        snapshot_every: Option<String>,
        /// Serve the profile-query API of the state on this address (e.g. 127.0.0.1:8080)
        /// during the run and after it, until Ctrl-C (see docs/API.md).
        #[arg(long)]
        serve: Option<std::net::SocketAddr>,
    },
    /// Serve the profile-query API read-only from a state or snapshot directory.
    Serve(labeljoin::api::cli::ServeArgs),
    /// Load-test the profile-query API on loopback (see docs/PERFORMANCE.md).
    BenchApi(labeljoin::api::bench::BenchApiArgs),
    /// List or restore snapshots of a state directory.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Check a pipeline file and print what it declares.
    Validate {
        /// Pipeline file.
        pipeline: PathBuf,
    },
    /// Write seeded synthetic impressions, clicks and predictions (JSON lines).
    Gen(GenArgs),
    /// Read a table of a state (or snapshot) directory: one key as of a time, or its history.
    Query {
        /// Table name.
        table: String,
        /// Key (key fields joined by `|`).
        key: String,
        /// State or snapshot directory.
        #[arg(long, default_value = "state")]
        state: PathBuf,
        /// Event time (epoch ms or RFC 3339): the row after all events at or before it.
        #[arg(long)]
        as_of: Option<String>,
        /// Every version in `FROM..TO` (epoch ms or RFC 3339) instead.
        #[arg(long)]
        history: Option<String>,
    },
    /// Measure the versioned table store alone: writes, get(as_of) latency, disk bytes.
    BenchStore {
        /// Keys.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Versions per key.
        #[arg(long, default_value_t = 10)]
        versions: u64,
        /// Timed random reads.
        #[arg(long, default_value_t = 1_000_000)]
        gets: u64,
        /// Work directory (removed and rewritten).
        #[arg(long, default_value = "target/bench-store")]
        dir: PathBuf,
    },
    /// Generate events and measure the reference pipeline on them (see docs/PERFORMANCE.md).
    Bench {
        /// Impressions to generate (about 1.15 events each).
        #[arg(long, default_value_t = 8_700_000)]
        impressions: u64,
        /// Worker threads of the measured run (at least 1).
        #[arg(long, short, default_value_t = 2, value_parser = at_least_one)]
        workers: usize,
        /// Work directory (inputs are generated once and reused).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Pipeline to run on the generated inputs.
        #[arg(long, default_value = "pipelines/ad_clicks.toml")]
        pipeline: PathBuf,
        /// Measure the training rows alone, without writing table versions.
        #[arg(long)]
        no_state: bool,
        /// Runs to measure, one after another; more than one also prints their medians.
        #[arg(long, default_value_t = 1, value_parser = at_least_one)]
        runs: usize,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Snapshots of a state directory, oldest first (version, watermark, bytes, checksum).
    List {
        /// State directory.
        #[arg(long, default_value = "state")]
        state: PathBuf,
    },
    /// Verify a snapshot and copy it to a new state directory.
    Restore {
        /// Snapshot version.
        version: u64,
        /// State directory holding the snapshot.
        #[arg(long, default_value = "state")]
        state: PathBuf,
        /// New state directory (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
    /// Upload a verified snapshot to S3: it lands under `<URL>/<version>/`, manifest last.
    Push {
        /// Snapshot version.
        version: u64,
        /// Destination, `s3://bucket/prefix`.
        url: String,
        /// State directory holding the snapshot.
        #[arg(long, default_value = "state")]
        state: PathBuf,
    },
    /// Download a snapshot from S3 into `<state>/snapshots/` and verify it.
    Pull {
        /// Snapshot version.
        version: u64,
        /// Source, `s3://bucket/prefix` (as given to push).
        url: String,
        /// State directory to put the snapshot in.
        #[arg(long, default_value = "state")]
        state: PathBuf,
    },
}

#[derive(clap::Args)]
struct GenArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Impressions to generate.
    #[arg(long, default_value_t = 10_000)]
    impressions: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 1_000)]
    users: u64,
    /// Distinct campaigns.
    #[arg(long, default_value_t = 50)]
    campaigns: u64,
    /// Impressions per second of event time.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Click-through rate.
    #[arg(long, default_value_t = 0.05)]
    ctr: f64,
    /// Mean click delay in seconds (exponential).
    #[arg(long, default_value_t = 120.0)]
    click_delay_mean_s: f64,
    /// Share of clicks delayed beyond the 15 min window.
    #[arg(long, default_value_t = 0.05)]
    beyond_window: f64,
    /// Arrival jitter (ms) of events behind their event time.
    #[arg(long, default_value_t = 5_000)]
    out_of_orderness_ms: u64,
    /// Share of clicked impressions whose click arrives first.
    #[arg(long, default_value_t = 0.02)]
    early_clicks: f64,
    /// Share of events written twice.
    #[arg(long, default_value_t = 0.01)]
    duplicates: f64,
    /// Share of events arriving far behind the watermark.
    #[arg(long, default_value_t = 0.001)]
    late: f64,
    /// Share of extra malformed lines.
    #[arg(long, default_value_t = 0.001)]
    malformed: f64,
    /// One prediction per this many impressions (0 = none).
    #[arg(long, default_value_t = 10)]
    prediction_every: u64,
    /// Files per stream.
    #[arg(long, default_value_t = 1)]
    files: u32,
    /// Write times as RFC 3339 strings instead of epoch ms.
    #[arg(long)]
    rfc3339: bool,
    /// Also put the generated lines into Kinesis: stream `<KINESIS>-impressions`, ...
    /// (created if missing), partition key = the user id.
    #[arg(long)]
    kinesis: Option<String>,
    /// Shards of the streams `--kinesis` creates.
    #[arg(long, default_value_t = 2)]
    shards: i32,
}

/// A count of threads or runs: 0 is refused at parse time (clap names the option).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; give a whole number, at least 1")),
    }
}

fn main() -> ExitCode {
    keep_freed_memory_longer();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "labeljoin=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: logs piped to a file or a log
        // collector stay plain text (and `NO_COLOR` turns them off anywhere).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            pipeline,
            output,
            workers,
            quiet,
            processes,
            process,
            hostfile,
            state,
            no_state,
            snapshot_every,
            serve,
        } => {
            let p = Pipeline::load(&pipeline)?;
            let cluster = cluster(processes, process, hostfile)?;
            let state = (!no_state).then(|| state.unwrap_or_else(|| p.state.dir.clone()));
            let snapshot_every = match snapshot_every {
                Some(text) => Some(
                    labeljoin::time::parse_duration(&text)
                        .map_err(|e| anyhow::anyhow!("--snapshot-every: {e}"))?,
                ),
                None => p.state.snapshot_every,
            };
            let s = run(
                p,
                &RunOptions {
                    output,
                    workers,
                    progress: !quiet,
                    cluster,
                    state,
                    snapshot_every,
                    serve,
                },
            )?;
            println!(
                "done: {} records read, {} events, {} rows ({} positive), {} late, {} orphans, {} outside window, {} duplicates, {} malformed, {} partitions",
                s.records_read, s.events, s.rows, s.positive_rows, s.late, s.orphans, s.outside_window, s.duplicates, s.malformed, s.partitions_committed
            );
            Ok(())
        }
        Command::Serve(args) => labeljoin::api::cli::serve(&args),
        Command::BenchApi(args) => labeljoin::api::bench::run(&args),
        Command::Validate { pipeline } => {
            let p = Pipeline::load(&pipeline)?;
            println!("{}: ok", pipeline.display());
            for s in &p.streams {
                let fields: Vec<_> = s.fields.iter().map(|f| f.name.as_str()).collect();
                println!("  stream {}: reads {}", s.name, fields.join(", "));
            }
            println!(
                "  label: window {} ms; columns: {}",
                p.label.window,
                p.feature_names().join(", ")
            );
            Ok(())
        }
        Command::Bench {
            impressions,
            workers,
            dir,
            pipeline,
            no_state,
            runs,
        } => {
            let opts = BenchOptions {
                dir: dir.unwrap_or_else(default_dir),
                impressions,
                workers,
                pipeline,
                state: !no_state,
            };
            quiet_on_closed_pipe();
            let mut reports = Vec::new();
            for _ in 0..runs {
                let r = bench(&opts)?;
                println!("{}", r.line());
                println!("{}", serde_json::to_string(&r)?);
                reports.push(r);
            }
            if let (true, Some(m)) = (runs > 1, BenchReport::median(&reports)) {
                println!("median of {runs} runs: {}", m.line());
                println!("{}", serde_json::to_string(&m)?);
            }
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::List { state }) => {
            quiet_on_closed_pipe();
            for m in labeljoin::tables::snapshot::list(&state) {
                println!(
                    "{}\twatermark {}\t{} bytes\t{}\ttables {}",
                    m.version,
                    labeljoin::time::display(m.watermark),
                    m.bytes,
                    m.checksum,
                    m.tables.join(",")
                );
            }
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Restore { version, state, to }) => {
            let m = labeljoin::tables::snapshot::restore(&state, version, &to)?;
            println!(
                "restored snapshot {} (watermark {}) to {}",
                m.version,
                labeljoin::time::display(m.watermark),
                to.display()
            );
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Push {
            version,
            url,
            state,
        }) => {
            let m = labeljoin::aws::snapshot::push(&state, version, &s3_url(&url)?)?;
            println!("pushed snapshot {} ({} bytes) to {url}", m.version, m.bytes);
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Pull {
            version,
            url,
            state,
        }) => {
            let m = labeljoin::aws::snapshot::pull(&s3_url(&url)?, version, &state)?;
            println!(
                "pulled snapshot {} ({} bytes) into {}",
                m.version,
                m.bytes,
                state.display()
            );
            Ok(())
        }
        Command::Query {
            table,
            key,
            state,
            as_of,
            history,
        } => {
            quiet_on_closed_pipe();
            let reader = labeljoin::tables::TableReader::open(&state)?;
            let time = |s: &str| {
                TimeFormat::Auto
                    .parse_str(s)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            };
            let json = |t: u64, values: labeljoin::tables::RowValues| {
                let mut row = serde_json::Map::new();
                row.insert("version_time".into(), serde_json::json!(t));
                row.extend(
                    values
                        .iter()
                        .map(|(k, v)| (k.to_string(), serde_json::json!(v))),
                );
                serde_json::Value::Object(row)
            };
            match history {
                Some(range) => {
                    let (from, to) = range
                        .split_once("..")
                        .ok_or_else(|| anyhow::anyhow!("--history wants FROM..TO"))?;
                    for (t, values) in
                        reader.history(&table, &key, (time(from)?, time(to)?), usize::MAX)?
                    {
                        println!("{}", json(t, values));
                    }
                }
                None => {
                    // Without --as-of: the newest version, read at its own time.
                    let row = match as_of.as_deref().map(time).transpose()? {
                        Some(t) => reader.get(&table, &key, t)?,
                        None => reader.latest(&table, &key)?,
                    };
                    match row {
                        Some((t, values)) => println!("{}", json(t, values)),
                        None => println!("null"),
                    }
                }
            }
            Ok(())
        }
        Command::BenchStore {
            keys,
            versions,
            gets,
            dir,
        } => {
            let r = labeljoin::tables::bench::bench_store(&dir, keys, versions, gets)?;
            println!(
                "{} keys x {} versions | {:.0} versions/s written | {:.1} B per version on disk | get p50 {:.1} us, p99 {:.1} us, max {:.0} us",
                r.keys, r.versions_per_key, r.versions_per_second, r.disk_bytes_per_version, r.get_p50_us, r.get_p99_us, r.get_max_us
            );
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Command::Gen(a) => {
            let cfg = GenConfig {
                seed: a.seed,
                impressions: a.impressions,
                users: a.users,
                campaigns: a.campaigns,
                rate_per_s: a.rate,
                ctr: a.ctr,
                click_delay_mean_s: a.click_delay_mean_s,
                beyond_window_fraction: a.beyond_window,
                out_of_orderness_ms: a.out_of_orderness_ms,
                early_click_fraction: a.early_clicks,
                duplicate_fraction: a.duplicates,
                late_fraction: a.late,
                malformed_fraction: a.malformed,
                prediction_every: a.prediction_every,
                files_per_stream: a.files,
                epoch_ms_times: !a.rfc3339,
                ..GenConfig::default()
            };
            let s = write_files(&cfg, &a.out)?;
            println!(
                "wrote {} lines to {}: {} impressions, {} clicks, {} predictions, {} duplicates, {} late, {} malformed",
                s.lines, a.out.display(), s.impressions, s.clicks, s.predictions, s.duplicates, s.late, s.malformed
            );
            if let Some(prefix) = &a.kinesis {
                for (stream, n) in
                    labeljoin::aws::kinesis_put::put_generated(&a.out, prefix, a.shards)?
                {
                    println!("put {n} records to Kinesis stream {stream}");
                }
            }
            Ok(())
        }
    }
}

/// The cluster settings of `run`, checked.
fn cluster(
    processes: usize,
    process: usize,
    hostfile: Option<PathBuf>,
) -> anyhow::Result<Option<Cluster>> {
    if processes <= 1 {
        return Ok(None);
    }
    if process >= processes {
        anyhow::bail!("--process {process} must be below --processes {processes}");
    }
    let Some(file) = hostfile else {
        return Ok(Some(Cluster::loopback(process, processes, 2101)));
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("--hostfile {}", file.display()))?;
    let addresses: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if addresses.len() < processes {
        anyhow::bail!(
            "--hostfile {} lists {} addresses; --processes needs {processes}",
            file.display(),
            addresses.len()
        );
    }
    Ok(Some(Cluster {
        process,
        addresses: addresses[..processes].to_vec(),
    }))
}

/// Ends quietly, like other command-line tools, when output piped into `head` is closed.
/// (Only for commands that print: the job keeps Rust's default so that a closed socket
/// between cluster processes is an error, not a signal.)
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of SIGPIPE before any other thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// An `s3://bucket/prefix` argument, checked.
fn s3_url(text: &str) -> anyhow::Result<labeljoin::aws::s3::S3Url> {
    labeljoin::aws::s3::S3Url::parse(text)
        .unwrap_or_else(|| anyhow::bail!("{text:?} is not an S3 URL; write s3://bucket/prefix"))
}
