//! Benchmark of the versioned store alone: version writes, `get(as_of)` latency, disk use.

use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::store::{StoreError, TableStore};
use crate::time::Time;

/// Figures of one store benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreBenchReport {
    /// Keys written.
    pub keys: u64,
    /// Versions per key.
    pub versions_per_key: u64,
    /// Versions written per second (batches of 10,000, as the dataflow writes them).
    pub versions_per_second: f64,
    /// Bytes on disk per version after a full compaction.
    pub disk_bytes_per_version: f64,
    /// `get(as_of)` latency percentiles over random (key, as_of), in microseconds.
    pub get_p50_us: f64,
    /// 99th percentile.
    pub get_p99_us: f64,
    /// Maximum.
    pub get_max_us: f64,
}

/// Writes `keys` x `versions` versions (48-byte random rows, one second apart), compacts, then
/// times `gets` random reads as of random times.
pub fn bench_store(
    dir: &Path,
    keys: u64,
    versions: u64,
    gets: u64,
) -> Result<StoreBenchReport, StoreError> {
    let _ = std::fs::remove_dir_all(dir);
    let store = TableStore::open(dir, &["user"], &[])?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Incompressible rows (the worst case for disk use), from a pool so generating is cheap.
    let rows: Vec<Vec<u8>> = (0..1024)
        .map(|_| (0..48).map(|_| rng.random()).collect())
        .collect();
    let key = |k: u64| format!("u{k:08}");
    let t0: Time = 1_700_000_000_000;
    let started = Instant::now();
    let mut batch: Vec<(String, Time, usize)> = Vec::with_capacity(10_000);
    let put = |batch: &[(String, Time, usize)]| {
        store.put_versions(
            "user",
            batch
                .iter()
                .map(|(k, t, r)| (k.as_bytes(), *t, rows[*r].as_slice())),
        )
    };
    for v in 0..versions {
        for k in 0..keys {
            batch.push((
                key(k),
                t0 + v * 1_000 + k % 1_000,
                rng.random_range(0..rows.len()),
            ));
            if batch.len() == 10_000 {
                put(&batch)?;
                batch.clear();
            }
        }
    }
    put(&batch)?;
    let write_seconds = started.elapsed().as_secs_f64();
    store.db().compact_range_cf(
        store.db().cf_handle("user").unwrap(),
        None::<&[u8]>,
        None::<&[u8]>,
    );
    let disk: u64 = walk_size(&dir.join("db"));

    let mut lat: Vec<f64> = Vec::with_capacity(gets as usize);
    for _ in 0..gets {
        let k = key(rng.random_range(0..keys));
        let as_of = t0 + rng.random_range(0..versions * 1_000 + 1_000);
        let t = Instant::now();
        let found = store.get("user", k.as_bytes(), as_of)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(found);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let total = (keys * versions) as f64;
    Ok(StoreBenchReport {
        keys,
        versions_per_key: versions,
        versions_per_second: total / write_seconds,
        disk_bytes_per_version: disk as f64 / total,
        get_p50_us: pct(0.50),
        get_p99_us: pct(0.99),
        get_max_us: lat.last().copied().unwrap_or(0.0),
    })
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_size(&p)
            } else if p.extension().is_some_and(|x| x == "sst") {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            }
        })
        .sum()
}
