//! S3 backfill source: every object under a prefix is a partition, read in key order
//! through the same readers and dataflow as local files.

use std::path::PathBuf;

use super::PartitionSpec;
use crate::aws::s3::{check_bucket, list, ObjectReader, S3Url};

/// The partitions of source `source` (named `name`): the objects under `url` in key order,
/// skipping "directory" keys and names starting with `_` or `.` (markers, temporaries).
pub fn partitions(source: usize, name: &str, url: &S3Url) -> anyhow::Result<Vec<PartitionSpec>> {
    crate::aws::check_setup(&format!("source {name:?} ({url})"))?;
    let client = crate::aws::s3_client();
    check_bucket(&client, url).map_err(|e| anyhow::anyhow!("source {name:?}: {e:#}"))?;
    let keys: Vec<PartitionSpec> = list(&client, url)?
        .into_iter()
        .filter(|(key, _)| {
            let base = key.rsplit('/').next().unwrap_or(key);
            !key.ends_with('/') && !base.starts_with(['_', '.'])
        })
        .map(|(key, _)| PartitionSpec {
            source,
            path: PathBuf::from(format!("s3://{}/{key}", url.bucket)),
        })
        .collect();
    if keys.is_empty() {
        anyhow::bail!("source {name:?}: no object under {url}; check the bucket and prefix");
    }
    Ok(keys)
}

/// A streaming reader of one object.
pub fn open(url: &S3Url) -> anyhow::Result<ObjectReader> {
    ObjectReader::open(&crate::aws::s3_client(), url)
}
