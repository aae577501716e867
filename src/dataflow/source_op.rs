//! The timely source: reads this worker's file partitions in event-time step, tags lateness.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use super::admit::{admit, Origin, Partition};
use crate::config::Pipeline;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::sinks::side::SideSinks;
use crate::sources::reader::PartitionReader;
use crate::sources::watermark::PartitionClock;
use crate::sources::PartitionSpec;
use crate::time::Time;

/// Records read per activation, so one worker's sources share the thread with its operators.
const BATCH: usize = 4096;

/// When every partition is `read_ahead` past the watermark, how long until the source looks
/// again (the worker meanwhile runs its operators or parks).
const BLOCKED_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

struct Live {
    spec: PartitionSpec,
    reader: PartitionReader,
    clock: PartitionClock,
}

/// Builds the source of one worker: partitions `i` with `i % peers == index`.
///
/// Data is sent at a capability no later than the worker's smallest partition watermark, so
/// every on-time event's time is at or after its message time: the timely frontier *is* the
/// pipeline watermark. A partition is not read further than `read_ahead` past `probe`'s
/// frontier, which bounds how much the slowest partition makes others buffer.
pub fn file_source<'scope>(
    scope: Scope<'scope, Time>,
    pipeline: Arc<Pipeline>,
    partitions: &[PartitionSpec],
    metrics: Arc<Metrics>,
    side: Rc<RefCell<SideSinks>>,
    probe: ProbeHandle<Time>,
) -> StreamVec<'scope, Time, Event> {
    let (index, peers) = (scope.index(), scope.peers());
    let mine: Vec<PartitionSpec> = partitions
        .iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .map(|(_, p)| p.clone())
        .collect();
    source(scope, "FileSource", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut live: Vec<Live> = mine
            .into_iter()
            .map(|spec| Live {
                reader: PartitionReader::open(&pipeline, &spec)
                    .expect("partition was checked before start"),
                spec,
                clock: PartitionClock::new(pipeline.max_out_of_orderness),
            })
            .collect();
        let mut batch: Vec<Event> = Vec::with_capacity(BATCH);
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let frontier = probe.with_frontier(|f| f.first().copied().unwrap_or(Time::MAX));
            let held_time = *held.time();
            let mut budget = BATCH;
            let mut side = side.borrow_mut();
            let mut blocked = false;
            let mut read = 0;
            while budget > 0 {
                // Read the most-behind partition, unless even it is too far ahead.
                let Some(ix) = (0..live.len()).min_by_key(|&i| live[i].clock.watermark()) else {
                    break;
                };
                let p = &mut live[ix];
                if p.clock.watermark() > frontier.saturating_add(pipeline.read_ahead) {
                    blocked = true;
                    break;
                }
                let mut exhausted = false;
                for _ in 0..budget.min(1024) {
                    budget -= 1;
                    let Some(outcome) = p.reader.next_record() else {
                        exhausted = true;
                        break;
                    };
                    let partition = Partition {
                        reader: &p.reader,
                        clock: &mut p.clock,
                        held: held_time,
                    };
                    let origin = Origin::File(&p.spec.path);
                    read += u64::from(admit(
                        outcome, partition, origin, &mut side, &metrics, &mut batch,
                    ));
                }
                if exhausted {
                    live.swap_remove(ix);
                }
            }
            Metrics::add(&metrics.records_read, read);
            Metrics::add(&metrics.events, batch.len() as u64);
            // Nothing read because every partition is too far ahead: wait, do not spin.
            let waiting = blocked && batch.is_empty();
            if !batch.is_empty() {
                output.session(&*held).give_iterator(batch.drain(..));
            }
            match live.iter().map(|p| p.clock.watermark()).min() {
                Some(w) => {
                    held.downgrade(&w.max(held_time));
                    if waiting {
                        // Spinning took the cores the operators (and RocksDB's compactions)
                        // need to catch up.
                        activator.activate_after(BLOCKED_RETRY);
                    } else {
                        activator.activate();
                    }
                }
                None => cap = None,
            }
        }
    })
}
