//! The keyed table operator: point-in-time aggregates per entity, read at each example's time.

use rustc_hash::{FxHashMap as HashMap};
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::agg::{fill_ratios, AggState};
use crate::config::{Pipeline, TableSpec};
use crate::dataflow::hold::Held;
use crate::event::{stable_hash, Event, Value};
use crate::time::Time;

/// An event routed to one table under one key, carrying only what the table reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableRecord {
    /// Table index.
    pub table: u16,
    /// Read the table for this example (instead of applying the event).
    pub lookup: bool,
    /// Stream of the event.
    pub stream: u16,
    /// Event time.
    pub time: Time,
    /// Key value (key fields joined by `|`).
    pub key: CompactString,
    /// Event id (the example id for lookups; orders same-time updates).
    pub id: CompactString,
    /// Updates: the aggregated field of each table feature that reads this stream with a field.
    pub values: Vec<Value>,
}

impl TableRecord {
    /// Order of records that share a time: lookups first, then updates by (stream, id).
    fn order(&self) -> (bool, u16, &str) {
        (!self.lookup, self.stream, &self.id)
    }
}

/// Table values for one example, sent to the label join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fragment {
    /// Example id.
    pub example_id: CompactString,
    /// Table index.
    pub table: u16,
    /// Feature values (`None` = missing), in the table's column order.
    pub values: Vec<Option<f64>>,
}

/// Key of an event in a table, if the table reads its stream.
pub fn table_key(table: &TableSpec, ev: &Event) -> Option<CompactString> {
    let fields = table.key_fields[ev.stream as usize].as_ref()?;
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

/// Routes an event to the tables: one lookup per table for examples, one update per table
/// that aggregates the event's stream.
pub fn route(p: &Pipeline, ev: &Event, out: &mut Vec<TableRecord>) {
    let stream = ev.stream as usize;
    for (ti, t) in p.tables.iter().enumerate() {
        let Some(key) = table_key(t, ev) else { continue };
        let record = |lookup: bool, key: CompactString, values: Vec<Value>| TableRecord {
            table: ti as u16,
            lookup,
            stream: ev.stream,
            time: ev.time,
            key,
            id: ev.id.clone(),
            values,
        };
        let reads = t.features.iter().filter(|f| f.ratio.is_none() && f.stream == stream);
        let updates = reads.clone().count() > 0;
        if stream == p.label.example_stream {
            out.push(record(true, key.clone(), Vec::new()));
        }
        if updates {
            let values = reads.filter_map(|f| f.field.map(|ix| ev.fields[ix].clone())).collect();
            out.push(record(false, key, values));
        }
    }
}

/// State of every table on this worker: key -> one state per feature.
pub struct Tables {
    pipeline: Arc<Pipeline>,
    state: Vec<HashMap<CompactString, Vec<AggState>>>,
}

impl Tables {
    /// Empty tables.
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        let state = pipeline.tables.iter().map(|_| HashMap::default()).collect();
        Tables { pipeline, state }
    }

    /// Values of `table` for `key` as of just before `now`.
    pub fn read(&mut self, table: usize, key: &str, now: Time) -> Vec<Option<f64>> {
        let spec = &self.pipeline.tables[table];
        let mut values: Vec<Option<f64>> = match self.state[table].get_mut(key) {
            Some(states) => spec
                .features
                .iter()
                .zip(states.iter_mut())
                .map(|(f, s)| s.read(f, now))
                .collect(),
            None => spec
                .features
                .iter()
                .map(|f| AggState::new(f).read(f, now))
                .collect(),
        };
        fill_ratios(&spec.features, &mut values);
        values
    }

    /// Applies an update record at its time.
    pub fn apply(&mut self, r: &TableRecord) {
        let spec = &self.pipeline.tables[r.table as usize];
        let states = self.state[r.table as usize]
            .entry(r.key.clone())
            .or_insert_with(|| spec.features.iter().map(AggState::new).collect());
        let mut values = r.values.iter();
        for (f, s) in spec.features.iter().zip(states.iter_mut()) {
            if f.ratio.is_none() && f.stream == r.stream as usize {
                let value = match f.field {
                    Some(_) => values.next().expect("one value per field feature"),
                    None => &Value::Missing,
                };
                s.apply(f, r.time, value);
            }
        }
    }

    /// Number of keys per table.
    pub fn sizes(&self) -> Vec<usize> {
        self.state.iter().map(HashMap::len).collect()
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
) -> StreamVec<'scope, Time, Fragment> {
    let pact = Exchange::new(|r: &TableRecord| stable_hash(r.key.as_bytes()) ^ r.table as u64);
    records.unary_frontier(pact, "Tables", move |_cap, _info| {
        let mut tables = Tables::new(pipeline);
        let mut held = Held::default();
        let mut buffer: Vec<TableRecord> = Vec::new();
        let mut done_below = 0;
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|cap, data| {
                held.hold(&cap, port);
                buffer.append(data);
            });
            let Some(cap) = held.get() else { return };
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            if watermark == done_below {
                return;
            }
            done_below = watermark;
            let mut ready: Vec<TableRecord> = buffer.extract_if(.., |r| r.time < watermark).collect();
            ready.sort_unstable_by(|a, b| (a.time, a.order()).cmp(&(b.time, b.order())));
            let mut fragments = Vec::new();
            for r in &ready {
                if r.lookup {
                    let values = tables.read(r.table as usize, &r.key, r.time);
                    fragments.push(Fragment { example_id: r.id.clone(), table: r.table, values });
                } else {
                    tables.apply(r);
                }
            }
            if !fragments.is_empty() {
                output.session(cap).give_iterator(fragments.into_iter());
            }
            held.settle(buffer.iter().map(|r| r.time).min());
        }
    })
}
