//! The delayed label join: holds each example `window` of event time, counts its outcomes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use rustc_hash::{FxHashMap as HashMap};
use std::rc::Rc;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::config::{LabelKind, Pipeline};
use crate::dataflow::hold::Held;
use crate::event::{stable_hash, Value};
use crate::features::table_op::Fragment;
use crate::metrics::Metrics;
use crate::sinks::side::{Side, SideSinks};
use crate::time::Time;

/// What the label join receives, keyed by example id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LabelInput {
    /// An example with its event features.
    Example {
        /// Example id.
        id: CompactString,
        /// Example time.
        time: Time,
        /// Event features, in declaration order.
        features: Vec<Value>,
    },
    /// An outcome naming its example.
    Outcome {
        /// The example id it names.
        example_id: CompactString,
        /// Outcome id.
        id: CompactString,
        /// Outcome time.
        time: Time,
    },
    /// Table values of an example.
    Fragment(Fragment),
}

impl LabelInput {
    fn example_id(&self) -> &str {
        match self {
            LabelInput::Example { id, .. } => id,
            LabelInput::Outcome { example_id, .. } => example_id,
            LabelInput::Fragment(f) => &f.example_id,
        }
    }
}

/// A finished training row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Example id.
    pub example_id: CompactString,
    /// Example time.
    pub time: Time,
    /// Label (0/1 for `exists`, the count for `count`).
    pub label: u32,
    /// Outcomes inside the window.
    pub outcome_count: u32,
    /// Event features then table features, in column order.
    pub features: Vec<Value>,
}

/// An example waiting for its window to close.
struct Pending {
    /// `None` until the example itself arrives (fragments may come first).
    time: Option<Time>,
    outcomes: u32,
    event_features: Vec<Value>,
    table_values: Vec<Option<Vec<Option<f64>>>>,
}

impl Pending {
    fn new(tables: usize) -> Self {
        Pending {
            time: None,
            outcomes: 0,
            event_features: Vec::new(),
            table_values: vec![None; tables],
        }
    }

    fn heap_bytes(&self) -> usize {
        let ev = self.event_features.capacity() * std::mem::size_of::<Value>();
        let tb: usize = self
            .table_values
            .iter()
            .flatten()
            .map(|v| 24 + v.capacity() * 16)
            .sum();
        std::mem::size_of::<Self>() + 24 + ev + tb + self.table_values.capacity() * 24
    }
}

/// Per-worker state of the label join.
struct LabelState {
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    side: Rc<RefCell<SideSinks>>,
    pending: HashMap<CompactString, Pending>,
    /// Examples by deadline (`time + window`).
    deadlines: BTreeMap<Time, Vec<CompactString>>,
    /// Outcomes whose example has not arrived: example id -> (time, outcome id).
    waiting: HashMap<CompactString, Vec<(Time, CompactString)>>,
    /// When to give up on waiting outcomes (their own time) -> example ids.
    orphan_checks: BTreeMap<Time, Vec<CompactString>>,
    /// Finished examples, remembered `outcome_lookback` to classify late outcomes.
    finished: HashMap<CompactString, Time>,
    forget: BTreeMap<Time, Vec<CompactString>>,
    pending_bytes: i64,
}

impl LabelState {
    fn window(&self) -> Time {
        self.pipeline.label.window
    }

    fn unmatched(
        &self,
        reason: &str,
        example_id: &str,
        outcome_id: &str,
        time: Time,
        example_time: Option<Time>,
    ) {
        let counter = if reason == "orphan" {
            &self.metrics.orphans
        } else {
            &self.metrics.outside_window
        };
        Metrics::add(counter, 1);
        let stream = &self.pipeline.streams[self.pipeline.label.outcome_stream].name;
        self.side.borrow_mut().write(
            Side::Unmatched,
            json!({"reason": reason, "stream": stream, "id": outcome_id, "time": time,
                "example_id": example_id, "example_time": example_time}),
        );
    }

    /// Counts an outcome for an example whose time is known, or records it as outside.
    fn count(&mut self, example_id: &str, example_time: Time, outcome_id: &str, t: Time) {
        if example_time <= t && t <= example_time + self.window() {
            if let Some(p) = self.pending.get_mut(example_id) {
                p.outcomes += 1;
            }
        } else {
            self.unmatched(
                "outside_window",
                example_id,
                outcome_id,
                t,
                Some(example_time),
            );
        }
    }

    fn entry(&mut self, id: &CompactString) -> &mut Pending {
        let tables = self.pipeline.tables.len();
        if !self.pending.contains_key(id) {
            self.pending.insert(id.clone(), Pending::new(tables));
            self.pending_changed(1, 0);
        }
        self.pending.get_mut(id).unwrap()
    }

    fn pending_changed(&mut self, delta: i64, bytes: i64) {
        self.pending_bytes += bytes;
        self.metrics
            .pending_changed(delta, self.pending_bytes, self.pending.len() as i64);
    }

    fn receive(&mut self, input: LabelInput) {
        match input {
            LabelInput::Example { id, time, features } => {
                let p = self.entry(&id);
                p.time = Some(time);
                p.event_features = features;
                let bytes = p.heap_bytes() as i64;
                self.pending_changed(0, bytes);
                self.deadlines
                    .entry(time + self.window())
                    .or_default()
                    .push(id.clone());
                for (t, oid) in self.waiting.remove(&id).unwrap_or_default() {
                    self.count(&id, time, &oid, t);
                }
            }
            LabelInput::Outcome {
                example_id,
                id,
                time,
            } => {
                if let Some(t_i) = self.pending.get(&example_id).and_then(|p| p.time) {
                    self.count(&example_id, t_i, &id, time);
                } else if let Some(&t_i) = self.finished.get(&example_id) {
                    self.unmatched("outside_window", &example_id, &id, time, Some(t_i));
                } else {
                    self.waiting
                        .entry(example_id.clone())
                        .or_default()
                        .push((time, id));
                    self.orphan_checks.entry(time).or_default().push(example_id);
                }
            }
            LabelInput::Fragment(f) => {
                let p = self.entry(&f.example_id);
                p.table_values[f.table as usize] = Some(f.values);
            }
        }
    }

    /// Everything the watermark `frontier` completes: orphans, rows, forgotten examples.
    fn advance(&mut self, frontier: Time, rows: &mut Vec<Row>) {
        // An outcome at t can only belong to an example at or before t; once the watermark
        // passes t, such an example has arrived or is late.
        while let Some(entry) = self.orphan_checks.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            let (t, ids) = entry.remove_entry();
            for id in ids {
                let Some(list) = self.waiting.get_mut(&id) else {
                    continue;
                };
                let (gone, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|(tc, _)| *tc <= t);
                *list = keep;
                if list.is_empty() {
                    self.waiting.remove(&id);
                }
                for (tc, oid) in gone {
                    self.unmatched("orphan", &id, &oid, tc, None);
                }
            }
        }
        let lookback = self.pipeline.label.outcome_lookback;
        while let Some(entry) = self.deadlines.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            let (deadline, ids) = entry.remove_entry();
            for id in ids {
                let Some(p) = self.pending.remove(&id) else {
                    continue;
                };
                let bytes = p.heap_bytes() as i64;
                self.pending_changed(-1, -bytes);
                let time = deadline - self.window();
                rows.push(self.finish(id.clone(), time, p));
                self.finished.insert(id.clone(), time);
                self.forget
                    .entry(deadline.saturating_add(lookback))
                    .or_default()
                    .push(id);
            }
        }
        while let Some(entry) = self.forget.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            for id in entry.remove() {
                self.finished.remove(&id);
            }
        }
    }

    fn finish(&self, example_id: CompactString, time: Time, p: Pending) -> Row {
        let mut features = p.event_features;
        for (t, values) in self.pipeline.tables.iter().zip(p.table_values) {
            match values {
                Some(v) => {
                    features.extend(v.into_iter().map(|x| x.map_or(Value::Missing, Value::Num)))
                }
                None => {
                    tracing::error!(example = %example_id, table = %t.name, "table values missing at emission");
                    features.extend(t.features.iter().map(|_| Value::Missing));
                }
            }
        }
        let label = match self.pipeline.label.kind {
            LabelKind::Exists => u32::from(p.outcomes > 0),
            LabelKind::Count => p.outcomes,
        };
        Metrics::add(&self.metrics.rows, 1);
        Metrics::add(&self.metrics.positive_rows, u64::from(p.outcomes > 0));
        Row {
            example_id,
            time,
            label,
            outcome_count: p.outcomes,
            features,
        }
    }
}

/// The label join operator. Inputs are exchanged by example id. A row is emitted exactly once,
/// when the watermark passes `time + window`, at a capability no later than that deadline
/// (so sinks know when an hour partition is complete).
pub fn label_join<'scope>(
    inputs: StreamVec<'scope, Time, LabelInput>,
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    side: Rc<RefCell<SideSinks>>,
) -> StreamVec<'scope, Time, Row> {
    let pact = Exchange::new(|x: &LabelInput| stable_hash(x.example_id().as_bytes()));
    inputs.unary_frontier(pact, "LabelJoin", move |_cap, _info| {
        let mut state = LabelState {
            pipeline,
            metrics,
            side,
            pending: HashMap::default(),
            deadlines: BTreeMap::new(),
            waiting: HashMap::default(),
            orphan_checks: BTreeMap::new(),
            finished: HashMap::default(),
            forget: BTreeMap::new(),
            pending_bytes: 0,
        };
        let mut held = Held::default();
        let mut rows = Vec::new();
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|cap, data| {
                held.hold(&cap, port);
                for x in data.drain(..) {
                    state.receive(x);
                }
            });
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            state.advance(watermark, &mut rows);
            if let Some(cap) = held.get() {
                if !rows.is_empty() {
                    // Deadlines come out in order; sorting each batch orders ties too.
                    rows.sort_by(|a: &Row, b: &Row| (a.time, &a.example_id).cmp(&(b.time, &b.example_id)));
                    output.session(cap).give_iterator(rows.drain(..));
                }
            }
            held.settle(state.deadlines.keys().next().copied());
        }
    })
}
