//! Job counters shared by all workers, read by the progress line and the summary.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Counters of one run. All workers add to the same instance.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records read from sources (valid or not, skipped ones excluded).
    pub records_read: AtomicU64,
    /// Valid events accepted into the dataflow.
    pub events: AtomicU64,
    /// Records sent to the dead-letter sink.
    pub malformed: AtomicU64,
    /// Events below their partition's watermark on arrival.
    pub late: AtomicU64,
    /// Events dropped as duplicates of an id already seen.
    pub duplicates: AtomicU64,
    /// Outcomes whose example never arrived.
    pub orphans: AtomicU64,
    /// Outcomes of a known example that fell outside its window.
    pub outside_window: AtomicU64,
    /// Training rows emitted.
    pub rows: AtomicU64,
    /// Rows with a positive label.
    pub positive_rows: AtomicU64,
    /// Examples waiting for their label.
    pub pending: AtomicI64,
    /// Greatest number of examples waiting at once.
    pub peak_pending: AtomicI64,
    /// Estimated heap bytes of waiting examples at the peak.
    pub peak_pending_bytes: AtomicI64,
    /// Pipeline watermark (event ms) as seen by worker 0; `u64::MAX` once inputs are done.
    pub watermark: AtomicU64,
    /// Partitions completed and committed.
    pub partitions_committed: AtomicU64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Tracks a change of waiting examples and their bytes on one worker.
    pub fn pending_changed(&self, delta: i64, worker_bytes: i64, worker_pending: i64) {
        let now = self.pending.fetch_add(delta, Relaxed) + delta;
        if now > self.peak_pending.load(Relaxed) {
            self.peak_pending.store(now, Relaxed);
            // Bytes per example are similar on every worker, so scale this worker's to the total.
            if worker_pending > 0 {
                self.peak_pending_bytes
                    .store(worker_bytes * now / worker_pending, Relaxed);
            }
        }
    }

    /// A snapshot for printing.
    pub fn snapshot(&self) -> Summary {
        Summary {
            records_read: self.records_read.load(Relaxed),
            events: self.events.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            late: self.late.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            orphans: self.orphans.load(Relaxed),
            outside_window: self.outside_window.load(Relaxed),
            rows: self.rows.load(Relaxed),
            positive_rows: self.positive_rows.load(Relaxed),
            pending: self.pending.load(Relaxed),
            peak_pending: self.peak_pending.load(Relaxed),
            peak_pending_bytes: self.peak_pending_bytes.load(Relaxed),
            watermark: self.watermark.load(Relaxed),
            partitions_committed: self.partitions_committed.load(Relaxed),
        }
    }
}

/// Plain copy of the counters (see [`Metrics`] for their meaning).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[allow(missing_docs)]
pub struct Summary {
    pub records_read: u64,
    pub events: u64,
    pub malformed: u64,
    pub late: u64,
    pub duplicates: u64,
    pub orphans: u64,
    pub outside_window: u64,
    pub rows: u64,
    pub positive_rows: u64,
    pub pending: i64,
    pub peak_pending: i64,
    pub peak_pending_bytes: i64,
    pub watermark: u64,
    pub partitions_committed: u64,
}
