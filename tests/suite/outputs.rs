//! Output layout of DESIGN.md "Outputs": SageMaker CSV, full CSV, schema, markers, replays.

use crate::common;

use std::fs;
use std::path::Path;

use common::files_under;

fn run_reference(out: &Path, workers: usize) -> labeljoin::metrics::Summary {
    common::run_file("pipelines/ad_clicks.toml", out, workers).summary
}

#[test]
fn sagemaker_csv_is_numeric_with_the_label_first_and_no_header() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_reference(dir.path(), 2);
    let schema: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("schema.json")).unwrap()).unwrap();
    let columns = schema["sagemaker_csv"]["columns"].as_array().unwrap().len();
    let mut lines = 0;
    for channel in ["train", "validation"] {
        for file in files_under(&dir.path().join(channel), "csv") {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            assert!(name.starts_with("part-"), "{name}");
            for line in fs::read_to_string(&file).unwrap().lines() {
                let fields: Vec<&str> = line.split(',').collect();
                assert_eq!(fields.len(), columns, "{line}");
                assert!(fields[0] == "0" || fields[0] == "1", "label first: {line}");
                for f in &fields {
                    assert!(
                        f.is_empty() || f.parse::<f64>().is_ok(),
                        "numeric only: {f:?} in {line}"
                    );
                }
                lines += 1;
            }
        }
    }
    assert_eq!(
        lines as u64, summary.rows,
        "every row is in train or validation once"
    );
    let full: usize = files_under(&dir.path().join("full"), "csv")
        .iter()
        .map(|f| fs::read_to_string(f).unwrap().lines().skip(1).count())
        .sum();
    assert_eq!(full as u64, summary.rows);
}

#[test]
fn complete_partitions_get_success_markers_and_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_reference(dir.path(), 1);
    assert!(
        summary.partitions_committed >= 2,
        "the fixture spans more than one hour"
    );
    for channel in ["full", "train", "validation"] {
        let parts = files_under(&dir.path().join(channel), "csv");
        assert!(!parts.is_empty());
        for part in &parts {
            let pdir = part.parent().unwrap();
            assert!(pdir.join("_SUCCESS").exists(), "{}", pdir.display());
            let rel = pdir.strip_prefix(dir.path().join(channel)).unwrap();
            let manifest = dir
                .path()
                .join("manifests")
                .join(channel)
                .join(rel)
                .join("manifest.json");
            let m: serde_json::Value =
                serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
            let prefix = m[0]["prefix"].as_str().unwrap();
            assert!(prefix.starts_with("file://") && prefix.ends_with('/'));
            let listed: Vec<&str> = m.as_array().unwrap()[1..]
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(listed.contains(&part.file_name().unwrap().to_str().unwrap()));
        }
    }
    // Nothing but part files inside the channels: SageMaker reads every other name too.
    let stray = files_under(&dir.path().join("train"), "json");
    assert!(
        stray.is_empty(),
        "non-data files inside a channel: {stray:?}"
    );
}

#[test]
fn a_replay_overwrites_instead_of_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let first = run_reference(dir.path(), 3);
    let second = run_reference(dir.path(), 1);
    assert_eq!(first.rows, second.rows);
    let rows: usize = files_under(&dir.path().join("full"), "csv")
        .iter()
        .map(|f| fs::read_to_string(f).unwrap().lines().skip(1).count())
        .sum();
    assert_eq!(
        rows as u64, second.rows,
        "parts of the 3-worker run must not survive the 1-worker replay"
    );
}

#[test]
fn the_same_input_gives_byte_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_reference(a.path(), 2);
    run_reference(b.path(), 2);
    let fa = files_under(&a.path().join("train"), "csv");
    let fb = files_under(&b.path().join("train"), "csv");
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(
            fs::read(x).unwrap(),
            fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
}
