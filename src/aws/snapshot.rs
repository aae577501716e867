//! Snapshots to and from S3: `s3://bucket/prefix/<version>/` holds a snapshot directory's
//! files with `manifest.json` uploaded last, so a listed manifest means a whole snapshot.

use std::path::Path;

use anyhow::Context;

use super::s3::{check_bucket, get_to_file, put_file, S3Url, UploadOptions};
use crate::tables::snapshot::{snapshot_dir, verify, SnapshotManifest};

/// The S3 directory of snapshot `version` under `base`.
pub fn version_url(base: &S3Url, version: u64) -> S3Url {
    base.join(&format!("{version:010}/"))
}

/// Verifies local snapshot `version` of `state` and uploads it under `dest`.
pub fn push(state: &Path, version: u64, dest: &S3Url) -> anyhow::Result<SnapshotManifest> {
    super::check_setup(&format!("snapshot push to {dest}"))?;
    let client = super::s3_client();
    check_bucket(&client, dest)?;
    let dir = snapshot_dir(state, version);
    let manifest =
        verify(&dir).with_context(|| format!("snapshot {version} of {}", state.display()))?;
    let base = version_url(dest, version);
    for (rel, _) in &manifest.files {
        put_file(
            &client,
            &dir.join(rel),
            &base.join(rel),
            UploadOptions::default(),
        )?;
    }
    put_file(
        &client,
        &dir.join("manifest.json"),
        &base.join("manifest.json"),
        UploadOptions::default(),
    )?;
    Ok(manifest)
}

/// Downloads snapshot `version` from `src` into `state/snapshots/<version>/` (which must
/// not exist yet) and verifies its checksum before putting it in place.
pub fn pull(src: &S3Url, version: u64, state: &Path) -> anyhow::Result<SnapshotManifest> {
    super::check_setup(&format!("snapshot pull from {src}"))?;
    let client = super::s3_client();
    check_bucket(&client, src)?;
    let target = snapshot_dir(state, version);
    if target.exists() {
        anyhow::bail!("{} exists; nothing was overwritten", target.display());
    }
    let tmp = state
        .join("snapshots")
        .join(format!(".{version:010}.download"));
    let _ = std::fs::remove_dir_all(&tmp);
    let base = version_url(src, version);
    get_to_file(
        &client,
        &base.join("manifest.json"),
        &tmp.join("manifest.json"),
    )
    .with_context(|| format!("no snapshot {version} under {src}"))?;
    let manifest: SnapshotManifest =
        serde_json::from_slice(&std::fs::read(tmp.join("manifest.json"))?)?;
    for (rel, _) in &manifest.files {
        get_to_file(&client, &base.join(rel), &tmp.join(rel))?;
    }
    let checked = verify(&tmp)?;
    std::fs::rename(&tmp, &target)?;
    Ok(checked)
}
