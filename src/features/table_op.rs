//! The keyed table operator: point-in-time aggregates per entity, read at each example's time.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::agg::{windowed_by_totals, AggState};
use super::distinct::DistinctIds;
use super::fragments::{Fragments, FragmentsBuilder};
use super::keyed::{Candidate, KeyedStates};
use super::records::{processing_order, Run, TableRecord};
use super::waiting::WaitingRecords;
use crate::config::{FeatureSpec, Pipeline, TableSpec};
use crate::dataflow::hold::Held;
use crate::dataflow::time_queue::TimeQueue;
use crate::event::Value;
use crate::label::pending::{put_numbers_header, put_optional_number};
use crate::prefetch::{lines, prefetch};
use crate::tables::pack;
use crate::tables::{row, TableStore};
use crate::time::{now_ms, Time};

/// State of every table on this worker: key -> one state per feature.
pub struct Tables {
    pipeline: Arc<Pipeline>,
    state: Vec<KeyedStates>,
    /// Per table, per feature: numbers of the distinct values seen (distinct counts).
    distinct_ids: Vec<Vec<DistinctIds>>,
    versions: Option<Versions>,
    /// The last pass's lookup batches per label-join worker (examples, bytes): the room the
    /// next pass's batches start with.
    fragment_room: Vec<(usize, usize)>,
}

/// Versions of changed rows on their way to the store (with `--state`).
struct Versions {
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

/// How [`Tables::process_run`] finds its key's entry.
#[derive(Clone, Copy)]
enum Found {
    /// From the index, starting at this candidate.
    Candidate(Candidate),
    /// Known from the key's previous run in the pass (`None`: the key has no entry).
    Entry(Option<usize>),
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
/// -9 % wall, +40 MiB peak RSS; docs/PERFORMANCE.md).
const PENDING_BYTES: usize = 128 << 20;

/// How many runs ahead of its turn a key's index slot is fetched into cache (its row
/// 3/4 as far ahead, its sets and windows half, their buffers a quarter).
const AHEAD: usize = 16;

/// Versions are written at most this often (processing time) while the job is live: 1 s
/// keeps them inside the API's 2 s visibility budget (DESIGN.md).
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// ... and at most this often while it replays history (its watermark more than
/// [`CATCH_UP_LAG`] behind the clock), where nothing waits on visibility. Each write is a
/// table file per table, and every file is a sorted run that compactions merge: fewer,
/// larger files are fewer merges (replays with the state -11 % wall, docs/PERFORMANCE.md).
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
    /// Writes every pending version, one ingested table file per table. A write that no
    /// other worker `requested` asks the others to write too (see
    /// [`TableStore::request_write`]).
    fn write_pending(&mut self, pipeline: &Pipeline, state: &[KeyedStates], requested: bool) {
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
    fn pending_bytes(&self) -> usize {
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

    /// Fires the expiry instants of key `id` before `before` (ahead of its records at
    /// `before`, whose runs come in key order, not time order).
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

impl Tables {
    /// Empty tables; with a store, every change becomes a version in it.
    pub fn new(pipeline: Arc<Pipeline>, store: Option<Arc<TableStore>>) -> Self {
        let state = pipeline
            .tables
            .iter()
            .map(|t| KeyedStates::new(t.features.len()))
            .collect();
        let versions = store.map(|store| Versions {
            store,
            pending: pipeline
                .tables
                .iter()
                .map(|_| PendingRows::default())
                .collect(),
            expiries: TimeQueue::default(),
            scheduled: HashMap::default(),
            expiring: pipeline
                .tables
                .iter()
                .map(|t| t.features.iter().any(expires))
                .collect(),
            last_write: Instant::now(),
            answered: 0,
        });
        let distinct_ids = pipeline
            .tables
            .iter()
            .map(|t| t.features.iter().map(|_| DistinctIds::default()).collect())
            .collect();
        Tables {
            pipeline,
            state,
            distinct_ids,
            versions,
            fragment_room: Vec::new(),
        }
    }

    /// Writes the versions of every expiry instant before `before`, and schedules each
    /// key's next one.
    fn expire_before(&mut self, before: Time) {
        let Some(v) = self.versions.as_mut() else {
            return;
        };
        let mut due = Vec::new();
        loop {
            v.expiries.take_before(before, &mut due);
            if due.is_empty() {
                return;
            }
            for (t, (table, entry)) in due.drain(..) {
                if v.scheduled.get(&(table, entry)) != Some(&t) {
                    continue;
                }
                let spec = &self.pipeline.tables[table as usize];
                let states = self.state[table as usize].row(entry as usize);
                v.expire(t, (table, entry), spec, states);
                // Checked per version: the last instant (watermark `Time::MAX`) makes
                // every scheduled key due at once.
                if v.pending_bytes() > PENDING_BYTES {
                    v.write_pending(&self.pipeline, &self.state, false);
                }
            }
        }
    }

    /// Processes the `ready` records (all before the watermark), key by key and each key's
    /// in time order, and returns the table values of their lookups, one batch per
    /// label-join worker (one encoded segment per table an example was looked up in;
    /// ratios are left out and recomputed at emission).
    fn process(
        &mut self,
        ready: &[TableRecord],
        watermark: Time,
        peers: usize,
    ) -> impl Iterator<Item = Fragments> + use<> {
        let (order, runs, times) = processing_order(ready);
        let mut fragments = FragmentsBuilder::new(peers, &self.fragment_room);
        let mut candidates = Vec::with_capacity(runs.len());
        let mut entry = None;
        for (i, run) in runs.iter().enumerate() {
            self.fetch_ahead(&order, &runs, i, &mut candidates);
            let records = &order[run.records.clone()];
            // The runs of one key follow each other: its entry is known after the first.
            let found = if run.repeat {
                Found::Entry(entry)
            } else {
                Found::Candidate(candidates[i])
            };
            entry = self.process_run(records, found, &mut fragments);
        }
        self.expire_before(watermark);
        if let Some((first, last)) = times {
            self.observe_event_times(first, last);
        }
        self.fragment_room = fragments.sizes();
        fragments.finish()
    }

    /// Fetches the state of the runs after run `i` into cache ahead of their turn, one
    /// level of indirection per stage (records and index slot, row, sets and windows, their
    /// buffers), so the cache misses of many keys overlap instead of adding up.
    fn fetch_ahead(
        &self,
        order: &[&TableRecord],
        runs: &[Run],
        i: usize,
        candidates: &mut Vec<Candidate>,
    ) {
        // A repeated key's state is fetched with its first run (and needs no candidate).
        let keyed = |run: &Run| &self.state[run.table as usize];
        if let Some(run) = runs.get(i + AHEAD) {
            if !run.repeat {
                keyed(run).prefetch_slot(run.key_hash);
            }
            for &r in &order[run.records.clone()] {
                prefetch(r, lines(std::mem::size_of::<TableRecord>()));
            }
        }
        let until = (i + AHEAD * 3 / 4 + 1).min(runs.len());
        while candidates.len() < until {
            let run = &runs[candidates.len()];
            let c = if run.repeat {
                Candidate::NONE
            } else {
                let c = keyed(run).candidate(run.key_hash);
                keyed(run).prefetch_entry(c);
                c
            };
            candidates.push(c);
        }
        if let Some(run) = runs.get(i + AHEAD / 2).filter(|r| !r.repeat) {
            keyed(run).prefetch_heap(candidates[i + AHEAD / 2]);
        }
        if let Some(run) = runs.get(i + AHEAD / 4).filter(|r| !r.repeat) {
            keyed(run).prefetch_buffers(candidates[i + AHEAD / 4]);
        }
    }

    /// Tells the store the range of event times applied.
    fn observe_event_times(&self, first: Time, last: Time) {
        if let Some(v) = &self.versions {
            v.store.observe_event_times(first, last);
        }
    }

    /// Sends the pending versions to the store, one file per table, when [`WRITE_EVERY`]
    /// has passed since the last write, another worker wrote, or the input is done, and
    /// then records that `worker` has written everything before `watermark`. Returns how
    /// long until the next write is due if versions wait for it.
    fn flush_versions(&mut self, worker: usize, watermark: Time) -> Option<Duration> {
        let v = self.versions.as_mut()?;
        let waiting = v.pending.iter().any(|p| !p.is_empty());
        let (since, every) = (v.last_write.elapsed(), write_interval(watermark));
        let full = v.pending_bytes() > PENDING_BYTES;
        let requested = v.write_requested();
        if waiting && since < every && !full && !requested && watermark != Time::MAX {
            return Some(every - since);
        }
        if waiting {
            v.write_pending(&self.pipeline, &self.state, requested);
        } else if requested {
            // Nothing to write: answered.
            v.answered = v.store.write_requests();
        }
        if let Err(e) = v.store.mark_written(worker, watermark) {
            panic!("cannot write versions: {e}");
        }
        None
    }

    /// Processes the records of one (time, table, key): first every lookup (state of
    /// strictly earlier events), then every update in (stream, id) order. Returns the
    /// key's entry, if it has one.
    fn process_run(
        &mut self,
        run: &[&TableRecord],
        found: Found,
        fragments: &mut FragmentsBuilder,
    ) -> Option<usize> {
        let first = &run[0];
        let (table, now) = (first.table as usize, first.time);
        let spec = &self.pipeline.tables[table];
        let keyed = &mut self.state[table];
        let distinct_ids = &mut self.distinct_ids[table];
        let (hash, key) = (first.key_hash, &first.key);
        let updates = run.iter().any(|r| r.update);
        let init = |s: &mut Vec<AggState>| s.extend(spec.features.iter().map(AggState::new));
        let entry = match found {
            Found::Entry(Some(e)) => Some(e),
            Found::Entry(None) if !updates => None,
            Found::Entry(None) => Some(keyed.find_or_insert(hash, key, Candidate::NONE, init)),
            Found::Candidate(c) if !updates => keyed.find(hash, key, c),
            Found::Candidate(c) => Some(keyed.find_or_insert(hash, key, c, init)),
        };
        if let (Some(v), Some(e)) = (self.versions.as_mut(), entry) {
            if v.expiring[table] {
                v.expire_key_before(now, (table as u16, e as u32), spec, keyed.row(e));
            }
        }
        let stored = spec.features.iter().filter(|f| f.ratio.is_none()).count();
        let mut states = entry.map(|e| keyed.row(e));
        for r in run.iter().filter(|r| r.lookup) {
            let segment = fragments.segment_of(&r.id);
            put_numbers_header(segment, table as u8, stored);
            for (i, f) in spec.features.iter().enumerate() {
                if f.ratio.is_none() {
                    match states.as_deref_mut() {
                        Some(st) => st[i].put_read(f, now, segment),
                        None => put_optional_number(segment, AggState::empty_value(f)),
                    }
                }
            }
            fragments.end();
        }
        let states = states?;
        if !updates {
            return entry;
        }
        for r in run.iter().filter(|r| r.update) {
            let mut values = r.values.iter();
            let features = spec.features.iter().zip(&mut *distinct_ids);
            for ((f, ids), s) in features.zip(states.iter_mut()) {
                if f.ratio.is_none() && f.stream == r.stream as usize {
                    let input = match f.field {
                        Some(_) => values.next().expect("one value per field feature").get(),
                        None => AggState::input(f, &Value::Missing),
                    };
                    if let Some(x) = input {
                        s.apply(f, r.time, x, ids);
                    }
                }
            }
        }
        if let Some(v) = self.versions.as_mut() {
            let entry = entry.expect("a row to update has an entry");
            v.pending[table].push(entry, now, spec, states);
            if v.expiring[table] {
                let id = (table as u16, entry as u32);
                if !v.scheduled.contains_key(&id) {
                    if let Some(next) = next_expiry(&spec.features, states) {
                        v.schedule(id, next);
                    }
                }
            }
        }
        entry
    }

    /// Number of keys per table.
    pub fn sizes(&self) -> Vec<usize> {
        self.state.iter().map(KeyedStates::len).collect()
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        let sizes: Vec<String> = self
            .pipeline
            .tables
            .iter()
            .zip(self.sizes())
            .map(|(t, n)| format!("{}={n}", t.name))
            .collect();
        tracing::debug!(keys = %sizes.join(" "), "table sizes on this worker");
    }
}

/// The table operator. Records are exchanged by (table, key); each worker buffers them until
/// the watermark passes their time, then key by key, per time in order: first answers that
/// time's lookups (state of strictly earlier events), then applies its updates in
/// (stream, id) order.
///
/// Fragments are sent at a capability no later than the example's time, so the label join
/// has every fragment of an example once its frontier passes the example's time.
pub fn table_operator<'scope>(
    records: StreamVec<'scope, Time, TableRecord>,
    pipeline: Arc<Pipeline>,
    store: Option<Arc<TableStore>>,
) -> StreamVec<'scope, Time, Fragments> {
    let pact = Exchange::new(|r: &TableRecord| r.key_hash ^ r.table as u64);
    let (worker, peers) = (records.scope().index(), records.scope().peers());
    let scope = records.scope();
    records.unary_frontier(pact, "Tables", move |_cap, info| {
        let activator = scope.activator_for(info.address);
        let mut tables = Tables::new(pipeline, store);
        let mut held = Held::default();
        let mut waiting = WaitingRecords::default();
        let mut ready = Vec::new();
        let mut done_below = 0;
        let mut wake_at: Option<Instant> = None;
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|cap, data| {
                held.hold(&cap, port);
                waiting.append(data);
            });
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            if watermark != done_below {
                done_below = watermark;
                waiting.take_before(watermark, &mut ready);
                let fragments = tables.process(&ready, watermark, peers);
                if let Some(cap) = held.get() {
                    output.session(cap).give_iterator(fragments);
                }
            }
            match tables.flush_versions(worker, watermark) {
                // Written when due even if no input or frontier change wakes us; one timer
                // at a time (each is a scheduler entry until it fires).
                Some(due) if wake_at.is_none_or(|at| at <= Instant::now()) => {
                    activator.activate_after(due);
                    wake_at = Some(Instant::now() + due);
                }
                Some(_) => {}
                None => wake_at = None,
            }
            held.settle(waiting.min());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Adds a version of `key` in the first table to `tables`' pending versions.
    fn add_pending(tables: &mut Tables, key: &str, time: Time) {
        let spec = &tables.pipeline.tables[0];
        let keyed = &mut tables.state[0];
        let key = compact_str::CompactString::from(key);
        let init = |s: &mut Vec<AggState>| s.extend(spec.features.iter().map(AggState::new));
        let e = keyed.find_or_insert(
            crate::event::stable_hash(key.as_bytes()),
            &key,
            Candidate::NONE,
            init,
        );
        let v = tables.versions.as_mut().unwrap();
        v.pending[0].push(e, time, spec, keyed.row(e));
    }

    #[test]
    fn a_write_by_one_worker_makes_the_other_workers_write_too() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/ad_clicks.toml");
        let pipeline = Arc::new(Pipeline::load(&path).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<&str> = pipeline.tables.iter().map(|t| t.name.as_str()).collect();
        let store = Arc::new(TableStore::open(dir.path(), &names).unwrap());
        store.expect_writers(2);
        let mut workers: Vec<Tables> = (0..2)
            .map(|_| Tables::new(pipeline.clone(), Some(store.clone())))
            .collect();
        // Far behind the clock: a write is due only after CATCH_UP_WRITE_EVERY.
        let watermark = 1_000;
        for (w, tables) in workers.iter_mut().enumerate() {
            add_pending(tables, &format!("u{w}"), 500);
            assert!(tables.flush_versions(w, watermark).is_some(), "not due yet");
        }
        // Worker 0 writes on its own, as when its pending versions pass the cap.
        let first = &mut workers[0];
        let v = first.versions.as_mut().unwrap();
        v.write_pending(&first.pipeline, &first.state, false);
        let second = &mut workers[1];
        assert_eq!(second.flush_versions(1, watermark), None, "written at once");
        let pending = |t: &Tables| t.versions.as_ref().unwrap().pending_bytes();
        assert_eq!(pending(second), 0);
        // The request is answered: the next versions wait for their interval again.
        add_pending(second, "u1", 600);
        assert!(second.flush_versions(1, watermark).is_some());
        assert!(pending(second) > 0);
        store.wait_ingested().unwrap();
        for key in ["u0", "u1"] {
            assert!(
                store.get(names[0], key.as_bytes(), 500).unwrap().is_some(),
                "{key}"
            );
        }
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
