//! Sources: file partitions, record readers and per-partition watermarks.

pub mod flat_json;
pub mod json;
pub mod kinesis;
pub mod lines;
pub mod reader;
pub mod s3;
pub mod texts;
pub mod watermark;

use std::path::PathBuf;

use crate::config::Pipeline;

/// Whether `s` is empty or white space (`s.trim().is_empty()`), decided by its first byte
/// when that is a printable ASCII character, as in nearly every value: `trim` decoded
/// characters from both ends (~50 instructions a field, ~1 % of reading).
pub fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        None => true,
        Some(&b) if b > b' ' && b.is_ascii() => false,
        Some(_) => s.trim().is_empty(),
    }
}

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
        if kinesis::KinesisSpec::parse(&pattern).is_some() {
            continue; // not file partitions: see kinesis_sources
        }
        if let Some(url) = crate::aws::s3::S3Url::parse(&pattern) {
            out.extend(s3::partitions(i, &s.name, &url?)?);
            continue;
        }
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

/// The lines of a local file, mapped; `None` for S3 objects and files that cannot be
/// mapped (read them with [`open_input`]).
pub fn map_local(path: &std::path::Path) -> anyhow::Result<Option<lines::Lines>> {
    if crate::aws::s3::S3Url::parse(&path.to_string_lossy()).is_some() {
        return Ok(None);
    }
    Ok(lines::Lines::mapped(&std::fs::File::open(path)?))
}

/// Opens a partition's bytes: a local file, or an S3 object (`s3://...`, streamed).
pub fn open_input(path: &std::path::Path) -> anyhow::Result<Box<dyn std::io::Read>> {
    match crate::aws::s3::S3Url::parse(&path.to_string_lossy()) {
        Some(url) => Ok(Box::new(s3::open(&url?)?)),
        None => Ok(Box::new(std::fs::File::open(path)?)),
    }
}

/// The Kinesis sources of a pipeline (paths `kinesis://...`, checked by validation).
pub fn kinesis_sources(p: &Pipeline) -> Vec<(usize, kinesis::KinesisSpec)> {
    p.sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Some((
                i,
                kinesis::KinesisSpec::parse(&s.pattern.to_string_lossy())?.ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// Blank exactly when trimming leaves nothing, for any text (Unicode white space,
        /// control characters and printable ASCII first).
        #[test]
        fn blank_is_what_trims_to_nothing(
            s in "[ \t\r\n\u{0b}\u{0c}\u{85}\u{a0}\u{2003}\u{3000}\u{1}a,{é]{0,6}",
        ) {
            proptest::prop_assert_eq!(super::is_blank(&s), s.trim().is_empty());
        }
    }
}
