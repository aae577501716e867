//! The keyed table operator: point-in-time aggregates per entity, read at each example's time.

use rustc_hash::FxHashSet as HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::agg::{windowed_by_totals, AggState};
use super::fragments::{Fragments, FragmentsBuilder};
use super::keyed::{Candidate, KeyedStates};
use super::records::{processing_order, Run, TableRecord};
use crate::config::{FeatureSpec, Pipeline, TableSpec};
use crate::dataflow::hold::Held;
use crate::dataflow::time_queue::TimeQueue;
use crate::event::{stable_hash, Value};
use crate::label::pending::{put_numbers_header, put_optional_number};
use crate::prefetch::{lines, prefetch};
use crate::tables::{row, TableStore};
use crate::time::Time;

/// State of every table on this worker: key -> one state per feature.
pub struct Tables {
    pipeline: Arc<Pipeline>,
    state: Vec<KeyedStates>,
    versions: Option<Versions>,
}

/// Versions of changed rows on their way to the store (with `--state`).
struct Versions {
    store: Arc<TableStore>,
    /// Per table: the versions waiting for their write.
    pending: Vec<PendingRows>,
    /// A windowed min, max, distinct count or last changes without an event when an event
    /// leaves its window, at `time + window`: each key with events in such a window has
    /// exactly one entry here, at the next such instant (rescheduled when it fires).
    /// Windowed counts, sums and means need none: versions keep running totals.
    expiries: TimeQueue<(u16, CompactString)>,
    /// Keys with an entry in `expiries`.
    scheduled: HashSet<(u16, CompactString)>,
    /// Per table: whether any feature needs [`Versions::expiries`].
    expiring: Vec<bool>,
    /// When pending versions were last written.
    last_write: Instant,
}

/// Versions of one table waiting for their write: encoded rows back to back in one buffer
/// (no allocation per version).
#[derive(Default)]
struct PendingRows {
    /// Per version: key, version time, end of its row in `rows`.
    versions: Vec<(CompactString, Time, usize)>,
    rows: Vec<u8>,
}

impl PendingRows {
    /// Adds the version of `key` at `time`, its row encoded from `states`.
    fn push(&mut self, key: CompactString, time: Time, spec: &TableSpec, states: &mut [AggState]) {
        row::encode(&spec.features, states, time, &mut self.rows);
        self.versions.push((key, time, self.rows.len()));
    }

    /// Each version as (key, time, row).
    fn iter(&self) -> impl Iterator<Item = (&[u8], Time, &[u8])> {
        let starts = std::iter::once(0).chain(self.versions.iter().map(|v| v.2));
        self.versions
            .iter()
            .zip(starts)
            .map(|((key, time, end), start)| (key.as_bytes(), *time, &self.rows[start..*end]))
    }

    fn len(&self) -> usize {
        self.versions.len()
    }

    fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    fn clear(&mut self) {
        self.versions.clear();
        self.rows.clear();
    }
}

/// Pending versions past this many are written out at once (the last pass of a replay
/// writes every remaining window expiry at once).
const PENDING_LIMIT: usize = 500_000;

/// How many runs ahead of its turn a key's index slot is fetched into cache (its row
/// 3/4 as far ahead, its sets and windows half, their buffers a quarter).
const AHEAD: usize = 16;

/// Versions are written at most this often (processing time). Each write is one table
/// file per table, so fewer writes make larger files and pack more of a key's versions
/// into one entry; 1 s keeps versions inside the API's 2 s visibility budget (DESIGN.md).
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

impl Versions {
    /// Writes every pending version, one ingested table file per table.
    fn write_pending(&mut self, pipeline: &Pipeline) {
        for (spec, pending) in pipeline.tables.iter().zip(self.pending.iter_mut()) {
            if pending.is_empty() {
                continue;
            }
            if let Err(e) = self.store.put_versions(&spec.name, pending.iter()) {
                panic!("cannot write versions of table {}: {e}", spec.name);
            }
            pending.clear();
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
            scheduled: HashSet::default(),
            expiring: pipeline
                .tables
                .iter()
                .map(|t| t.features.iter().any(expires))
                .collect(),
            last_write: Instant::now(),
        });
        Tables {
            pipeline,
            state,
            versions,
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
            for (t, (table, key)) in due.drain(..) {
                let spec = &self.pipeline.tables[table as usize];
                let keyed = &mut self.state[table as usize];
                let hash = stable_hash(key.as_bytes());
                let Some(entry) = keyed.find(hash, &key, Candidate::NONE) else {
                    continue;
                };
                let states = keyed.row(entry);
                v.pending[table as usize].push(key.clone(), t, spec, states);
                match next_expiry(&spec.features, states) {
                    Some(next) => v.expiries.push(next, (table, key)),
                    None => {
                        v.scheduled.remove(&(table, key));
                    }
                }
            }
            if v.pending.iter().map(PendingRows::len).sum::<usize>() > PENDING_LIMIT {
                v.write_pending(&self.pipeline);
            }
        }
    }

    /// Processes the `ready` records (all before the watermark) in time order, and returns
    /// the table values of their lookups, one batch per label-join worker (one encoded
    /// segment per table an example was looked up in; ratios are left out and recomputed
    /// at emission).
    fn process(
        &mut self,
        ready: &[TableRecord],
        watermark: Time,
        peers: usize,
    ) -> impl Iterator<Item = Fragments> + use<> {
        let (order, runs) = processing_order(ready);
        let mut fragments = FragmentsBuilder::new(peers);
        let mut candidates = Vec::with_capacity(runs.len());
        for (i, run) in runs.iter().enumerate() {
            self.fetch_ahead(&order, &runs, i, &mut candidates);
            let run = &order[run.records.clone()];
            self.expire_before(run[0].time);
            self.process_run(run, candidates[i], &mut fragments);
        }
        self.expire_before(watermark);
        if let (Some(first), Some(last)) = (order.first(), order.last()) {
            self.observe_event_times(first.time, last.time);
        }
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
        let keyed = |run: &Run| &self.state[run.table as usize];
        if let Some(run) = runs.get(i + AHEAD) {
            keyed(run).prefetch_slot(run.key_hash);
            for &r in &order[run.records.clone()] {
                prefetch(r, lines(std::mem::size_of::<TableRecord>()));
            }
        }
        let until = (i + AHEAD * 3 / 4 + 1).min(runs.len());
        while candidates.len() < until {
            let run = &runs[candidates.len()];
            let c = keyed(run).candidate(run.key_hash);
            keyed(run).prefetch_entry(c);
            candidates.push(c);
        }
        if let Some(run) = runs.get(i + AHEAD / 2) {
            keyed(run).prefetch_heap(candidates[i + AHEAD / 2]);
        }
        if let Some(run) = runs.get(i + AHEAD / 4) {
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
    /// has passed since the last write or the input is done, and then records that `worker`
    /// has written everything before `watermark`. Returns how long until the next write
    /// is due if versions wait for it.
    fn flush_versions(&mut self, worker: usize, watermark: Time) -> Option<Duration> {
        let v = self.versions.as_mut()?;
        let waiting = v.pending.iter().any(|p| !p.is_empty());
        let since = v.last_write.elapsed();
        if waiting && since < WRITE_EVERY && watermark != Time::MAX {
            return Some(WRITE_EVERY - since);
        }
        if waiting {
            v.write_pending(&self.pipeline);
            v.last_write = Instant::now();
        }
        v.store.mark_written(worker, watermark);
        None
    }

    /// Processes the records of one (time, table, key): first every lookup (state of
    /// strictly earlier events), then every update in (stream, id) order.
    fn process_run(
        &mut self,
        run: &[&TableRecord],
        candidate: Candidate,
        fragments: &mut FragmentsBuilder,
    ) {
        let first = &run[0];
        let (table, now) = (first.table as usize, first.time);
        let spec = &self.pipeline.tables[table];
        let keyed = &mut self.state[table];
        let (hash, key) = (first.key_hash, &first.key);
        let entry = if run.iter().any(|r| r.update) {
            let init = |s: &mut Vec<AggState>| s.extend(spec.features.iter().map(AggState::new));
            Some(keyed.find_or_insert(hash, key, candidate, init))
        } else {
            keyed.find(hash, key, candidate)
        };
        let stored = spec.features.iter().filter(|f| f.ratio.is_none()).count();
        let mut states = entry.map(|e| keyed.row(e));
        for r in run.iter().filter(|r| r.lookup) {
            let segment = fragments.segment_of(&r.id);
            put_numbers_header(segment, table as u8, stored);
            for (i, f) in spec.features.iter().enumerate() {
                if f.ratio.is_none() {
                    let value = match states.as_deref_mut() {
                        Some(st) => st[i].read(f, now),
                        None => AggState::empty_value(f),
                    };
                    put_optional_number(segment, value);
                }
            }
            fragments.end();
        }
        let Some(states) = states else { return };
        if !run.iter().any(|r| r.update) {
            return;
        }
        for r in run.iter().filter(|r| r.update) {
            let mut values = r.values.iter();
            for (f, s) in spec.features.iter().zip(states.iter_mut()) {
                if f.ratio.is_none() && f.stream == r.stream as usize {
                    let input = match f.field {
                        Some(_) => *values.next().expect("one value per field feature"),
                        None => AggState::input(f, &Value::Missing),
                    };
                    if let Some(x) = input {
                        s.apply(f, r.time, x);
                    }
                }
            }
        }
        if let Some(v) = self.versions.as_mut() {
            v.pending[table].push(first.key.clone(), now, spec, states);
            if v.expiring[table] {
                let id = (table as u16, first.key.clone());
                if !v.scheduled.contains(&id) {
                    if let Some(next) = next_expiry(&spec.features, states) {
                        v.expiries.push(next, id.clone());
                        v.scheduled.insert(id);
                    }
                }
            }
        }
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

/// Records waiting for the watermark to pass their time, and the earliest of their times
/// (kept as records come and go, so an activation costs its new records, not a scan of
/// every waiting one).
#[derive(Default)]
struct Buffer {
    records: Vec<TableRecord>,
    min: Option<Time>,
}

impl Buffer {
    fn append(&mut self, data: &mut Vec<TableRecord>) {
        if let Some(t) = data.iter().map(|r| r.time).min() {
            self.min = Some(self.min.map_or(t, |m| m.min(t)));
        }
        self.records.append(data);
    }

    /// Moves the records before `watermark` into `ready` (cleared first; it keeps its
    /// capacity between passes: a fresh multi-megabyte vector per pass was fresh pages for
    /// the kernel to zero).
    fn take_before(&mut self, watermark: Time, ready: &mut Vec<TableRecord>) {
        ready.clear();
        let mut rest: Option<Time> = None;
        ready.extend(self.records.extract_if(.., |r| {
            if r.time >= watermark {
                rest = Some(rest.map_or(r.time, |m| m.min(r.time)));
            }
            r.time < watermark
        }));
        self.min = rest;
    }
}

/// The table operator. Records are exchanged by (table, key); each worker buffers them until
/// the watermark passes their time, then per time in order: first answers that time's lookups
/// (state of strictly earlier events), then applies its updates in (stream, id) order.
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
        let mut buffer = Buffer::default();
        let mut ready = Vec::new();
        let mut done_below = 0;
        let mut wake_at: Option<Instant> = None;
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|cap, data| {
                held.hold(&cap, port);
                buffer.append(data);
            });
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            if watermark != done_below {
                done_below = watermark;
                buffer.take_before(watermark, &mut ready);
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
            held.settle(buffer.min);
        }
    })
}
