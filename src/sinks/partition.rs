//! Writes finished rows into hour partitions: full CSV, SageMaker train/ and validation/.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::schema::Columns;
use crate::config::Pipeline;
use crate::dataflow::hold::Held;
use crate::event::stable_hash;
use crate::label::Row;
use crate::time::{utc, Time, HOUR_MS};

/// The three row channels under the output directory.
pub const CHANNELS: [&str; 3] = ["full", "train", "validation"];

/// Files one worker wrote for one partition, reported to the committer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartWritten {
    /// Partition start (hour) in event ms.
    pub hour: Time,
    /// Channel index into [`CHANNELS`].
    pub channel: u8,
    /// File name inside the partition directory.
    pub file: String,
    /// Rows in it.
    pub rows: u64,
}

/// Relative directory of an hour partition: `dt=YYYY-MM-DD/hour=HH`.
pub fn partition_dir(hour: Time) -> String {
    utc(hour).format("dt=%Y-%m-%d/hour=%H").to_string()
}

/// Last row deadline of an hour partition: the partition is complete once the watermark
/// passes it (its end plus the window).
pub fn completion_time(hour: Time, window: Time) -> Time {
    hour + HOUR_MS - 1 + window
}

/// Whether an example goes to `validation/` (stable in the id, independent of workers).
pub fn is_validation(example_id: &str, fraction: f64) -> bool {
    (stable_hash(example_id.as_bytes()) % 1_000_000) < (fraction * 1_000_000.0) as u64
}

/// Buffers this worker's rows per hour and writes them, sorted by (time, id), when the
/// partition completes. Names are `part-<worker>-<seq>.csv`, so a replay overwrites.
pub fn partition_writer<'scope>(
    rows: StreamVec<'scope, Time, Row>,
    pipeline: Arc<Pipeline>,
    root: PathBuf,
    worker: usize,
) -> StreamVec<'scope, Time, PartWritten> {
    let window = pipeline.label.window;
    let columns = Columns::new(&pipeline);
    rows.unary_frontier(Local, "PartitionWriter", move |_cap, _info| {
        let mut open: BTreeMap<Time, Vec<Row>> = BTreeMap::new();
        let mut held = Held::default();
        let mut reports = Vec::new();
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|cap, data| {
                held.hold(&cap, port);
                for r in data.drain(..) {
                    open.entry(r.time - r.time % HOUR_MS).or_default().push(r);
                }
            });
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            while let Some(entry) = open.first_entry() {
                if completion_time(*entry.key(), window) >= watermark {
                    break;
                }
                let (hour, mut rows) = entry.remove_entry();
                rows.sort_by(|a, b| (a.time, &a.example_id).cmp(&(b.time, &b.example_id)));
                match write_partition(&root, &columns, &pipeline, hour, &rows, worker) {
                    Ok(written) => reports.extend(written),
                    Err(e) => panic!("cannot write partition {}: {e}", partition_dir(hour)),
                }
            }
            if let Some(cap) = held.get() {
                if !reports.is_empty() {
                    output.session(cap).give_iterator(reports.drain(..));
                }
            }
            held.settle(open.keys().next().map(|&h| completion_time(h, window)));
        }
    })
}

fn write_partition(
    root: &Path,
    columns: &Columns,
    p: &Pipeline,
    hour: Time,
    rows: &[Row],
    worker: usize,
) -> std::io::Result<Vec<PartWritten>> {
    let mut out = Vec::new();
    let mut text = [String::new(), String::new(), String::new()];
    let mut counts = [0u64; 3];
    text[0].push_str(&columns.full_header);
    text[0].push('\n');
    for r in rows {
        columns.full_line(r, &mut text[0]);
        let ch = if is_validation(&r.example_id, p.output.validation_fraction) {
            2
        } else {
            1
        };
        columns.sagemaker_line(r, &mut text[ch]);
        counts[0] += 1;
        counts[ch] += 1;
    }
    let file = format!("part-{worker}-00000.csv");
    for ch in 0..3 {
        if counts[ch] == 0 {
            continue;
        }
        let dir = root.join(CHANNELS[ch]).join(partition_dir(hour));
        fs::create_dir_all(&dir)?;
        // Write beside, then rename: readers never see half a file.
        let tmp = dir.join(format!(".{file}.tmp"));
        fs::write(&tmp, text[ch].as_bytes())?;
        fs::rename(&tmp, dir.join(&file))?;
        out.push(PartWritten {
            hour,
            channel: ch as u8,
            file: file.clone(),
            rows: counts[ch],
        });
    }
    Ok(out)
}
