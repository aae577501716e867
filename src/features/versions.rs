//! Versions of changed table rows on their way to the store: pending rows, the instants
//! windowed values expire at, and when a worker writes them.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::agg::{windowed_by_totals, AggState};
use super::keyed::KeyedStates;
use crate::config::{FeatureSpec, Pipeline, TableSpec};
use crate::dataflow::time_queue::TimeQueue;
use crate::prefetch::{lines, prefetch};
use crate::tables::pack;
use crate::tables::{row, TableStore};
use crate::time::{now_ms, Time};

/// Versions of changed rows on their way to the store (with `--state`).
pub struct Versions {
    store: Arc<TableStore>,
    /// Per table: the versions waiting for their write.
    pending: Vec<PendingRows>,
    /// A windowed min, max, distinct count or last changes without an event when an event
    /// leaves its window, at `time + window`: each key with events in such a window is
    /// due here at the next such instant (rescheduled when it fires). Windowed counts,
    /// sums and means need none: versions keep running totals.
    expiries: TimeQueue<(u16, u32)>,
    /// Keys (table, entry) with an instant due, and that instant: an entry of `expiries`
    /// at another instant is stale (its key's records fired it first).
    scheduled: HashMap<(u16, u32), Time>,
    /// Per table: whether any feature needs [`Versions::expiries`].
    expiring: Vec<bool>,
    /// When pending versions were last written.
    last_write: Instant,
    /// The latest of the store's write requests this worker's writes have answered.
    answered: u64,
}

/// Versions of one table waiting for their write: encoded rows back to back in one buffer
/// (no allocation per version), each naming its key by the entry number of its state
/// (16 bytes a version besides its row, no copy of the key).
#[derive(Default)]
struct PendingRows {
    /// Per version: entry of its key, start of its row in `rows`, version time.
    versions: Vec<(u32, u32, Time)>,
    rows: Vec<u8>,
}

impl PendingRows {
    /// Room for the most versions a write takes ([`PENDING_BYTES`]), reserved and never
    /// touched until used: grown by doubling instead, the first write's versions were
    /// copied into fresh pages at each doubling (~1.6 % of a replay's samples).
    fn with_room() -> Self {
        let version = std::mem::size_of::<(u32, u32, Time)>();
        PendingRows {
            versions: Vec::with_capacity(PENDING_BYTES / version),
            rows: Vec::with_capacity(PENDING_BYTES),
        }
    }

    /// Adds the version of entry `entry` at `time`, its row encoded from `states`.
    fn push(&mut self, entry: usize, time: Time, spec: &TableSpec, states: &mut [AggState]) {
        let start = u32::try_from(self.rows.len()).expect("pending rows under 4 GiB");
        row::encode(&spec.features, states, time, &mut self.rows);
        self.versions.push((entry as u32, start, time));
    }

    /// Bytes of version `i`'s row in `rows`.
    fn row_range(&self, i: usize) -> std::ops::Range<usize> {
        let end = self
            .versions
            .get(i + 1)
            .map_or(self.rows.len(), |v| v.1 as usize);
        self.versions[i].1 as usize..end
    }

    /// Memory held by the versions.
    fn bytes(&self) -> usize {
        self.versions.len() * std::mem::size_of::<(u32, u32, Time)>() + self.rows.len()
    }

    fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    fn clear(&mut self) {
        self.versions.clear();
        self.rows.clear();
    }
}

/// One table's pending versions with its keys, as the store packs them. A row's handle
/// is its start in `rows` and its length.
struct TableWrite<'a> {
    pending: &'a PendingRows,
    keyed: &'a KeyedStates,
}

impl pack::Numbered for TableWrite<'_> {
    fn len(&self) -> usize {
        self.pending.versions.len()
    }

    fn number(&self, i: usize) -> u32 {
        self.pending.versions[i].0
    }

    fn entry(&self, i: usize) -> (Time, u64) {
        let range = self.pending.row_range(i);
        let time = self.pending.versions[i].2;
        (time, (range.start as u64) << 32 | range.len() as u64)
    }

    fn row(&self, handle: u64) -> &[u8] {
        let start = (handle >> 32) as usize;
        &self.pending.rows[start..start + handle as u32 as usize]
    }

    fn prefetch_entry(&self, i: usize) {
        if let Some(v) = self.pending.versions.get(i) {
            // Its row's end is the next version's start: fetch both.
            prefetch(v, 2);
        }
    }

    fn prefetch_row(&self, handle: u64) {
        let row = self.row(handle);
        prefetch(row.as_ptr(), lines(row.len()));
    }

    fn key(&self, number: u32) -> &[u8] {
        self.keyed.key(number as usize).as_bytes()
    }

    fn prefetch_key(&self, number: u32) {
        prefetch(self.keyed.key(number as usize), 1);
    }
}

/// Pending versions past this many bytes (per worker) are written out at once. While
/// replaying, the cap rather than [`CATCH_UP_WRITE_EVERY`] ends most writes: 128 MiB
/// instead of 64 halves the table files and their merges (replays with the state about
/// -9 % wall, +40 MiB peak RSS; docs/PERFORMANCE-HISTORY.md).
const PENDING_BYTES: usize = 128 << 20;

/// Versions are written at most this often (processing time) while the job is live: 1 s
/// keeps them inside the API's 2 s visibility budget (DESIGN.md).
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// ... and at most this often while it replays history (its watermark more than
/// [`CATCH_UP_LAG`] behind the clock), where nothing waits on visibility. Each write is a
/// table file per table, and every file is a sorted run that compactions merge: fewer,
/// larger files are fewer merges (replays with the state -11 % wall, docs/PERFORMANCE-HISTORY.md).
pub const CATCH_UP_WRITE_EVERY: Duration = Duration::from_secs(4);

/// A watermark further than this behind the clock means the job is replaying history.
pub const CATCH_UP_LAG: Duration = Duration::from_secs(300);

/// How long versions may wait at `watermark`: [`WRITE_EVERY`] when live,
/// [`CATCH_UP_WRITE_EVERY`] while catching up.
fn write_interval(watermark: Time) -> Duration {
    if now_ms().saturating_sub(watermark) > CATCH_UP_LAG.as_millis() as Time {
        CATCH_UP_WRITE_EVERY
    } else {
        WRITE_EVERY
    }
}

impl Versions {
    /// No pending versions for `pipeline`'s tables, written to `store`.
    pub fn new(store: Arc<TableStore>, pipeline: &Pipeline) -> Self {
        let tables = &pipeline.tables;
        Versions {
            store,
            pending: tables.iter().map(|_| PendingRows::with_room()).collect(),
            expiries: TimeQueue::default(),
            scheduled: HashMap::default(),
            expiring: tables
                .iter()
                .map(|t| t.features.iter().any(expires))
                .collect(),
            last_write: Instant::now(),
            answered: 0,
        }
    }

    /// The store versions go to.
    pub fn store(&self) -> &TableStore {
        &self.store
    }

    /// Sends the pending versions to the store, one file per table, when their interval
    /// ([`write_interval`]) has passed since the last write, they pass [`PENDING_BYTES`],
    /// another worker wrote, or the input is done, and then records that `worker` has
    /// written everything before `watermark`. Returns how long until the next write is due
    /// if versions wait for it.
    pub fn flush(
        &mut self,
        worker: usize,
        watermark: Time,
        pipeline: &Pipeline,
        state: &[KeyedStates],
    ) -> Option<Duration> {
        let waiting = self.pending.iter().any(|p| !p.is_empty());
        let (since, every) = (self.last_write.elapsed(), write_interval(watermark));
        let full = self.pending_bytes() > PENDING_BYTES;
        let requested = self.write_requested();
        if waiting && since < every && !full && !requested && watermark != Time::MAX {
            return Some(every - since);
        }
        if waiting {
            self.write_pending(pipeline, state, requested);
        } else if requested {
            // Nothing to write: answered.
            self.answered = self.store.write_requests();
        }
        if let Err(e) = self.store.mark_written(worker, watermark) {
            panic!("cannot write versions: {e}");
        }
        None
    }

    /// Adds the version of every expiry instant before `before`, and schedules each key's
    /// next one.
    pub fn expire_before(&mut self, before: Time, pipeline: &Pipeline, state: &mut [KeyedStates]) {
        let mut due = Vec::new();
        loop {
            self.expiries.take_before(before, &mut due);
            if due.is_empty() {
                return;
            }
            for (t, (table, entry)) in due.drain(..) {
                if self.scheduled.get(&(table, entry)) != Some(&t) {
                    continue;
                }
                let spec = &pipeline.tables[table as usize];
                let states = state[table as usize].row(entry as usize);
                self.expire(t, (table, entry), spec, states);
                // Checked per version: the last instant (watermark `Time::MAX`) makes
                // every scheduled key due at once.
                if self.pending_bytes() > PENDING_BYTES {
                    self.write_pending(pipeline, state, false);
                }
            }
        }
    }

    /// Before the records of `entry` in `table` at `now`: the versions of its expiry
    /// instants before then (its runs come in key order, not time order).
    pub fn before_records(
        &mut self,
        table: usize,
        entry: usize,
        now: Time,
        spec: &TableSpec,
        states: &mut [AggState],
    ) {
        if self.expiring[table] {
            self.expire_key_before(now, (table as u16, entry as u32), spec, states);
        }
    }

    /// Adds the version of `entry` in `table` after its updates at `now`, and makes the
    /// key due at its next expiry instant if none is scheduled.
    pub fn updated(
        &mut self,
        table: usize,
        entry: usize,
        now: Time,
        spec: &TableSpec,
        states: &mut [AggState],
    ) {
        self.pending[table].push(entry, now, spec, states);
        if self.expiring[table] {
            let id = (table as u16, entry as u32);
            if !self.scheduled.contains_key(&id) {
                if let Some(next) = next_expiry(&spec.features, states) {
                    self.schedule(id, next);
                }
            }
        }
    }

    /// Writes every pending version, one ingested table file per table. A write that no
    /// other worker `requested` asks the others to write too (see
    /// [`TableStore::request_write`]).
    pub(super) fn write_pending(
        &mut self,
        pipeline: &Pipeline,
        state: &[KeyedStates],
        requested: bool,
    ) {
        if !requested {
            self.store.request_write();
        }
        let tables = pipeline.tables.iter().zip(&mut self.pending).zip(state);
        // One write's tables share their grouping buffers; kept no longer (they would
        // add the largest write's, 16 bytes a version, to the peak RSS, and measured no
        // faster: the kernel zeroes pages for whichever allocation touches them first).
        let mut scratch = pack::Scratch::default();
        for ((spec, pending), keyed) in tables {
            if pending.is_empty() {
                continue;
            }
            let write = TableWrite { pending, keyed };
            if let Err(e) = self.store.put_numbered(&spec.name, &write, &mut scratch) {
                panic!("cannot write versions of table {}: {e}", spec.name);
            }
            pending.clear();
        }
        self.last_write = Instant::now();
        // Requests made while this worker wrote are answered by its write.
        self.answered = self.store.write_requests();
    }

    /// Whether another worker asked for a write this worker has not answered.
    fn write_requested(&self) -> bool {
        self.store.write_requests() > self.answered
    }

    /// Memory held by pending versions.
    pub(super) fn pending_bytes(&self) -> usize {
        self.pending.iter().map(PendingRows::bytes).sum()
    }

    /// Adds the version of key `id` at its expiry instant `t`, and schedules its next one.
    fn expire(&mut self, t: Time, id: (u16, u32), spec: &TableSpec, states: &mut [AggState]) {
        self.pending[id.0 as usize].push(id.1 as usize, t, spec, states);
        match next_expiry(&spec.features, states) {
            Some(next) => self.schedule(id, next),
            None => {
                self.scheduled.remove(&id);
            }
        }
    }

    /// Makes key `id` due at `next`.
    fn schedule(&mut self, id: (u16, u32), next: Time) {
        self.expiries.push(next, id);
        self.scheduled.insert(id, next);
    }

    /// Fires the expiry instants of key `id` before `before`.
    fn expire_key_before(
        &mut self,
        before: Time,
        id: (u16, u32),
        spec: &TableSpec,
        states: &mut [AggState],
    ) {
        while let Some(&t) = self.scheduled.get(&id) {
            if t >= before {
                return;
            }
            self.expire(t, id, spec, states);
        }
    }
}

/// Whether a feature's stored value changes when an event leaves its window.
fn expires(f: &FeatureSpec) -> bool {
    f.window.is_some() && !windowed_by_totals(f)
}

/// The next instant a stored windowed value of this key changes with no event: the
/// earliest `time + window` of the events still inside such a window (they were trimmed
/// by the read that encoded the last version, so it lies after that version).
fn next_expiry(specs: &[FeatureSpec], states: &[AggState]) -> Option<Time> {
    specs
        .iter()
        .zip(states)
        .filter(|(f, _)| expires(f))
        .filter_map(|(f, s)| Some(s.oldest_in_window()? + f.window?))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::distinct::DistinctIds;

    #[test]
    fn versions_wait_longer_only_while_the_watermark_is_far_behind_the_clock() {
        let now = now_ms();
        assert_eq!(write_interval(now), WRITE_EVERY);
        assert_eq!(
            write_interval(now - 30_000),
            WRITE_EVERY,
            "live: out-of-orderness behind"
        );
        assert_eq!(write_interval(now - 3_600_000), CATCH_UP_WRITE_EVERY);
        assert_eq!(write_interval(0), CATCH_UP_WRITE_EVERY);
    }

    #[test]
    fn pending_versions_name_their_key_by_entry_and_keep_their_rows_apart() {
        let count = crate::features::agg::test_spec(crate::config::Agg::Count, None);
        let spec = TableSpec {
            name: "t".into(),
            key_names: vec!["k".into()],
            key_fields: vec![Some(vec![])],
            features: vec![count],
            retention: None,
        };
        let mut states: Vec<AggState> = spec.features.iter().map(AggState::new).collect();
        let mut p = PendingRows::default();
        p.push(7, 100, &spec, &mut states);
        states[0].apply(&spec.features[0], 100, 1.0, &mut DistinctIds::default());
        p.push(3, 101, &spec, &mut states);
        let keyed = KeyedStates::new(1);
        let w = TableWrite {
            pending: &p,
            keyed: &keyed,
        };
        use pack::Numbered;
        assert_eq!((w.number(0), w.number(1)), (7, 3));
        let (v0, v1) = (w.entry(0), w.entry(1));
        assert_eq!((v0.0, v1.0), (100, 101));
        let (r0, r1) = (w.row(v0.1), w.row(v1.1));
        assert_ne!(r0, r1, "each version keeps its own row");
        assert_eq!(p.bytes(), 2 * 16 + r0.len() + r1.len());
    }
}
