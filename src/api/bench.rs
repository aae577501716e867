//! `labeljoin bench-api`: an open-loop load generator against the API on loopback.
//!
//! Request `i` is due at `start + i / rate`, whatever happened to earlier requests, and its
//! latency is counted from that due time, so a stall delays and counts every request
//! behind it (no coordinated omission). Requests are spread round-robin over blocking
//! keep-alive connections, one thread each, speaking plain HTTP/1.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::{ServeConfig, Server, Shared, Tokens};
use crate::tables::keys;

/// Arguments of `labeljoin bench-api`.
#[derive(Debug, clap::Args)]
pub struct BenchApiArgs {
    /// State directory to serve; made by running `pipelines/ad_clicks.toml` if missing.
    #[arg(long, default_value = "target/bench-api/state")]
    pub state: PathBuf,
    /// Table whose keys are read.
    #[arg(long, default_value = "user")]
    pub table: String,
    /// Requests per second of the fixed-rate scenarios.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Requests per second of the batch scenario (100 keys each).
    #[arg(long, default_value_t = 1_000)]
    pub batch_rate: u64,
    /// Keys per batch request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Connections (one client thread each).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Repetitions of every scenario (medians are printed too).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Also search the highest single-key rate with p99 <= 2 ms (steps of 5,000 req/s).
    #[arg(long)]
    pub max_rate: bool,
}

/// Latencies of one scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Scenario name.
    pub scenario: String,
    /// Target requests per second.
    pub target_rate: u64,
    /// Requests completed per second of wall time.
    pub achieved_rate: f64,
    /// Requests sent.
    pub requests: u64,
    /// Answers other than 200, and connection failures.
    pub errors: u64,
    /// From the due time (coordinated-omission corrected), microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p999_us: f64,
    /// Largest, microseconds.
    pub max_us: f64,
    /// From the actual send (server and socket time only), 99th percentile, microseconds.
    pub service_p99_us: f64,
}

/// Runs the benchmark and prints one line per scenario and run, then medians.
pub fn run(args: &BenchApiArgs) -> anyhow::Result<()> {
    if !args.state.join("tables.json").exists() {
        prepare_state(args)?;
    }
    let shared = Arc::new(Shared::standalone(&args.state)?);
    let keys = sample_keys(&shared, &args.table, 100_000)?;
    anyhow::ensure!(!keys.is_empty(), "table {:?} has no keys", args.table);
    let server = Server::start(
        shared,
        ServeConfig::new("127.0.0.1:0".parse()?, Tokens::default()),
    )?;
    let addr = server.addr();
    let single = requests(&keys, &args.table, 1, 4096);
    let batch = requests(&keys, &args.table, args.batch, 512);
    println!(
        "{} keys of table {:?}; {} connections; {} s per scenario",
        keys.len(),
        args.table,
        args.connections,
        args.seconds
    );
    let mut all: Vec<LoadReport> = Vec::new();
    for _ in 0..args.runs {
        for (name, reqs, rate) in [
            ("single-key", &single, args.rate),
            ("batch", &batch, args.batch_rate),
        ] {
            let name = if name == "batch" {
                format!("batch-{}", args.batch)
            } else {
                name.to_string()
            };
            let r = load(addr, reqs, rate, args.seconds, args.connections, &name)?;
            print_report(&r);
            all.push(r);
        }
    }
    if args.runs > 1 {
        println!("medians of {} runs:", args.runs);
        let mut names: Vec<String> = all.iter().map(|r| r.scenario.clone()).collect();
        names.dedup();
        names.truncate(2);
        for name in names {
            let runs: Vec<&LoadReport> = all.iter().filter(|r| r.scenario == name).collect();
            print_report(&median(&runs));
        }
    }
    if args.max_rate {
        let mut best = 0;
        for rate in (1..=20).map(|k| k * 5_000) {
            let r = load(
                addr,
                &single,
                rate,
                args.seconds.min(5),
                args.connections,
                "single-key",
            )?;
            print_report(&r);
            let sustained =
                r.errors == 0 && r.achieved_rate >= 0.98 * rate as f64 && r.p99_us <= 2_000.0;
            if !sustained {
                break;
            }
            best = rate;
        }
        println!("max sustainable single-key rate (p99 <= 2 ms, >= 98% of target, no errors): {best} req/s");
    }
    server.stop()
}

fn print_report(r: &LoadReport) {
    println!(
        "{:<12} target {:>6}/s achieved {:>8.0}/s | p50 {:>7.0} us p99 {:>7.0} us p99.9 {:>7.0} us max {:>7.0} us | service p99 {:>6.0} us | {} requests, {} errors",
        r.scenario, r.target_rate, r.achieved_rate, r.p50_us, r.p99_us, r.p999_us, r.max_us, r.service_p99_us, r.requests, r.errors
    );
}

fn median(runs: &[&LoadReport]) -> LoadReport {
    let med = |f: fn(&LoadReport) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    LoadReport {
        scenario: format!("{} (median)", runs[0].scenario),
        target_rate: runs[0].target_rate,
        achieved_rate: med(|r| r.achieved_rate),
        requests: runs.iter().map(|r| r.requests).sum::<u64>() / runs.len() as u64,
        errors: runs.iter().map(|r| r.errors).sum(),
        p50_us: med(|r| r.p50_us),
        p99_us: med(|r| r.p99_us),
        p999_us: med(|r| r.p999_us),
        max_us: med(|r| r.max_us),
        service_p99_us: med(|r| r.service_p99_us),
    }
}

/// Runs the reference pipeline on the fixtures with `--state`, to have tables to read.
fn prepare_state(args: &BenchApiArgs) -> anyhow::Result<()> {
    let pipeline = crate::config::Pipeline::load(std::path::Path::new("pipelines/ad_clicks.toml"))?;
    let base = args.state.parent().unwrap_or(std::path::Path::new("."));
    let opts = crate::run::RunOptions {
        output: Some(base.join("out")),
        workers: 2,
        state: Some(args.state.clone()),
        ..Default::default()
    };
    eprintln!(
        "writing {} from pipelines/ad_clicks.toml",
        args.state.display()
    );
    crate::run::run(pipeline, &opts)?;
    Ok(())
}

/// Up to `n` distinct keys of a table, read from the store.
fn sample_keys(shared: &Shared, table: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let db = shared.reader.store().db();
    let cf = db
        .cf_handle(table)
        .ok_or_else(|| anyhow::anyhow!("--table: no table {table:?}"))?;
    let mut it = db.raw_iterator_cf_opt(cf, crate::tables::store::all_keys());
    it.seek_to_first();
    let mut out: Vec<String> = Vec::new();
    while let Some(k) = it.key() {
        if let Some((key, _)) = keys::decode(k) {
            let key = String::from_utf8_lossy(key).into_owned();
            if out.last() != Some(&key) {
                out.push(key);
            }
        }
        if out.len() >= n {
            break;
        }
        it.next();
    }
    Ok(out)
}

/// `count` encoded requests of `per` random keys each (GET for one key, POST otherwise).
fn requests(keys: &[String], table: &str, per: usize, count: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..count)
        .map(|_| {
            let pick: Vec<&String> = (0..per).map(|_| &keys[rng.random_range(0..keys.len())]).collect();
            if per == 1 {
                format!(
                    "GET /v1/tables/{table}/{} HTTP/1.1\r\nHost: bench\r\n\r\n",
                    percent_encode(pick[0])
                )
                .into_bytes()
            } else {
                let body = serde_json::json!({ "keys": pick }).to_string();
                format!(
                    "POST /v1/tables/{table}/lookup HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        })
        .collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends `rate` requests per second for `seconds` over `connections` connections.
pub fn load(
    addr: SocketAddr,
    reqs: &[Vec<u8>],
    rate: u64,
    seconds: u64,
    connections: usize,
    scenario: &str,
) -> anyhow::Result<LoadReport> {
    let total = rate * seconds;
    let connections = connections.max(1) as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let threads: Vec<_> = (0..connections)
        .map(|j| {
            let reqs = reqs.to_vec();
            std::thread::spawn(move || client(addr, &reqs, j, connections, total, rate, start))
        })
        .collect();
    let (mut due, mut service, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in threads {
        let (d, s, e) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread failed"))??;
        due.extend(d);
        service.extend(s);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    due.sort_unstable();
    service.sort_unstable();
    let pct = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Ok(LoadReport {
        scenario: scenario.to_string(),
        target_rate: rate,
        achieved_rate: due.len() as f64 / wall,
        requests: total,
        errors,
        p50_us: pct(&due, 0.50),
        p99_us: pct(&due, 0.99),
        p999_us: pct(&due, 0.999),
        max_us: due.last().copied().unwrap_or(0) as f64 / 1000.0,
        service_p99_us: pct(&service, 0.99),
    })
}

type ClientResult = std::io::Result<(Vec<u64>, Vec<u64>, u64)>;

/// One connection: requests `j, j + n, j + 2n, ...`, each sent at its due time.
fn client(
    addr: SocketAddr,
    reqs: &[Vec<u8>],
    j: u64,
    n: u64,
    total: u64,
    rate: u64,
    start: Instant,
) -> ClientResult {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1u64);
    }
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let (mut due_ns, mut service_ns, mut errors) = (Vec::new(), Vec::new(), 0u64);
    let mut i = j;
    while i < total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let sent = Instant::now();
        stream.write_all(&reqs[(i as usize) % reqs.len()])?;
        match read_response(&mut stream, &mut buf) {
            Ok(200) => {}
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                stream = TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
            }
        }
        let done = Instant::now();
        due_ns.push(done.duration_since(due).as_nanos() as u64);
        service_ns.push(done.duration_since(sent).as_nanos() as u64);
        i += n;
    }
    Ok((due_ns, service_ns, errors))
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head not UTF-8"))?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| bad("no content-length"))?;
        while buf.len() < end + 4 + length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(bad("connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok(status);
    }
}
