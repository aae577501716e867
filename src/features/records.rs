//! Table records: what an event sends to each table it feeds or is looked up in, and
//! the order a table worker processes them in.

use std::ops::Range;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::agg::AggState;
use crate::config::{FeatureSpec, Pipeline};
use crate::event::{stable_hash, Event, Value};
use crate::radix;
use crate::time::Time;

/// An event routed to one table under one key, carrying only what the table reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableRecord {
    /// Table index.
    pub table: u16,
    /// Read the table for this example (the event is an example).
    pub lookup: bool,
    /// Apply the event to the table (the table aggregates its stream).
    pub update: bool,
    /// Stream of the event.
    pub stream: u16,
    /// Event time.
    pub time: Time,
    /// Key value (key fields joined by `|`).
    pub key: CompactString,
    /// [`stable_hash`] of the key: routes the record and orders keys cheaply.
    pub key_hash: u64,
    /// Event id (the example id for lookups; orders same-time updates).
    pub id: CompactString,
    /// Updates: the [`AggState::input`] of each table feature that reads this stream with a
    /// field, as [`Input`]s, worked out by the splitting worker. Inline: most streams feed a
    /// table one or two such features, and a vector was an allocation per record.
    pub values: SmallVec<[Input; 2]>,
}

/// An update's input: a number, or none (the event skips the feature), in 8 bytes. Records
/// are copied several times on their way (exchange, waiting, processing order), and an
/// `Option<f64>` took 16; a record is 96 bytes with two inputs inline instead of 112.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Input(u64);

impl Input {
    /// The bits of "none": a signalling NaN, which neither parsing nor arithmetic produces.
    /// A distinct-count input (a value's 64-bit hash as bits) with these bits is stored as
    /// the next pattern, merging two hashes as any hash collision would (2^-64).
    const NONE: u64 = 0x7FF4_0000_0000_0002;

    /// Packs an input.
    pub fn new(x: Option<f64>) -> Self {
        match x.map(f64::to_bits) {
            None => Input(Self::NONE),
            Some(Self::NONE) => Input(Self::NONE + 1),
            Some(bits) => Input(bits),
        }
    }

    /// The input, if any.
    pub fn get(self) -> Option<f64> {
        (self.0 != Self::NONE).then(|| f64::from_bits(self.0))
    }
}

impl TableRecord {
    /// Order within a key's records: by time, then table and key (keys whose 32-bit groups
    /// collide share one; by hash first, as their order between them does not matter), then
    /// same-time updates by (stream, id).
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.table, self.key_hash)
            .cmp(&(other.time, other.table, other.key_hash))
            .then_with(|| {
                (&self.key, self.stream, &self.id).cmp(&(&other.key, other.stream, &other.id))
            })
    }
}

/// Where a record goes among its key's records, read from it once. Sorting these leaves
/// the records where they are: sorting references instead read two random records per
/// comparison.
#[derive(Debug, Clone, Copy)]
struct Place {
    time: Time,
    /// Table in the top 16 bits, the key hash's top 48 bits below: one comparison orders
    /// both (keys whose hashes share those bits are told apart by [`TableRecord::order`]).
    rank: u64,
    /// Index of the record.
    ix: u32,
}

impl Place {
    fn of(ix: usize, r: &TableRecord) -> Self {
        Place {
            time: r.time,
            rank: (r.table as u64) << 48 | r.key_hash >> 16,
            ix: ix as u32,
        }
    }

    /// (time, rank) as one number: one wide comparison instead of two.
    fn order(&self) -> u128 {
        (self.time as u128) << 64 | self.rank as u128
    }
}

/// The records of one (time, table, key), as a range of the processing order.
#[derive(Debug, Clone)]
pub struct Run {
    /// Where its records are in the order.
    pub records: Range<usize>,
    /// Table of the run.
    pub table: u16,
    /// [`stable_hash`] of its key.
    pub key_hash: u64,
    /// Whether the previous run is of the same key (at an earlier time).
    pub repeat: bool,
}

/// The records of `ready` in processing order, its runs, and the first and last time
/// among them.
///
/// A key's state depends on its own records only, so keys need no order between them:
/// each key's records come together, in time order ([`TableRecord::order`]), so a pass
/// finds a hot key once for all of its times (a country or a campaign has hundreds of
/// records in a pass) instead of once per time. Keys are grouped by a 32-bit hash of table
/// and key, sorted as one number with the record's index (8 bytes a record, where a sort
/// by time and key moved 24); the rare keys sharing a group interleave by time.
pub fn processing_order(
    ready: &[TableRecord],
) -> (Vec<&TableRecord>, Vec<Run>, Option<(Time, Time)>) {
    let (mut first, mut last) = (Time::MAX, Time::MIN);
    let mut groups: Vec<u64> = ready
        .iter()
        .enumerate()
        .map(|(ix, r)| {
            (first, last) = (first.min(r.time), last.max(r.time));
            group(r) << 32 | ix as u64
        })
        .collect();
    let span = (!ready.is_empty()).then_some((first, last));
    // Indexes ascend, so ordering by group alone, stably, orders the whole numbers.
    radix::sort_by_small_key(&mut groups, 4, |g| g >> 32);
    let record = |g: &u64| &ready[*g as u32 as usize];
    let mut order = Vec::with_capacity(ready.len());
    // At most one run per record: no regrowth (copying the runs so far) as runs are found.
    let mut runs = Vec::with_capacity(ready.len());
    let mut places = Vec::new();
    for same in groups.chunk_by(|a, b| a >> 32 == b >> 32) {
        let start = order.len();
        if let [one] = same {
            order.push(record(one));
            runs.push(Run::of(start..start + 1, record(one)));
            continue;
        }
        let mut previous = None;
        places.clear();
        places.extend(
            same.iter()
                .map(|g| Place::of(*g as u32 as usize, record(g))),
        );
        sort_places(&mut places);
        order.extend(places.iter().map(|p| &ready[p.ix as usize]));
        let mut at = start;
        for tie in places.chunk_by(|a, b| a.order() == b.order()) {
            // Equal (time, rank): one key's same-time records (or, rarely, keys whose
            // ranks collide), ordered by key, stream and id, and split where the key changes.
            let records = &mut order[at..at + tie.len()];
            if tie.len() > 1 {
                records.sort_unstable_by(|a, b| a.order(b));
            }
            for run in records.chunk_by(|a, b| a.key == b.key) {
                let first: &TableRecord = run[0];
                let mut next = Run::of(at..at + run.len(), first);
                // A key's runs follow each other within its group.
                next.repeat = previous
                    .is_some_and(|p: &TableRecord| (p.table, &p.key) == (first.table, &first.key));
                previous = Some(first);
                runs.push(next);
                at += run.len();
            }
        }
    }
    (order, runs, span)
}

/// Sorts a key group's places by (time, rank). A large group (a country's or campaign's
/// thousands of records a pass took ~20 compares and moves each) by time with a radix
/// sort, then the rare same-time places of different keys (their groups collided) by rank.
fn sort_places(places: &mut Vec<Place>) {
    if places.len() < 256 {
        return places.sort_unstable_by_key(Place::order);
    }
    radix::sort_by_offset(places, |p| p.time);
    for same in places.chunk_by_mut(|a, b| a.time == b.time) {
        if same.iter().any(|p| p.rank != same[0].rank) {
            same.sort_unstable_by_key(Place::order);
        }
    }
}

/// The group of a record's key: 32 bits of its hash, mixed with its table.
fn group(r: &TableRecord) -> u64 {
    r.key_hash
        .wrapping_add((r.table as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        >> 32
}

impl Run {
    fn of(records: Range<usize>, first: &TableRecord) -> Run {
        Run {
            records,
            table: first.table,
            key_hash: first.key_hash,
            repeat: false,
        }
    }
}

/// The key fields of an event joined by `|`; `None` if one is missing.
fn key_of(fields: &[usize], ev: &Event) -> Option<CompactString> {
    if let [f] = fields {
        if let Value::Str(s) = &ev.fields[*f] {
            return Some(s.clone());
        }
    }
    let mut key = CompactString::default();
    for (i, &f) in fields.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        match &ev.fields[f] {
            Value::Str(s) => key.push_str(s),
            Value::Num(n) => key.push_str(&n.to_string()),
            Value::Missing => return None, // required fields: the source rejects these
        }
    }
    Some(key)
}

/// Where the events of each stream go: the tables they are examples for (lookup) or
/// that aggregate them (update), worked out once from the pipeline.
pub struct Routes {
    /// Per stream: its tables.
    per_stream: Vec<Vec<Route>>,
}

/// One table an event stream goes to.
struct Route {
    table: u16,
    lookup: bool,
    update: bool,
    /// Key fields of the stream.
    key: Vec<usize>,
    /// Updates: each feature that aggregates a field, and that field (in feature order).
    values: Vec<(FeatureSpec, usize)>,
}

impl Routes {
    /// The routes of every stream of `p`.
    pub fn new(p: &Pipeline) -> Self {
        let per_stream = (0..p.streams.len())
            .map(|stream| {
                let lookup = stream == p.label.example_stream;
                p.tables
                    .iter()
                    .enumerate()
                    .filter_map(|(ti, t)| {
                        let reads: Vec<&FeatureSpec> = t
                            .features
                            .iter()
                            .filter(|f| f.ratio.is_none() && f.stream == stream)
                            .collect();
                        let update = !reads.is_empty();
                        let key = t.key_fields[stream].clone()?;
                        (lookup || update).then(|| Route {
                            table: ti as u16,
                            lookup,
                            update,
                            key,
                            values: reads
                                .iter()
                                .filter_map(|f| Some(((*f).clone(), f.field?)))
                                .collect(),
                        })
                    })
                    .collect()
            })
            .collect();
        Routes { per_stream }
    }

    /// Appends an event's records: one per table it is an example for or that aggregates
    /// its stream (or both).
    pub fn route(&self, ev: &Event, out: &mut Vec<TableRecord>) {
        for r in &self.per_stream[ev.stream as usize] {
            let Some(key) = key_of(&r.key, ev) else {
                continue;
            };
            out.push(TableRecord {
                key_hash: stable_hash(key.as_bytes()),
                table: r.table,
                lookup: r.lookup,
                update: r.update,
                stream: ev.stream,
                time: ev.time,
                key,
                id: ev.id.clone(),
                values: r
                    .values
                    .iter()
                    .map(|(f, ix)| Input::new(AggState::input(f, &ev.fields[*ix])))
                    .collect(),
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The radix sort orders as a sort of the whole numbers does when the low halves
        /// ascend (indexes), short and long inputs alike.
        #[test]
        fn groups_sort_as_whole_numbers(
            highs in proptest::collection::vec(prop_oneof![0u64..4, 0u64..=u32::MAX as u64], 0..2_000)
        ) {
            let mut groups: Vec<u64> =
                highs.iter().enumerate().map(|(ix, h)| h << 32 | ix as u64).collect();
            let mut want = groups.clone();
            want.sort_unstable();
            radix::sort_by_small_key(&mut groups, 4, |g| g >> 32);
            prop_assert_eq!(groups, want);
        }
    }

    proptest! {
        /// A key group's places come out by (time, rank), every place once, for small
        /// groups (a comparison sort) and large ones (by time, then ties by rank).
        #[test]
        fn places_sort_by_time_then_rank(
            pairs in proptest::collection::vec((0u64..3_000, 0u64..3), 0..1_000),
            base in 0u64..1 << 44,
        ) {
            let mut places: Vec<Place> = pairs
                .iter()
                .enumerate()
                .map(|(ix, &(t, rank))| Place { time: base + t, rank, ix: ix as u32 })
                .collect();
            let mut want: Vec<u128> = places.iter().map(Place::order).collect();
            want.sort_unstable();
            sort_places(&mut places);
            let got: Vec<u128> = places.iter().map(Place::order).collect();
            prop_assert_eq!(got, want);
            let mut ixs: Vec<u32> = places.iter().map(|p| p.ix).collect();
            ixs.sort_unstable();
            prop_assert_eq!(ixs, (0..pairs.len() as u32).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_record_with_two_inputs_inline_is_96_bytes() {
        assert_eq!(std::mem::size_of::<TableRecord>(), 96);
    }

    proptest! {
        /// Every input comes back bit for bit (NaNs included), and none stays none; only the
        /// one pattern reserved for none comes back as its neighbour.
        #[test]
        fn inputs_come_back_as_they_went_in(bits in any::<u64>(), none in any::<bool>()) {
            let x = (!none).then(|| f64::from_bits(bits));
            let back = Input::new(x).get().map(f64::to_bits);
            match x.map(f64::to_bits) {
                Some(Input::NONE) => prop_assert_eq!(back, Some(Input::NONE + 1)),
                want => prop_assert_eq!(back, want),
            }
        }
    }

    /// A record of key `k` whose hash is `hash_of[k]` (shared on purpose between keys).
    pub(crate) fn record(
        time: Time,
        table: u16,
        k: u8,
        hash: u64,
        stream: u16,
        id: u32,
    ) -> TableRecord {
        TableRecord {
            table,
            lookup: true,
            update: true,
            stream,
            time,
            key: CompactString::from(format!("k{k}")),
            key_hash: hash,
            id: CompactString::from(format!("e{id}")),
            values: SmallVec::new(),
        }
    }

    proptest! {
        /// Runs cover the records once each, one run per (time, table, key) even when keys
        /// share a hash or its top 48 bits; each key's runs are in time order, and a run's
        /// records in (stream, id) order.
        #[test]
        fn runs_are_the_records_of_one_time_table_and_key(
            recs in prop::collection::vec((0u64..4, 0u16..2, 0u8..6, 0u16..2, 0u32..1000), 0..60),
            hashes in prop::collection::vec(prop_oneof![Just(7u64 << 16), Just(7u64 << 16 | 1), any::<u64>()], 6),
        ) {
            let ready: Vec<TableRecord> = recs
                .iter()
                .map(|&(t, table, k, s, id)| record(t, table, k, hashes[k as usize], s, id))
                .collect();
            let (order, runs, span) = processing_order(&ready);
            prop_assert_eq!(order.len(), ready.len());
            let mut seen = std::collections::HashSet::new();
            let mut end = 0;
            for run in &runs {
                prop_assert_eq!(run.records.start, end);
                end = run.records.end;
                let rs = &order[run.records.clone()];
                let first = rs[0];
                prop_assert!(rs.iter().all(|r| (r.time, r.table, &r.key) == (first.time, first.table, &first.key)));
                prop_assert!(rs.windows(2).all(|w| (w[0].stream, &w[0].id) <= (w[1].stream, &w[1].id)));
                prop_assert_eq!((run.table, run.key_hash), (first.table, first.key_hash));
                let previous = run.records.start.checked_sub(1).map(|p| order[p]);
                let same = previous.is_some_and(|p| (p.table, &p.key) == (first.table, &first.key));
                prop_assert_eq!(run.repeat, same, "repeat: the previous run is of the same key");
                prop_assert!(seen.insert((first.time, first.table, first.key.clone())), "one run per key");
            }
            prop_assert_eq!(end, ready.len());
            let times = ready.iter().map(|r| r.time);
            prop_assert_eq!(span, times.clone().min().zip(times.max()));
            let mut last = std::collections::HashMap::new();
            for r in &order {
                let previous = last.insert((r.table, &r.key), r.time).unwrap_or(0);
                prop_assert!(previous <= r.time, "a key's records in time order");
            }
        }
    }
}
