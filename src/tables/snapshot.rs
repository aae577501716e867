//! Versioned snapshots: RocksDB checkpoints under `snapshots/<version>/` with a manifest
//! (version, watermark, tables, files, checksum), listed, verified and restored.
//!
//! A snapshot directory has a state directory's layout (`FORMAT`, `db/`) plus
//! `manifest.json`, so it opens read-only as is and can be uploaded as is.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::{db_dir, StoreError, TableStore, FORMAT};
use crate::time::Time;

const MANIFEST: &str = "manifest.json";

/// What a snapshot holds; `manifest.json` in the snapshot directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// Snapshot version (increasing).
    pub version: u64,
    /// Pipeline watermark when it was taken: reads as of earlier times are final.
    pub watermark: Time,
    /// State format (`FORMAT` of the store).
    pub format: String,
    /// Table names.
    pub tables: Vec<String>,
    /// Every file of the checkpoint with its size, by relative path.
    pub files: Vec<(String, u64)>,
    /// Total bytes of the files.
    pub bytes: u64,
    /// `xxh3-128:<hex>` over the files' relative paths and contents, in path order.
    pub checksum: String,
}

/// Directory of snapshot `version` under a state directory.
pub fn snapshot_dir(state: &Path, version: u64) -> PathBuf {
    state.join("snapshots").join(format!("{version:010}"))
}

/// Takes a snapshot of `store` as `version`: a self-contained directory that opens as a
/// read-only store and can be uploaded as is.
pub fn create(
    store: &TableStore,
    state: &Path,
    version: u64,
    watermark: Time,
) -> Result<SnapshotManifest, StoreError> {
    let dir = snapshot_dir(state, version);
    let err = |e: &dyn std::fmt::Display| StoreError::Io {
        dir: dir.clone(),
        message: e.to_string(),
    };
    if dir.exists() {
        return Err(err(
            &"snapshot version exists already; snapshots are never overwritten",
        ));
    }
    fs::create_dir_all(&dir).map_err(|e| err(&e))?;
    rocksdb::checkpoint::Checkpoint::new(store.db())
        .and_then(|c| c.create_checkpoint(db_dir(&dir)))
        .map_err(|e| err(&e))?;
    fs::write(dir.join("FORMAT"), format!("{FORMAT}\n")).map_err(|e| err(&e))?;
    // The column schema travels with the data, so `query` reads a snapshot like a state.
    let schema = store.dir().join("tables.json");
    if schema.exists() {
        fs::copy(&schema, dir.join("tables.json")).map_err(|e| err(&e))?;
    }
    let (files, bytes, checksum) = checksum(&dir).map_err(|e| err(&e))?;
    let manifest = SnapshotManifest {
        version,
        watermark,
        format: FORMAT.into(),
        tables: store.tables(),
        files,
        bytes,
        checksum,
    };
    fs::write(
        dir.join(MANIFEST),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .map_err(|e| err(&e))?;
    Ok(manifest)
}

/// Snapshots under a state directory, oldest first (unreadable manifests are skipped).
pub fn list(state: &Path) -> Vec<SnapshotManifest> {
    let mut out: Vec<SnapshotManifest> = fs::read_dir(state.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read(e.path().join(MANIFEST)).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    out.sort_by_key(|m| m.version);
    out
}

/// Reads a snapshot's manifest and checks every file against it.
pub fn verify(dir: &Path) -> Result<SnapshotManifest, StoreError> {
    let err = |m: String| StoreError::Io {
        dir: dir.to_path_buf(),
        message: m,
    };
    let bytes =
        fs::read(dir.join(MANIFEST)).map_err(|e| err(format!("no readable {MANIFEST}: {e}")))?;
    let manifest: SnapshotManifest =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("bad {MANIFEST}: {e}")))?;
    let (_, _, found) = checksum(dir).map_err(|e| err(e.to_string()))?;
    if found != manifest.checksum {
        return Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            expected: manifest.checksum,
            found,
        });
    }
    Ok(manifest)
}

/// Copies a verified snapshot to `target` (which must not exist): a state directory that
/// answers every read as the original did at that version.
pub fn restore(state: &Path, version: u64, target: &Path) -> Result<SnapshotManifest, StoreError> {
    let dir = snapshot_dir(state, version);
    let manifest = verify(&dir)?;
    let err = |e: std::io::Error| StoreError::Io {
        dir: target.to_path_buf(),
        message: e.to_string(),
    };
    if target.exists() {
        return Err(StoreError::Io {
            dir: target.to_path_buf(),
            message: "restore target exists; nothing was overwritten".into(),
        });
    }
    for (rel, _) in &manifest.files {
        let to = target.join(rel);
        fs::create_dir_all(to.parent().unwrap()).map_err(err)?;
        fs::copy(dir.join(rel), to).map_err(err)?;
    }
    Ok(manifest)
}

/// Files (relative path, size) of a snapshot directory except its manifest, in path order.
type FileList = Vec<(String, u64)>;

/// The files of a snapshot directory, their total size and their checksum.
fn checksum(dir: &Path) -> std::io::Result<(FileList, u64, String)> {
    let mut names = Vec::new();
    collect(dir, dir, &mut names)?;
    names.retain(|n| n != MANIFEST);
    names.sort();
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    let (mut files, mut total) = (Vec::new(), 0);
    // Files stream through one buffer: reading each whole into a new vector had the
    // kernel zero fresh pages for every byte of every snapshot (2.6 % of a replay's CPU).
    let mut buffer = vec![0u8; 1 << 20];
    for name in names {
        let mut file = fs::File::open(dir.join(&name))?;
        let len = file.metadata()?.len();
        hash.update(name.as_bytes());
        hash.update(&len.to_le_bytes());
        let mut read = 0;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
            read += n as u64;
        }
        if read != len {
            let message = format!("{name} changed while it was checksummed");
            return Err(std::io::Error::other(message));
        }
        total += len;
        files.push((name, len));
    }
    Ok((files, total, format!("xxh3-128:{:032x}", hash.digest128())))
}

/// Relative paths of the files under `dir`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    Ok(())
}
