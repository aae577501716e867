//! The delayed label join: holds each example `window` of event time, counts its outcomes.

pub mod examples;
pub mod order;
pub mod pending;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::config::{LabelKind, Pipeline};
use crate::dataflow::hold::Held;
use crate::dataflow::time_queue::TimeQueue;
use crate::event::{stable_hash, Value, ValueRef};
use crate::features::agg::fill_ratios;
use crate::features::fragments::{label_worker, Fragments};
use crate::hash_slots::HashSlots;
use crate::metrics::Metrics;
use crate::sinks::partition::is_validation;
use crate::sinks::schema::{Columns, RepeatedCells};
use crate::sinks::side::{Side, SideSinks};
use crate::time::Time;
use examples::{Example, Id, Slot, WaitingExamples};
use pending::{
    decode_segment, decode_segment_texts, put_segment, skip_segment, Dictionary, EVENT_SEGMENT,
};

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
    /// Table values of examples, all bound for one worker.
    Fragments(Fragments),
}

impl LabelInput {
    /// The worker this input goes to, among `peers`.
    fn worker(&self, peers: usize) -> u64 {
        let id = match self {
            LabelInput::Example { id, .. } => id,
            LabelInput::Outcome { example_id, .. } => example_id,
            LabelInput::Fragments(f) => return f.worker,
        };
        label_worker(stable_hash(id.as_bytes()), peers)
    }
}

/// Finished training rows of one pass, rendered in both CSV forms (see [`Columns`]) into
/// one text: a row is a span of it, not an allocation of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Every row's full CSV line, then its SageMaker line; each line ends in `\n`.
    pub text: String,
    /// The rows, sorted by (time, example id).
    pub rows: Vec<Row>,
}

/// One row of [`Rows`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Example id.
    pub example_id: CompactString,
    /// Example time.
    pub time: Time,
    /// The row goes to `validation/` rather than `train/`.
    pub validation: bool,
    /// Where its full line starts in the text, where its SageMaker line starts, and where
    /// that ends.
    pub span: [usize; 3],
}

impl Rows {
    /// The full CSV line and the SageMaker line of `row`.
    pub fn lines(&self, row: &Row) -> (&str, &str) {
        let [start, sagemaker, end] = row.span;
        (&self.text[start..sagemaker], &self.text[sagemaker..end])
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// How many inputs ahead of its turn an example's map slot is fetched into cache (its
/// buffer half as far ahead).
const AHEAD: usize = 16;

/// Per-worker state of the label join.
struct LabelState {
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    side: Rc<RefCell<SideSinks>>,
    /// Examples waiting for their window to close.
    examples: WaitingExamples,
    /// Examples by deadline (`time + window`): hash slots, and the rare overflow ids.
    deadlines: TimeQueue<u64>,
    overflow_deadlines: TimeQueue<CompactString>,
    /// Outcomes whose example has not arrived: example id -> (time, outcome id).
    waiting: HashMap<CompactString, Vec<(Time, CompactString)>>,
    /// When to give up on waiting outcomes (their own time), by example id.
    orphan_checks: TimeQueue<CompactString>,
    /// Finished examples, remembered `outcome_lookback` to classify late outcomes.
    /// Keyed by a 64-bit hash of the id: a collision could only turn an orphan into an
    /// outside-window outcome (both are counted and kept).
    finished: HashSlots<Time>,
    /// Finished examples by the time they may be forgotten.
    forget: TimeQueue<u64>,
    dictionary: Dictionary,
    /// Column layout of a row.
    columns: Columns,
    /// Buffers reused by every row's [`LabelState::finish`].
    scratch: Scratch,
    /// Examples created since the last [`LabelState::pending_changed`]: reported once per
    /// batch of inputs, as an atomic add per example was a cache line the workers passed
    /// back and forth (only creations happen between reports, so peaks are the same).
    created: i64,
}

/// Buffers reused by every row's emission: segment starts, a table's values with its
/// ratios, the SageMaker line, and the cells of repeated values.
#[derive(Default)]
struct Scratch {
    starts: Vec<usize>,
    values: Vec<Option<f64>>,
    sagemaker: String,
    repeated: RepeatedCells,
    /// The most bytes a pass's rows took per row so far: room reserved per due row.
    row_bytes: usize,
}

impl LabelState {
    fn new(pipeline: Arc<Pipeline>, metrics: Arc<Metrics>, side: Rc<RefCell<SideSinks>>) -> Self {
        let columns = Columns::new(&pipeline);
        LabelState {
            pipeline,
            metrics,
            side,
            examples: WaitingExamples::default(),
            deadlines: TimeQueue::default(),
            overflow_deadlines: TimeQueue::default(),
            waiting: HashMap::default(),
            orphan_checks: TimeQueue::default(),
            // Every finished example is a new hash: a low load keeps its probe short.
            finished: HashSlots::with_max_load(4),
            forget: TimeQueue::default(),
            dictionary: Dictionary::default(),
            columns,
            scratch: Scratch::default(),
            created: 0,
        }
    }

    fn window(&self) -> Time {
        self.pipeline.label.window
    }

    /// Bytes held for waiting examples: map slots, buffers, deadline queue, dictionary.
    fn pending_bytes(&self) -> usize {
        self.examples.heap_bytes()
            + self.deadlines.heap_bytes()
            + self.overflow_deadlines.heap_bytes()
            + self.dictionary.heap_bytes()
    }

    fn pending_changed(&mut self, delta: i64) {
        let bytes = self.pending_bytes() as i64;
        self.metrics
            .pending_changed(delta, bytes, self.examples.len() as i64);
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
    fn count(&mut self, example_id: Id, example_time: Time, outcome_id: &str, t: Time) {
        if example_time <= t && t <= example_time + self.window() {
            self.examples.add_outcome(example_id);
        } else {
            self.unmatched(
                "outside_window",
                example_id.text,
                outcome_id,
                t,
                Some(example_time),
            );
        }
    }

    /// Receives a batch of inputs, fetching each one's example into cache a few inputs ahead
    /// (its map slot, then its buffer), so their cache misses overlap.
    fn receive_all(&mut self, data: &mut Vec<LabelInput>) {
        let mut hashes = Vec::with_capacity(data.len());
        for x in data.iter() {
            match x {
                LabelInput::Example { id, .. } => hashes.push(stable_hash(id.as_bytes())),
                LabelInput::Outcome { example_id, .. } => {
                    hashes.push(stable_hash(example_id.as_bytes()))
                }
                LabelInput::Fragments(f) => hashes.extend(f.examples.iter().map(|e| e.1)),
            }
        }
        let mut i = 0;
        for x in data.drain(..) {
            match x {
                LabelInput::Example { id, time, features } => {
                    self.fetch_ahead(&hashes, i);
                    let key = Id {
                        text: &id,
                        hash: hashes[i],
                    };
                    self.receive_example(key, time, &features);
                    i += 1;
                }
                LabelInput::Outcome {
                    example_id,
                    id,
                    time,
                } => {
                    self.fetch_ahead(&hashes, i);
                    let key = Id {
                        text: &example_id,
                        hash: hashes[i],
                    };
                    self.receive_outcome(key, id, time);
                    i += 1;
                }
                LabelInput::Fragments(f) => {
                    for (id, hash, segments) in f.iter() {
                        self.fetch_ahead(&hashes, i);
                        self.receive_segments(Id { text: id, hash }, segments);
                        i += 1;
                    }
                }
            }
        }
        if self.created > 0 {
            let created = std::mem::take(&mut self.created);
            self.pending_changed(created);
        }
    }

    /// Fetches the slot of example `i + AHEAD` and the buffer of `i + AHEAD / 2`.
    fn fetch_ahead(&self, hashes: &[u64], i: usize) {
        if let Some(&h) = hashes.get(i + AHEAD) {
            self.examples.prefetch_slot(h);
            self.finished.prefetch_slot(h);
        }
        if let Some(&h) = hashes.get(i + AHEAD / 2) {
            self.examples.prefetch_buffer(h);
        }
    }

    /// Receives an example at `time` with its event features.
    fn receive_example(&mut self, key: Id, time: Time, features: &[Value]) {
        let dict = &mut self.dictionary;
        let (slot, created) = self.examples.append(key, Some(time), |out| {
            put_segment(out, dict, EVENT_SEGMENT, features.iter())
        });
        match slot {
            Slot::Main(hash) => self.deadlines.push(time + self.window(), hash),
            Slot::Overflow(id) => self.overflow_deadlines.push(time + self.window(), id),
        }
        self.created += i64::from(created);
        for (t, oid) in self.waiting.remove(key.text).unwrap_or_default() {
            self.count(key, time, &oid, t);
        }
    }

    /// Receives outcome `id` at `time`, naming example `key`.
    fn receive_outcome(&mut self, key: Id, id: CompactString, time: Time) {
        match self.examples.get(key).map(|e| e.time()) {
            Some(t_i) if t_i != Time::MAX => self.count(key, t_i, &id, time),
            // Remembered finished examples explain outcomes up to `outcome_lookback`
            // after the window; the bound keeps this independent of when ids are forgotten.
            _ => match self.finished.get(key.hash) {
                Some(&t_i)
                    if time <= t_i + self.window() + self.pipeline.label.outcome_lookback =>
                {
                    self.unmatched("outside_window", key.text, &id, time, Some(t_i))
                }
                _ => {
                    let example_id = CompactString::from(key.text);
                    self.waiting
                        .entry(example_id.clone())
                        .or_default()
                        .push((time, id));
                    self.orphan_checks.push(time, example_id);
                }
            },
        }
    }

    /// Appends table segments to an example's buffer.
    fn receive_segments(&mut self, key: Id, segments: &[u8]) {
        let (_, created) = self
            .examples
            .append(key, None, |out| out.extend_from_slice(segments));
        self.created += i64::from(created);
    }

    /// Everything the watermark `frontier` completes: orphans, rows, forgotten examples.
    fn advance(&mut self, frontier: Time, rows: &mut Rows) {
        // An outcome at t can only belong to an example at or before t; once the watermark
        // passes t, such an example has arrived or is late.
        let mut due = Vec::new();
        self.orphan_checks.take_before(frontier, &mut due);
        for (t, id) in due.drain(..) {
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
        let mut slots: Vec<(Time, Slot)> = Vec::new();
        let mut main = Vec::new();
        self.deadlines.take_before(frontier, &mut main);
        slots.extend(main.into_iter().map(|(d, h)| (d, Slot::Main(h))));
        self.overflow_deadlines.take_before(frontier, &mut due);
        slots.extend(due.into_iter().map(|(d, id)| (d, Slot::Overflow(id))));
        let lookback = self.pipeline.label.outcome_lookback;
        let finished = slots.len() as i64;
        let hashes: Vec<u64> = slots
            .iter()
            .map(|(_, s)| match s {
                Slot::Main(h) => *h,
                Slot::Overflow(id) => stable_hash(id.as_bytes()),
            })
            .collect();
        let mut scratch = std::mem::take(&mut self.scratch);
        // Room for the pass's rows up front: a text grown by doubling is copied at each step.
        rows.text.reserve(slots.len() * scratch.row_bytes);
        rows.rows.reserve(slots.len());
        let text_from = rows.text.len();
        let mut positive = 0;
        for (i, (deadline, slot)) in slots.into_iter().enumerate() {
            self.fetch_ahead(&hashes, i);
            let (id, buf) = self.examples.remove(&slot);
            let (time, hash) = (deadline - self.window(), hashes[i]);
            let validation = is_validation(hash, self.pipeline.output.validation_fraction);
            let example = Example::of(&buf);
            positive += u64::from(example.outcomes() > 0);
            let row = self.finish(id, time, validation, example, &mut scratch, &mut rows.text);
            rows.rows.push(row);
            self.examples.recycle(buf);
            // Two ids with one hash: the later example is the one remembered.
            self.finished.set(hash, time);
            self.forget.push(deadline.saturating_add(lookback), hash);
        }
        if finished > 0 {
            let per_row = (rows.text.len() - text_from).div_ceil(finished as usize);
            scratch.row_bytes = scratch.row_bytes.max(per_row);
        }
        self.scratch = scratch;
        // Once per pass: an atomic add per row was a cache line the workers passed around.
        Metrics::add(&self.metrics.rows, finished as u64);
        Metrics::add(&self.metrics.positive_rows, positive);
        if finished > 0 {
            self.pending_changed(-finished);
        }
        let mut forgotten = Vec::new();
        self.forget.take_before(frontier, &mut forgotten);
        for i in 0..forgotten.len() {
            if let Some(&(_, ahead)) = forgotten.get(i + AHEAD) {
                self.finished.prefetch_slot(ahead);
            }
            self.finished.remove(forgotten[i].1);
        }
    }

    /// Renders a finished example's row at the end of `text`. Its segments arrive in any
    /// order: each one's start is found first, then they are decoded in column order.
    fn finish(
        &self,
        example_id: CompactString,
        time: Time,
        validation: bool,
        example: Example<'_>,
        scratch: &mut Scratch,
        text: &mut String,
    ) -> Row {
        let data = example.segments();
        let outcomes = example.outcomes();
        let tables = &self.pipeline.tables;
        let dict = &self.dictionary;
        let Scratch {
            starts,
            values,
            sagemaker,
            repeated,
            ..
        } = scratch;
        starts.clear();
        starts.resize(tables.len() + 1, usize::MAX);
        let mut pos = 0;
        while pos < data.len() {
            let tag = data[pos];
            starts[if tag == EVENT_SEGMENT {
                tables.len()
            } else {
                tag as usize
            }] = pos;
            pos = skip_segment(data, pos);
        }
        let label = match self.pipeline.label.kind {
            LabelKind::Exists => u32::from(outcomes > 0),
            LabelKind::Count => outcomes,
        };
        let (columns, mut column) = (&self.columns, 0);
        let start = text.len();
        sagemaker.clear();
        columns.start(&example_id, time, label, outcomes, text, sagemaker);
        match starts[tables.len()] {
            usize::MAX => {
                tracing::error!(example = %example_id, "event features missing at emission");
                for column in 0..self.pipeline.event_features.len() {
                    columns.cell(column, ValueRef::Missing, text, sagemaker);
                }
            }
            start => {
                decode_segment_texts(data, start, dict, |v, ix| {
                    repeated.cell(columns, column, (v, ix), text, sagemaker);
                    column += 1;
                });
            }
        }
        // Table features: numeric cells, the same text in both lines (copied once, below).
        let numeric_from = text.len();
        for (t, &start) in tables.iter().zip(starts.iter()) {
            if start == usize::MAX {
                tracing::error!(example = %example_id, table = %t.name, "table values missing at emission");
                for _ in &t.features {
                    Columns::number_cell(None, text);
                }
                continue;
            }
            // Stored values fill the columns of stored features; ratios are computed here.
            values.clear();
            values.resize(t.features.len(), None);
            let mut stored = t
                .features
                .iter()
                .enumerate()
                .filter(|(_, f)| f.ratio.is_none());
            decode_segment(data, start, dict, |v| {
                if let Some((i, _)) = stored.next() {
                    values[i] = v.as_num();
                }
            });
            fill_ratios(&t.features, values);
            for &v in values.iter() {
                Columns::number_cell(v, text);
            }
        }
        let numeric_to = text.len();
        text.push('\n');
        let sagemaker_at = text.len();
        text.push_str(sagemaker);
        text.extend_from_within(numeric_from..numeric_to);
        text.push('\n');
        Row {
            example_id,
            time,
            validation,
            span: [start, sagemaker_at, text.len()],
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
) -> StreamVec<'scope, Time, Rows> {
    let peers = inputs.scope().peers();
    let pact = Exchange::new(move |x: &LabelInput| x.worker(peers));
    inputs.unary_frontier(pact, "LabelJoin", move |_cap, _info| {
        let mut state = LabelState::new(pipeline, metrics, side);
        let mut held = Held::default();
        let mut rows = Rows::default();
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|cap, data| {
                held.hold(&cap, port);
                state.receive_all(data);
            });
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            state.advance(watermark, &mut rows);
            if let Some(cap) = held.get() {
                if !rows.is_empty() {
                    order::sort_rows(&mut rows.rows);
                    // The next pass reserves its own room (`LabelState::advance`).
                    output.session(cap).give(std::mem::take(&mut rows));
                }
            }
            held.settle(state.deadlines.first_time());
        }
    })
}
