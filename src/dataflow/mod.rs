//! Wires the job: sources -> dedup -> tables (features) + label join -> partitioned sinks.

pub mod dedup;
pub mod hold;
pub mod kinesis_op;
pub mod source_op;
pub mod time_queue;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::operators::core::Concat;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, Scope};

use crate::config::{FieldRef, Pipeline};
use crate::features::derived::EventFeatures;
use crate::features::table_op::{route, table_operator};
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

    // Features: each event goes to the tables keyed by it.
    let p = pipeline.clone();
    let fragments = table_operator(
        events.clone().flat_map(move |ev| {
            let mut out = Vec::new();
            route(&p, &ev, &mut out);
            out
        }),
        pipeline.clone(),
        store,
    )
    .map(LabelInput::Fragment);

    // Label join inputs: examples with their event features, outcomes with their example id.
    let p = pipeline.clone();
    let mut derive = EventFeatures::default();
    let examples_and_outcomes = events.flat_map(move |ev| {
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
    });
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
