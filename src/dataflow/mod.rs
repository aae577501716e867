//! Wires the job: sources -> dedup -> tables (features) + label join -> partitioned sinks.

pub mod admit;
pub mod dedup;
pub mod hold;
pub mod kinesis_op;
pub mod source_op;
pub mod time_queue;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::core::Concat;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use timely::progress::operate::FrontierInterest;

use crate::config::{FieldRef, Pipeline};
use crate::event::Event;
use crate::features::derived::EventFeatures;
use crate::features::records::{Routes, TableRecord};
use crate::features::table_op::table_operator;
use crate::label::{label_join, LabelInput};
use crate::metrics::Metrics;
use crate::sinks::commit::committer;
use crate::sinks::partition::partition_writer;
use crate::sinks::side::SideSinks;
use crate::sources::PartitionSpec;
use crate::tables::TableStore;
use crate::time::Time;

/// Handles the caller keeps to watch a built dataflow.
pub struct Built {
    /// Frontier after deduplication: the pipeline watermark.
    pub watermark: ProbeHandle<Time>,
    /// Frontier at the end of the dataflow.
    pub done: ProbeHandle<Time>,
}

/// Builds the whole job in `scope` for one worker.
pub fn build(
    scope: Scope<'_, Time>,
    pipeline: Arc<Pipeline>,
    partitions: &[PartitionSpec],
    output: PathBuf,
    metrics: Arc<Metrics>,
    side: Rc<RefCell<SideSinks>>,
    store: Option<Arc<TableStore>>,
) -> Built {
    let watermark = ProbeHandle::new();
    let done = ProbeHandle::new();
    let worker = scope.index();

    let mut events = source_op::file_source(
        scope,
        pipeline.clone(),
        partitions,
        metrics.clone(),
        side.clone(),
        watermark.clone(),
    );
    // Kinesis sources (`kinesis://` paths) run beside the file partitions.
    for (i, spec) in crate::sources::kinesis_sources(&pipeline) {
        let (m, s, w) = (metrics.clone(), side.clone(), watermark.clone());
        let stream = kinesis_op::kinesis_source(scope, pipeline.clone(), i, spec, m, s, w);
        events = events.concat(stream);
    }
    let events = dedup::dedup(events, pipeline.clone(), metrics.clone(), side.clone())
        .probe_with(&watermark);

    // Features: each event goes to the tables keyed by it; examples and outcomes also go
    // to the label join.
    let (records, examples_and_outcomes) = split_events(events, pipeline.clone());
    let fragments = table_operator(records, pipeline.clone(), store).map(LabelInput::Fragments);
    let rows = label_join(
        examples_and_outcomes.concat(fragments),
        pipeline.clone(),
        metrics.clone(),
        side,
    );
    let parts = partition_writer(rows, pipeline.clone(), output.clone(), worker).probe_with(&done);
    committer(parts, output, pipeline.label.window, metrics);
    Built { watermark, done }
}

/// How many events ahead of its turn the split fetches an event's fields.
const AHEAD: usize = 16;

/// Splits events into their table records and the label join's examples (with their event
/// features) and outcomes (naming their example). One operator that consumes each event:
/// two consumers of one stream would each get a copy of every event.
fn split_events<'scope>(
    events: StreamVec<'scope, Time, Event>,
    p: Arc<Pipeline>,
) -> (
    StreamVec<'scope, Time, TableRecord>,
    StreamVec<'scope, Time, LabelInput>,
) {
    let mut builder = OperatorBuilder::new("SplitEvents".to_owned(), events.scope());
    let mut input = builder.new_input(events, Local);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (records, records_stream) = builder.new_output();
    let (labels, labels_stream) = builder.new_output();
    let (mut records, mut labels) = (OutputBuilder::from(records), OutputBuilder::from(labels));
    builder.build(move |_| {
        let mut derive = EventFeatures::default();
        let routes = Routes::new(&p);
        let mut routed = Vec::new();
        move |_frontiers| {
            let (mut records, mut labels) = (records.activate(), labels.activate());
            input.for_each_stamp(|stamp, data| {
                let mut records = records.session(&stamp);
                let mut labels = labels.session(&stamp);
                for ev in data.flat_map(drain_fetching_ahead) {
                    routes.route(&ev, &mut routed);
                    records.give_iterator(routed.drain(..));
                    if let Some(input) = label_input(&p, &mut derive, ev) {
                        labels.give(input);
                    }
                }
            });
        }
    });
    (records_stream, labels_stream)
}

/// Drains `batch`, fetching each event's fields into cache [`AHEAD`] events before its
/// turn (its long strings half as far ahead): events come from other workers or were
/// parsed a batch ago, and reading them cold was most of routing's and classifying's time.
fn drain_fetching_ahead(batch: &mut Vec<Event>) -> impl Iterator<Item = Event> + '_ {
    let mut events = batch.drain(..);
    std::iter::from_fn(move || {
        let rest = events.as_slice();
        if let Some(ev) = rest.get(AHEAD) {
            ev.prefetch_fields();
        }
        if let Some(ev) = rest.get(AHEAD / 2) {
            ev.prefetch_text();
        }
        events.next()
    })
}

/// What the label join needs of an event: an example with its event features, or an
/// outcome with the id of the example it names.
fn label_input(p: &Pipeline, derive: &mut EventFeatures, ev: Event) -> Option<LabelInput> {
    let stream = ev.stream as usize;
    if stream == p.label.example_stream {
        let features = derive.compute(&p.event_features, &ev);
        Some(LabelInput::Example {
            id: ev.id,
            time: ev.time,
            features,
        })
    } else if stream == p.label.outcome_stream {
        let example_id = match p.label.outcome_key {
            FieldRef::Id => ev.id.clone(),
            FieldRef::Field(ix) => ev.fields[ix].as_str().unwrap_or_default().into(),
        };
        Some(LabelInput::Outcome {
            example_id,
            id: ev.id,
            time: ev.time,
        })
    } else {
        None
    }
}
