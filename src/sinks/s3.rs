//! The S3 output: the job writes its usual layout to a local staging directory and this
//! module publishes it to `s3://bucket/prefix` with the same relative keys.
//!
//! Committed partitions (those with `_SUCCESS`) are uploaded while the job runs: part files
//! first, then the manifests (their `file://` prefixes rewritten to the S3 location), then
//! `_SUCCESS`, so a reader that sees the marker sees the whole partition. Keys are the
//! relative paths, which are deterministic, so a replay overwrites instead of duplicating;
//! `part-*` objects of a partition that the replay did not write are deleted before its
//! marker goes up. Everything else (summary, side files) is uploaded when the run ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_sdk_s3::Client;

use crate::aws::s3::{check_bucket, delete, list, put_bytes, put_file, S3Url, UploadOptions};
use crate::config::Pipeline;
use crate::metrics::Summary;
use crate::run::{run, RunOptions};

use super::partition::CHANNELS;

/// The S3 location of an output setting, if it is one (`s3://...`).
pub fn s3_output(output: &Path) -> Option<anyhow::Result<S3Url>> {
    let text = output.to_string_lossy();
    S3Url::parse(text.strip_prefix("file://").unwrap_or(&text))
}

/// Runs the pipeline into a staging directory while publishing it to `dest`.
///
/// The staging directory is `LABELJOIN_STAGING` when set (kept), else a fresh temporary
/// directory (removed once everything is uploaded).
pub fn run_to_s3(pipeline: Pipeline, opts: &RunOptions, dest: S3Url) -> anyhow::Result<Summary> {
    if opts.cluster.is_some() {
        anyhow::bail!(
            "--output {dest}: S3 outputs run in one process (use --workers); \
             cluster mode needs a shared output directory"
        );
    }
    crate::aws::check_setup(&format!("output {dest}"))?;
    let client = crate::aws::s3_client();
    check_bucket(&client, &dest)?;
    let (staging, keep) = match std::env::var_os("LABELJOIN_STAGING") {
        Some(dir) => (PathBuf::from(dir), true),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "labeljoin-staging-{}-{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ));
            (dir, false)
        }
    };
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create staging directory {}", staging.display()))?;
    tracing::info!(staging = %staging.display(), %dest, "S3 output: staging locally");
    let publisher = Publisher::new(client, staging.clone(), dest);
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (stop, mut publisher) = (stop.clone(), publisher);
        std::thread::spawn(move || -> anyhow::Result<Publisher> {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                publisher.sync(false)?;
            }
            Ok(publisher)
        })
    };
    let staged_opts = RunOptions {
        output: Some(staging.clone()),
        ..opts.clone()
    };
    let result = run(pipeline, &staged_opts);
    stop.store(true, Ordering::Relaxed);
    let mut publisher = background
        .join()
        .map_err(|_| anyhow::anyhow!("the S3 upload thread panicked"))??;
    let summary = result?;
    let uploaded = publisher.sync(true)?;
    tracing::info!(
        objects = publisher.uploaded.len(),
        last = uploaded,
        "S3 output published"
    );
    if !keep {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(summary)
}

/// Mirrors a staging directory to S3, uploading each file again only when it changed.
pub struct Publisher {
    client: Client,
    staging: PathBuf,
    dest: S3Url,
    opts: UploadOptions,
    /// Relative path -> (length, modification time) as uploaded.
    uploaded: HashMap<String, (u64, SystemTime)>,
}

impl Publisher {
    /// A publisher of `staging` to `dest` (a directory prefix).
    pub fn new(client: Client, staging: PathBuf, dest: S3Url) -> Publisher {
        Publisher {
            client,
            staging,
            dest: dest.dir(),
            opts: UploadOptions::default(),
            uploaded: HashMap::new(),
        }
    }

    /// Uploads what is new or changed: committed partitions (and the schema, manifests)
    /// only, unless `all`. Returns the number of objects written.
    pub fn sync(&mut self, all: bool) -> anyhow::Result<usize> {
        let mut files = Vec::new();
        walk(&self.staging, &self.staging, &mut files)?;
        files.sort();
        let committed: Vec<&String> = files
            .iter()
            .filter(|f| f.rsplit('/').next() == Some("_SUCCESS"))
            .collect();
        let in_committed = |f: &str| {
            committed
                .iter()
                .any(|m| f.starts_with(m.trim_end_matches("_SUCCESS")))
        };
        // Order: data, then manifests and schema, then markers.
        let rank = |f: &str| {
            if f.ends_with("/_SUCCESS") {
                2
            } else if f.starts_with("manifests/") || f == "schema.json" {
                1
            } else {
                0
            }
        };
        let mut todo: Vec<&String> = files
            .iter()
            .filter(|f| {
                all || f.as_str() == "schema.json"
                    || f.starts_with("manifests/")
                    || (CHANNELS.iter().any(|c| f.starts_with(&format!("{c}/"))) && in_committed(f))
            })
            .collect();
        todo.sort_by_key(|f| rank(f));
        let mut written = 0;
        for rel in todo {
            let path = self.staging.join(rel);
            let meta = std::fs::metadata(&path)?;
            let stamp = (meta.len(), meta.modified()?);
            if self.uploaded.get(rel) == Some(&stamp) {
                continue;
            }
            let url = self.dest.join(rel);
            if rel.ends_with("/_SUCCESS") {
                self.remove_stale_parts(rel)?;
            }
            if rel.starts_with("manifests/") {
                put_bytes(&self.client, &url, self.rewrite_manifest(&path)?)?;
            } else {
                put_file(&self.client, &path, &url, self.opts)?;
            }
            self.uploaded.insert(rel.clone(), stamp);
            written += 1;
        }
        Ok(written)
    }

    /// Deletes `part-*` objects of a partition that the staging directory does not have.
    fn remove_stale_parts(&self, marker: &str) -> anyhow::Result<()> {
        let dir = marker.trim_end_matches("_SUCCESS");
        let prefix = self.dest.join(dir);
        for (key, _) in list(&self.client, &prefix)? {
            let name = &key[prefix.key.len()..];
            if name.starts_with("part-")
                && !name.contains('/')
                && !self.staging.join(dir).join(name).exists()
            {
                tracing::info!(key, "removing a part file this run did not write");
                delete(
                    &self.client,
                    &S3Url {
                        bucket: self.dest.bucket.clone(),
                        key,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// A manifest with its local `file://` prefixes pointing at the S3 location instead.
    fn rewrite_manifest(&self, path: &Path) -> anyhow::Result<Vec<u8>> {
        let text = std::fs::read_to_string(path)?;
        let root = std::fs::canonicalize(&self.staging)?;
        let local = format!("file://{}/", root.display());
        let remote = self.dest.dir().to_string();
        Ok(text.replace(&local, &remote).into_bytes())
    }
}

/// Relative paths of the files under `dir`, skipping names starting with `.` (temporaries).
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}
