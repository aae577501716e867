//! Versioned snapshots: RocksDB checkpoints under `snapshots/<version>/` with a manifest
//! (version, watermark, tables, files, checksum), listed, verified and restored.
//!
//! A snapshot directory has a state directory's layout (`FORMAT`, `db/`) plus
//! `manifest.json`, so it opens read-only as is and can be uploaded as is.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

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
    /// `xxh3-128/files:<hex>`: over each file's relative path, size and xxh3-128 digest,
    /// in path order. (`xxh3-128:<hex>`, over the paths, sizes and contents themselves, is
    /// the earlier form; it still verifies.)
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
    let (files, bytes, checksum) = {
        let mut known = store
            .snapshot_digests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        checksum(&dir, Scheme::Files, Some(&mut known)).map_err(|e| err(&e))?
    };
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
    let scheme = [Scheme::Files, Scheme::Whole]
        .into_iter()
        .find(|s| manifest.checksum.starts_with(s.prefix()))
        .ok_or_else(|| {
            err(format!(
                "checksum {:?} is of a scheme this build does not know (a newer labeljoin \
                 wrote it?); verify it with that version",
                manifest.checksum
            ))
        })?;
    let (_, _, found) = checksum(dir, scheme, None).map_err(|e| err(e.to_string()))?;
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

/// Digests of the previous snapshot's table files, by (relative path, device, inode,
/// size, modification time). RocksDB never rewrites a table file nor reuses its number,
/// and a checkpoint hard-links the live ones, so a snapshot reads only the table files
/// written since the previous one (compactions rewrite many of them in between).
#[derive(Default)]
pub struct FileDigests(HashMap<FileId, u128>);

/// What identifies one immutable file's content.
type FileId = (String, u64, u64, u64, i64, i64);

/// How a snapshot's checksum is formed.
#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    /// Over every file's path, size and digest (a table file the previous snapshot
    /// shares is not read again).
    Files,
    /// Over every file's path, size and bytes (snapshots taken before `Files`).
    Whole,
}

impl Scheme {
    fn prefix(self) -> &'static str {
        match self {
            Scheme::Files => "xxh3-128/files:",
            Scheme::Whole => "xxh3-128:",
        }
    }
}

/// The files of a snapshot directory, their total size and their checksum; table files
/// found in `known` are not read again, and `known` is left holding this snapshot's.
fn checksum(
    dir: &Path,
    scheme: Scheme,
    known: Option<&mut FileDigests>,
) -> std::io::Result<(FileList, u64, String)> {
    let mut names = Vec::new();
    collect(dir, dir, &mut names)?;
    names.retain(|n| n != MANIFEST);
    names.sort();
    let mut hash = Xxh3::new();
    let (mut files, mut total) = (Vec::new(), 0);
    let mut seen = HashMap::new();
    // Files stream through one buffer: reading each whole into a new vector had the
    // kernel zero fresh pages for every byte of every snapshot (2.6 % of a replay's CPU).
    let mut buffer = vec![0u8; 1 << 20];
    for name in names {
        let path = dir.join(&name);
        // One handle for the identity and the bytes, so both are of the same file.
        let mut file = fs::File::open(&path)?;
        let meta = file.metadata()?;
        let len = meta.len();
        hash.update(name.as_bytes());
        hash.update(&len.to_le_bytes());
        match scheme {
            Scheme::Whole => read_into(&mut file, &path, len, &mut buffer, &mut hash)?,
            Scheme::Files => {
                use std::os::unix::fs::MetadataExt;
                let id = (
                    name.clone(),
                    meta.dev(),
                    meta.ino(),
                    len,
                    meta.mtime(),
                    meta.mtime_nsec(),
                );
                let digest = match known.as_ref().and_then(|k| k.0.get(&id)) {
                    Some(&digest) => digest,
                    None => {
                        let mut file_hash = Xxh3::new();
                        read_into(&mut file, &path, len, &mut buffer, &mut file_hash)?;
                        file_hash.digest128()
                    }
                };
                hash.update(&digest.to_le_bytes());
                if name.ends_with(".sst") {
                    seen.insert(id, digest);
                }
            }
        }
        total += len;
        files.push((name, len));
    }
    if let Some(known) = known {
        known.0 = seen;
    }
    Ok((
        files,
        total,
        format!("{}{:032x}", scheme.prefix(), hash.digest128()),
    ))
}

/// Feeds an open file of `len` bytes to `hash`; an error if it does not have that many.
fn read_into(
    file: &mut fs::File,
    path: &Path,
    len: u64,
    buffer: &mut [u8],
    hash: &mut Xxh3,
) -> std::io::Result<()> {
    let mut read = 0;
    loop {
        let n = file.read(buffer)?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
        read += n as u64;
    }
    if read != len {
        let message = format!("{} changed while it was checksummed", path.display());
        return Err(std::io::Error::other(message));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn snapshots_sharing_table_files_read_only_their_new_ones_and_checksum_as_if_read_whole() {
        let root = tempfile::tempdir().unwrap();
        let (one, two) = (root.path().join("1"), root.path().join("2"));
        write(&one, "db/000007.sst", b"table seven");
        write(&one, "db/MANIFEST-000001", b"manifest one");
        fs::create_dir_all(two.join("db")).unwrap();
        fs::hard_link(one.join("db/000007.sst"), two.join("db/000007.sst")).unwrap();
        write(&two, "db/000009.sst", b"table nine");
        write(&two, "db/MANIFEST-000001", b"manifest two");

        let mut known = FileDigests::default();
        let first = checksum(&one, Scheme::Files, Some(&mut known)).unwrap();
        assert_eq!(known.0.len(), 1, "only table files are remembered");
        let second = checksum(&two, Scheme::Files, Some(&mut known)).unwrap();
        assert_eq!(second, checksum(&two, Scheme::Files, None).unwrap());
        assert_eq!(
            known.0.len(),
            2,
            "the second snapshot's table files, no others"
        );
        assert_ne!(first.2, second.2);
        assert!(second.2.starts_with("xxh3-128/files:"));

        // The earlier form: paths, sizes and bytes in one stream.
        let mut whole = Xxh3::new();
        for (name, bytes) in [
            ("db/000007.sst", &b"table seven"[..]),
            ("db/MANIFEST-000001", &b"manifest one"[..]),
        ] {
            whole.update(name.as_bytes());
            whole.update(&(bytes.len() as u64).to_le_bytes());
            whole.update(bytes);
        }
        let expected = format!("xxh3-128:{:032x}", whole.digest128());
        assert_eq!(checksum(&one, Scheme::Whole, None).unwrap().2, expected);
    }

    #[test]
    fn a_checksum_of_an_unknown_scheme_is_refused_by_name_not_called_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "db/000007.sst", b"table seven");
        let manifest = SnapshotManifest {
            version: 1,
            watermark: 0,
            format: FORMAT.into(),
            tables: vec![],
            files: vec![("db/000007.sst".into(), 11)],
            bytes: 11,
            checksum: "sha256:00".into(),
        };
        fs::write(
            dir.path().join(MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        match verify(dir.path()) {
            Err(StoreError::Io { message, .. }) => assert!(message.contains("scheme"), "{message}"),
            other => panic!("expected an unknown-scheme error, got {other:?}"),
        }
    }
}
