//! What a source does with each record it reads: an on-time event goes on, a late one to
//! `late/` and a malformed record to `dead_letter/`, each counted. Shared by the file and
//! Kinesis sources.

use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::event::Event;
use crate::metrics::Metrics;
use crate::sinks::side::{Side, SideSinks};
use crate::sources::reader::{PartitionReader, ReadOutcome};
use crate::sources::watermark::PartitionClock;
use crate::time::Time;

/// Where a record was read, as its side-file entries name it.
pub enum Origin<'a> {
    /// A file partition (the reader knows the record's position in it).
    File(&'a Path),
    /// A Kinesis shard, at a record's sequence number.
    Shard {
        /// Shard id.
        shard: &'a str,
        /// Sequence number of the Kinesis record.
        sequence: &'a str,
    },
}

/// The partition a source reads: its reader, its watermark clock and the watermark it
/// must not fall behind (the source's capability).
pub struct Partition<'a> {
    /// Reader of the partition's records.
    pub reader: &'a PartitionReader,
    /// The partition's event-time clock.
    pub clock: &'a mut PartitionClock,
    /// The source's current capability time.
    pub held: Time,
}

/// Sends one read outcome on: an event at or after the watermark (the partition's, or the
/// source's capability if later) into `batch`, advancing the partition's clock; a late
/// event to `late/` and a malformed record to `dead_letter/`, each counted. Returns whether
/// the outcome was a record: the caller adds those to `records_read` once per batch (an
/// atomic add per record was a cache line the workers passed back and forth).
#[must_use = "records read are counted by the caller"]
pub fn admit(
    outcome: ReadOutcome,
    partition: Partition<'_>,
    origin: Origin<'_>,
    side: &mut SideSinks,
    metrics: &Metrics,
    batch: &mut Vec<Event>,
) -> bool {
    let reader = partition.reader;
    match outcome {
        ReadOutcome::Skip => return false,
        ReadOutcome::Bad(bad) => {
            Metrics::add(&metrics.malformed, 1);
            let (place, position) = match origin {
                Origin::File(path) => (path.to_path_buf(), bad.position),
                Origin::Shard { shard, sequence } => (
                    PathBuf::from(format!("kinesis-shard:{shard}")),
                    format!("sequence {sequence}"),
                ),
            };
            side.dead_letter(
                reader.source_name(),
                &place,
                &position,
                &bad.error,
                &bad.raw,
            );
        }
        ReadOutcome::Event(ev, pos) => {
            let watermark = partition.clock.watermark().max(partition.held);
            if ev.time >= watermark {
                partition.clock.observe(ev.time);
                batch.push(ev);
                return true;
            }
            Metrics::add(&metrics.late, 1);
            let mut late = json!({"reason": "late", "source": reader.source_name(),
                "id": ev.id.as_str(), "time": ev.time, "watermark": watermark,
                "record": reader.record_text()});
            let fields: [(&str, Json); 2] = match origin {
                Origin::File(path) => [
                    ("file", path.display().to_string().into()),
                    ("position", pos.record.into()),
                ],
                Origin::Shard { shard, sequence } => {
                    [("shard", shard.into()), ("sequence", sequence.into())]
                }
            };
            if let Json::Object(map) = &mut late {
                map.extend(fields.map(|(k, v)| (k.to_string(), v)));
            }
            side.write(Side::Late, late);
        }
    }
    true
}
