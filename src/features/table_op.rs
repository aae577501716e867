//! The keyed table operator: point-in-time aggregates per entity, read at each example's time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::agg::AggState;
use super::distinct::DistinctIds;
use super::fragments::{Fragments, FragmentsBuilder};
use super::keyed::{Candidate, KeyedStates};
use super::records::{processing_order, Run, TableRecord};
use super::versions::Versions;
use super::waiting::WaitingRecords;
use crate::config::Pipeline;
use crate::dataflow::hold::Held;
use crate::event::Value;
use crate::label::pending::{put_numbers_header, put_optional_number};
use crate::prefetch::{lines, prefetch};
use crate::tables::TableStore;
use crate::time::Time;

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

/// How [`Tables::process_run`] finds its key's entry.
#[derive(Clone, Copy)]
enum Found {
    /// From the index, starting at this candidate.
    Candidate(Candidate),
    /// Known from the key's previous run in the pass (`None`: the key has no entry).
    Entry(Option<usize>),
}

/// How many runs ahead of its turn a key's index slot is fetched into cache (its row
/// 3/4 as far ahead, its sets and windows half, their buffers a quarter).
const AHEAD: usize = 16;

impl Tables {
    /// Empty tables; with a store, every change becomes a version in it.
    pub fn new(pipeline: Arc<Pipeline>, store: Option<Arc<TableStore>>) -> Self {
        let state = pipeline
            .tables
            .iter()
            .map(|t| KeyedStates::new(t.features.len()))
            .collect();
        let versions = store.map(|store| Versions::new(store, &pipeline));
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
        if let Some(v) = self.versions.as_mut() {
            v.expire_before(watermark, &self.pipeline, &mut self.state);
        }
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
            v.store().observe_event_times(first, last);
        }
    }

    /// Writes pending versions when due (see [`Versions::flush`]).
    fn flush_versions(&mut self, worker: usize, watermark: Time) -> Option<Duration> {
        let v = self.versions.as_mut()?;
        v.flush(worker, watermark, &self.pipeline, &self.state)
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
            v.before_records(table, e, now, spec, keyed.row(e));
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
            v.updated(table, entry, now, spec, states);
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
        v.updated(0, e, time, spec, keyed.row(e));
    }

    #[test]
    fn a_write_by_one_worker_makes_the_other_workers_write_too() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/ad_clicks.toml");
        let pipeline = Arc::new(Pipeline::load(&path).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<&str> = pipeline.tables.iter().map(|t| t.name.as_str()).collect();
        let store = Arc::new(TableStore::open(dir.path(), &names, &[]).unwrap());
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
}
