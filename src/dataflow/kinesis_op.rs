//! The timely operator of a Kinesis source: drains the fetcher's channel without blocking,
//! parses records with the file readers, keeps a watermark per shard and skips idle shards.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use tokio::sync::mpsc::error::TryRecvError;

use super::admit::{admit, Origin, Partition};
use crate::config::Pipeline;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::sinks::side::SideSinks;
use crate::sources::kinesis::{receiver, Fetched, KinesisSpec};
use crate::sources::reader::PartitionReader;
use crate::sources::watermark::PartitionClock;
use crate::time::Time;

/// Channel messages handled per activation.
const MESSAGES: usize = 64;

/// Bytes fed to a [`PartitionReader`]; reads 0 (no more for now) when empty.
#[derive(Clone, Default)]
struct Feed(Rc<RefCell<VecDeque<u8>>>);

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut q = self.0.borrow_mut();
        let n = buf.len().min(q.len());
        for (slot, b) in buf.iter_mut().zip(q.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

struct Shard {
    clock: PartitionClock,
    last_data: Instant,
}

/// Builds the Kinesis source `source_ix` of one worker.
///
/// Like the file source, data goes out at a capability no later than the smallest shard
/// watermark, except that a shard with no record for `idle_timeout` (processing time) does
/// not hold it back; when every shard is idle the watermark moves to the largest shard
/// watermark. Records of a shard that resumes behind the watermark go to `late/`.
/// The last sequence number of each shard is kept (logged when the shard ends) for
/// checkpoints.
pub fn kinesis_source<'scope>(
    scope: Scope<'scope, Time>,
    pipeline: Arc<Pipeline>,
    source_ix: usize,
    spec: KinesisSpec,
    metrics: Arc<Metrics>,
    side: Rc<RefCell<SideSinks>>,
    probe: ProbeHandle<Time>,
) -> StreamVec<'scope, Time, Event> {
    let (index, peers) = (scope.index(), scope.peers());
    source(scope, "KinesisSource", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut rx = receiver(&pipeline, source_ix, &spec, index, peers);
        let feed = Feed::default();
        let mut reader = PartitionReader::from_read(
            &pipeline,
            source_ix,
            &spec.stream,
            Box::new(feed.clone()),
            false,
        )
        .expect("a JSON lines reader opens on any input");
        let idle_timeout = Duration::from_millis(pipeline.idle_timeout);
        let mut shards: HashMap<String, Shard> = HashMap::new();
        let mut positions: BTreeMap<String, String> = BTreeMap::new();
        let mut cap = Some(cap);
        let mut batch: Vec<Event> = Vec::new();
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let held_time = *held.time();
            let frontier = probe.with_frontier(|f| f.first().copied().unwrap_or(Time::MAX));
            let mut side = side.borrow_mut();
            let mut finished = false;
            let mut read = 0;
            let ahead = held_time > frontier.saturating_add(pipeline.read_ahead);
            for _ in 0..if ahead { 0 } else { MESSAGES } {
                match rx.try_recv() {
                    Ok(Fetched::Started { shard }) => {
                        shards.insert(
                            shard,
                            Shard {
                                clock: PartitionClock::new(pipeline.max_out_of_orderness),
                                last_data: Instant::now(),
                            },
                        );
                    }
                    Ok(Fetched::Records { shard, records }) => {
                        let Some(s) = shards.get_mut(&shard) else {
                            continue;
                        };
                        s.last_data = Instant::now();
                        let last_seq = records.last().map(|(seq, _)| seq.clone());
                        for (seq, data) in records {
                            {
                                let mut q = feed.0.borrow_mut();
                                q.extend(data.iter());
                                if !data.ends_with(b"\n") {
                                    q.push_back(b'\n');
                                }
                            }
                            while let Some(outcome) = reader.next_record() {
                                let partition = Partition {
                                    reader: &reader,
                                    clock: &mut s.clock,
                                    held: held_time,
                                };
                                let origin = Origin::Shard {
                                    shard: &shard,
                                    sequence: &seq,
                                };
                                read += u64::from(admit(
                                    outcome, partition, origin, &mut side, &metrics, &mut batch,
                                ));
                            }
                        }
                        if let Some(seq) = last_seq {
                            positions.insert(shard.clone(), seq);
                        }
                    }
                    Ok(Fetched::Done { shard, last }) => {
                        shards.remove(&shard);
                        tracing::debug!(%shard, ?last, "Kinesis shard ended");
                    }
                    Ok(Fetched::Failed(msg)) => {
                        panic!("Kinesis source {}: {msg}", reader.source_name())
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        finished = true;
                        break;
                    }
                }
            }
            Metrics::add(&metrics.records_read, read);
            Metrics::add(&metrics.events, batch.len() as u64);
            if !batch.is_empty() {
                output.session(&*held).give_iterator(batch.drain(..));
            }
            if finished {
                tracing::info!(
                    source = reader.source_name(),
                    ?positions,
                    "Kinesis source done"
                );
                cap = None;
                return;
            }
            let busy = shards
                .values()
                .filter(|s| s.last_data.elapsed() < idle_timeout);
            let w = busy
                .map(|s| s.clock.watermark())
                .min()
                .or_else(|| shards.values().map(|s| s.clock.watermark()).max())
                .unwrap_or(held_time);
            held.downgrade(&w.max(held_time));
            activator.activate_after(Duration::from_millis(20));
        }
    })
}
