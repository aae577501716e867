//! Writes finished rows into hour partitions: full CSV, SageMaker train/ and validation/.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::direct::DirectFile;
use super::schema::Columns;
use crate::config::Pipeline;
use crate::dataflow::hold::Held;
use crate::label::Rows;
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

/// Whether an example goes to `validation/`, from the [`crate::event::stable_hash`] of its id (stable in
/// the id, independent of workers).
pub fn is_validation(id_hash: u64, fraction: f64) -> bool {
    (id_hash % 1_000_000) < (fraction * 1_000_000.0) as u64
}

/// Part files of one open hour partition on one worker, written as rows arrive.
struct OpenPartition {
    /// Per channel: the temporary file being written and its row count.
    files: [Option<(DirectFile, u64)>; 3],
}

/// Streams this worker's rows into their hour partition's part files and publishes them
/// (rename from a dot-file) when the partition completes. Rows arrive sorted by
/// (time, id) from the label join, so files are byte-identical across replays with the
/// same worker count. Names are `part-<worker>-00000.csv`, so a replay overwrites.
pub fn partition_writer<'scope>(
    rows: StreamVec<'scope, Time, Rows>,
    pipeline: Arc<Pipeline>,
    root: PathBuf,
    worker: usize,
) -> StreamVec<'scope, Time, PartWritten> {
    let window = pipeline.label.window;
    let columns = Columns::new(&pipeline);
    let file = format!("part-{worker}-00000.csv");
    rows.unary_frontier(Local, "PartitionWriter", move |_cap, _info| {
        let mut open: BTreeMap<Time, OpenPartition> = BTreeMap::new();
        let mut held = Held::default();
        let mut reports = Vec::new();
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|cap, data| {
                held.hold(&cap, port);
                for batch in data.drain(..) {
                    for r in &batch.rows {
                        let hour = r.time - r.time % HOUR_MS;
                        let part = open.entry(hour).or_insert_with(|| OpenPartition {
                            files: [None, None, None],
                        });
                        let split = if r.validation { 2 } else { 1 };
                        let (full, sagemaker) = batch.lines(r);
                        for (ch, line) in [(0, full), (split, sagemaker)] {
                            let result =
                                part.write(&root, hour, ch, &file, &columns, line.as_bytes());
                            result.unwrap_or_else(|e| {
                                panic!("cannot write partition {}: {e}", partition_dir(hour))
                            });
                        }
                    }
                }
            });
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            while let Some(entry) = open.first_entry() {
                if completion_time(*entry.key(), window) >= watermark {
                    break;
                }
                let (hour, part) = entry.remove_entry();
                let written = part.publish(&root, hour, &file);
                reports.extend(written.unwrap_or_else(|e| {
                    panic!("cannot publish partition {}: {e}", partition_dir(hour))
                }));
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

impl OpenPartition {
    fn write(
        &mut self,
        root: &Path,
        hour: Time,
        ch: usize,
        file: &str,
        columns: &Columns,
        line: &[u8],
    ) -> io::Result<()> {
        if self.files[ch].is_none() {
            let dir = root.join(CHANNELS[ch]).join(partition_dir(hour));
            fs::create_dir_all(&dir)?;
            let mut w = DirectFile::create(&dir.join(format!(".{file}.tmp")))?;
            if ch == 0 {
                w.write_all(columns.full_header.as_bytes())?;
                w.write_all(b"\n")?;
            }
            self.files[ch] = Some((w, 0));
        }
        let (w, rows) = self.files[ch].as_mut().unwrap();
        *rows += 1;
        w.write_all(line)
    }

    /// Flushes and renames every part file into place; readers never see half a file.
    fn publish(self, root: &Path, hour: Time, file: &str) -> io::Result<Vec<PartWritten>> {
        let mut out = Vec::new();
        for (ch, slot) in self.files.into_iter().enumerate() {
            let Some((w, rows)) = slot else { continue };
            w.finish()?;
            let dir = root.join(CHANNELS[ch]).join(partition_dir(hour));
            fs::rename(dir.join(format!(".{file}.tmp")), dir.join(file))?;
            out.push(PartWritten {
                hour,
                channel: ch as u8,
                file: file.to_string(),
                rows,
            });
        }
        Ok(out)
    }
}
