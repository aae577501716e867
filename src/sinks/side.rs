//! Side files of one worker: dead letters, late events, duplicates and unmatched outcomes.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

/// The kinds of side records, each in its own directory under the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Malformed records (`dead_letter/`).
    DeadLetter,
    /// Events below the watermark on arrival (`late/`).
    Late,
    /// Dropped repeats of an id (`duplicates/`).
    Duplicate,
    /// Outcomes without an example in their window: orphans and outside-window (`unmatched/`).
    Unmatched,
}

impl Side {
    fn dir(self) -> &'static str {
        match self {
            Side::DeadLetter => "dead_letter",
            Side::Late => "late",
            Side::Duplicate => "duplicates",
            Side::Unmatched => "unmatched",
        }
    }
}

/// Lazily opened JSON-lines writers, one file per kind for this worker.
pub struct SideSinks {
    root: PathBuf,
    worker: usize,
    files: Vec<(Side, BufWriter<File>)>,
}

impl SideSinks {
    /// Side files of `worker` under `root`.
    pub fn new(root: &Path, worker: usize) -> Self {
        SideSinks {
            root: root.to_path_buf(),
            worker,
            files: Vec::new(),
        }
    }

    /// Appends one JSON record.
    pub fn write(&mut self, side: Side, record: serde_json::Value) {
        let ix = match self.files.iter().position(|(s, _)| *s == side) {
            Some(ix) => ix,
            None => {
                let dir = self.root.join(side.dir());
                let path = dir.join(format!("part-{}.jsonl", self.worker));
                let file = fs::create_dir_all(&dir).and_then(|_| File::create(&path));
                match file {
                    Ok(f) => self.files.push((side, BufWriter::new(f))),
                    Err(e) => {
                        tracing::error!(path = %path.display(), "cannot write side file: {e}");
                        return;
                    }
                }
                self.files.len() - 1
            }
        };
        let w = &mut self.files[ix].1;
        if let Err(e) = serde_json::to_writer(&mut *w, &record)
            .map_err(std::io::Error::from)
            .and_then(|_| w.write_all(b"\n"))
        {
            tracing::error!("cannot write side record: {e}");
        }
    }

    /// A malformed record.
    pub fn dead_letter(
        &mut self,
        source: &str,
        file: &Path,
        position: &str,
        error: &str,
        raw: &str,
    ) {
        let rec = json!({"source": source, "file": file.display().to_string(), "position": position, "error": error, "record": raw});
        self.write(Side::DeadLetter, rec);
    }

    /// Flushes every file (call at the end of the run).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.files.iter_mut().try_for_each(|(_, w)| w.flush())
    }
}

impl Drop for SideSinks {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!("cannot flush side files: {e}");
        }
    }
}
