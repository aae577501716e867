//! Sources: file partitions, record readers and per-partition watermarks.

pub mod json;
pub mod reader;
pub mod watermark;

use std::path::PathBuf;

use crate::config::Pipeline;

/// One independently ordered input: a file of a source. It has its own watermark.
#[derive(Debug, Clone)]
pub struct PartitionSpec {
    /// Source index in the pipeline.
    pub source: usize,
    /// The file.
    pub path: PathBuf,
}

/// Expands every source's glob into files (sorted, so partition numbers are stable).
pub fn partitions(p: &Pipeline) -> anyhow::Result<Vec<PartitionSpec>> {
    let mut out = Vec::new();
    for (i, s) in p.sources.iter().enumerate() {
        let pattern = s.pattern.to_string_lossy();
        let mut files: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| anyhow::anyhow!("source {:?}: bad path pattern {pattern:?}: {e}", s.name))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        if files.is_empty() {
            anyhow::bail!(
                "source {:?}: path {pattern:?} matches no file (paths are relative to the pipeline file's directory)",
                s.name
            );
        }
        files.sort();
        out.extend(
            files
                .into_iter()
                .map(|path| PartitionSpec { source: i, path }),
        );
    }
    Ok(out)
}
