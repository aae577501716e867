//! The benchmark: generate events, run the reference pipeline on them in a child process,
//! report events/s, CPU time, peak RSS and bytes per held example (and their medians over
//! several runs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Work directory: generated inputs are kept here and reused when present.
    pub dir: PathBuf,
    /// Impressions to generate (events are about 1.15 times as many).
    pub impressions: u64,
    /// Worker threads of the measured run.
    pub workers: usize,
    /// The pipeline to run (its inputs must be `../fixtures/ad_clicks/*`).
    pub pipeline: PathBuf,
    /// Also write the tables' versions to a (fresh) state directory, as the job does by
    /// default; `false` measures the training rows alone.
    pub state: bool,
}

/// Figures of one measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Events accepted into the dataflow.
    pub events: u64,
    /// Training rows written.
    pub rows: u64,
    /// Wall-clock seconds of the run (process start to exit).
    pub seconds: f64,
    /// Events per second.
    pub events_per_second: f64,
    /// CPU seconds of the run (user + system, all its threads): on a machine whose speed
    /// drifts, a wall time that rose with its CPU time is the machine, not the job.
    pub cpu_seconds: f64,
    /// Peak resident set of the run, in MiB.
    pub peak_rss_mib: f64,
    /// Examples held at the peak.
    pub peak_pending: i64,
    /// Label-join bytes per held example at the peak.
    pub bytes_per_held_example: f64,
}

/// Generates inputs (unless already there) and measures one run.
pub fn bench(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    let inputs = opts.dir.join("fixtures/ad_clicks");
    // Bump the version when the generator's output changes, so old inputs are remade.
    let marker = inputs.join(format!(".generated-v2-{}", opts.impressions));
    if !marker.exists() {
        // Generate in a child process: this process stays small, so the measured run
        // (forked from it) starts small and its peak RSS is its own.
        let _ = fs::remove_dir_all(&inputs);
        tracing::info!(impressions = opts.impressions, dir = %inputs.display(), "generating inputs");
        let status = Command::new(std::env::current_exe()?)
            .args([
                "gen",
                "--users",
                "100000",
                "--campaigns",
                "500",
                "--rate",
                "100",
                "--files",
                "4",
            ])
            .args(["--impressions", &opts.impressions.to_string(), "--out"])
            .arg(&inputs)
            .status()?;
        if !status.success() {
            bail!("generating inputs failed: {status}");
        }
        fs::write(&marker, b"")?;
    }
    // The pipeline's inputs are relative to it: place a copy beside the generated fixtures.
    let pipelines = opts.dir.join("pipelines");
    fs::create_dir_all(&pipelines)?;
    let copy = pipelines.join(opts.pipeline.file_name().context("pipeline file name")?);
    fs::copy(&opts.pipeline, &copy)
        .with_context(|| format!("reading {}", opts.pipeline.display()))?;
    let out = opts.dir.join("out");
    let _ = fs::remove_dir_all(&out);
    let state = opts.dir.join("state");
    let _ = fs::remove_dir_all(&state);

    let started = Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .args([
            "run",
            "--quiet",
            "--workers",
            &opts.workers.to_string(),
            "--output",
        ])
        .arg(&out)
        .args(match opts.state {
            true => vec!["--state".as_ref(), state.as_os_str()],
            false => vec!["--no-state".as_ref()],
        })
        .arg(&copy)
        .env("RUST_LOG", "warn")
        // Its `done:` line repeats what the report says; warnings and errors still show.
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let (status, usage) = wait_with_rusage(child.id() as libc::pid_t)?;
    let seconds = started.elapsed().as_secs_f64();
    if status != 0 {
        bail!("the measured run failed (wait status {status})");
    }
    let summary: serde_json::Value = serde_json::from_slice(&fs::read(out.join("summary.json"))?)?;
    let get = |k: &str| summary[k].as_i64().unwrap_or(0);
    let events = get("events") as u64;
    let peak_pending = get("peak_pending");
    Ok(BenchReport {
        events,
        rows: get("rows") as u64,
        seconds,
        events_per_second: events as f64 / seconds,
        cpu_seconds: seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        peak_pending,
        bytes_per_held_example: get("peak_pending_bytes") as f64 / peak_pending.max(1) as f64,
    })
}

/// Waits for one child; returns its wait status and its own resource usage.
fn wait_with_rusage(pid: libc::pid_t) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `pid` is our child, not yet waited for; wait4 fills `status` and `usage`.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
    if rc != pid {
        bail!(
            "waiting for the measured run: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: initialized by the successful call above.
    Ok((status, unsafe { usage.assume_init() }))
}

fn seconds_of(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

impl BenchReport {
    /// The report as one line of text.
    pub fn line(&self) -> String {
        format!(
            "events {} | rows {} | {:.2} s | {:.0} events/s | CPU {:.1} s | peak RSS {:.0} MiB | {} held at peak | {:.0} B per held example",
            self.events,
            self.rows,
            self.seconds,
            self.events_per_second,
            self.cpu_seconds,
            self.peak_rss_mib,
            self.peak_pending,
            self.bytes_per_held_example
        )
    }

    /// Each figure's median over `runs` (of the same inputs; of an even count, the mean of
    /// the middle two); `None` for no runs.
    pub fn median(runs: &[BenchReport]) -> Option<BenchReport> {
        let first = runs.first()?;
        let mid = |f: fn(&BenchReport) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            (v[(n - 1) / 2] + v[n / 2]) / 2.0
        };
        Some(BenchReport {
            events: first.events,
            rows: first.rows,
            seconds: mid(|r| r.seconds),
            events_per_second: mid(|r| r.events_per_second),
            cpu_seconds: mid(|r| r.cpu_seconds),
            peak_rss_mib: mid(|r| r.peak_rss_mib),
            peak_pending: mid(|r| r.peak_pending as f64) as i64,
            bytes_per_held_example: mid(|r| r.bytes_per_held_example),
        })
    }
}

/// The default work directory.
pub fn default_dir() -> PathBuf {
    Path::new("target").join("bench")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seconds: f64, rss: f64) -> BenchReport {
        BenchReport {
            events: 10,
            rows: 9,
            seconds,
            events_per_second: 10.0 / seconds,
            cpu_seconds: 2.0 * seconds,
            peak_rss_mib: rss,
            peak_pending: 3,
            bytes_per_held_example: 100.0,
        }
    }

    #[test]
    fn medians_are_taken_figure_by_figure_the_mean_of_the_middle_two_of_an_even_count() {
        let runs = [
            report(3.0, 500.0),
            report(1.0, 700.0),
            report(2.0, 600.0),
            report(4.0, 400.0),
        ];
        let m = BenchReport::median(&runs).unwrap();
        assert_eq!(
            (m.seconds, m.cpu_seconds, m.peak_rss_mib),
            (2.5, 5.0, 550.0)
        );
        assert_eq!(m.events_per_second, (10.0 / 2.0 + 10.0 / 3.0) / 2.0);
        let odd = BenchReport::median(&runs[..3]).unwrap();
        assert_eq!((odd.seconds, odd.peak_rss_mib), (2.0, 600.0));
        assert!(BenchReport::median(&[]).is_none());
    }
}
