//! S3 output and backfill against the local emulator (run through infra/test.sh): the same
//! bytes as a local run, replays overwrite, multipart uploads, snapshots round-trip.

use crate::common;

use std::fs;

use common::aws::{bucket, channel_files, download, put, scratch, url};
use common::{ad_pipeline, run_pipeline, Scratch};
use labeljoin::aws::s3::{put_file, UploadOptions};
use labeljoin::aws::s3_client;
use labeljoin::config::Pipeline;
use labeljoin::run::{run, RunOptions};

/// The shipped ad-click events in a scratch directory, with the small test pipeline.
fn events() -> Scratch {
    let s = Scratch::new();
    for f in ["impressions", "clicks", "predictions"] {
        fs::copy(
            format!("fixtures/ad_clicks/{f}.jsonl"),
            s.path().join(format!("{f}.jsonl")),
        )
        .unwrap();
    }
    s
}

fn run_to(s: &Scratch, pipeline: &str, output: &str, workers: usize) {
    let p = Pipeline::from_toml(pipeline, "test.toml", s.path()).unwrap();
    let opts = RunOptions {
        output: Some(output.into()),
        workers,
        ..Default::default()
    };
    run(p, &opts).unwrap();
}

#[test]
fn s3_output_has_the_local_layout_and_bytes() {
    let s = events();
    let text = ad_pipeline("30s", false);
    let local = s.run(&text, 2, "local");
    let b = bucket("sink");
    run_to(&s, &text, &format!("s3://{b}/jobs/run1"), 2);

    let (_g, got) = scratch();
    let keys = download(&format!("s3://{b}/jobs/run1/"), &got);
    assert!(keys.contains(&"schema.json".to_string()), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with("/_SUCCESS")));
    let want = channel_files(&local.out);
    assert!(want.len() > 10, "the local run wrote {} files", want.len());
    assert_eq!(
        channel_files(&got),
        want,
        "S3 objects differ from the local output"
    );
    assert_eq!(
        fs::read(got.join("schema.json")).unwrap(),
        fs::read(local.out.join("schema.json")).unwrap()
    );
    // Manifests point at the S3 location, in SageMaker ManifestFile form.
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(got.join("manifests/train.json")).unwrap()).unwrap();
    assert_eq!(m[0]["prefix"], format!("s3://{b}/jobs/run1/train/"));
    let listed = m.as_array().unwrap().len() - 1;
    let parts = want
        .iter()
        .filter(|(f, _)| f.starts_with("train/") && f.ends_with(".csv"))
        .count();
    assert_eq!(listed, parts);
}

#[test]
fn s3_replay_overwrites_and_never_duplicates() {
    let s = events();
    let text = ad_pipeline("30s", false);
    let b = bucket("replay");
    let dest = format!("s3://{b}/out");
    run_to(&s, &text, &dest, 2);
    run_to(&s, &text, &dest, 1);
    let local = s.run(&text, 1, "local1");
    let (_g, got) = scratch();
    download(&format!("{dest}/"), &got);
    // The 2-worker run's part-1-* objects are gone: the replay left exactly its own files.
    assert_eq!(channel_files(&got), channel_files(&local.out));
    assert_eq!(
        common::Outcome {
            summary: local.summary.clone(),
            out: got.clone()
        }
        .rows(),
        local.rows()
    );
}

#[test]
fn multipart_upload_of_a_large_part() {
    let b = bucket("multipart");
    let (_g, dir) = scratch();
    let big = dir.join("big.csv");
    let bytes: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(&big, &bytes).unwrap();
    let opts = UploadOptions {
        multipart_threshold: 5 << 20,
        part_size: 5 << 20,
        ..Default::default()
    };
    let to = url(&format!("s3://{b}/parts/big.csv"));
    put_file(&s3_client(), &big, &to, opts).unwrap();
    let head = labeljoin::aws::block_on(
        s3_client()
            .head_object()
            .bucket(&b)
            .key("parts/big.csv")
            .send(),
    )
    .unwrap();
    assert_eq!(head.content_length(), Some(12 << 20));
    assert!(
        head.e_tag().unwrap().contains("-3"),
        "not multipart: {:?}",
        head.e_tag()
    );
    let back = dir.join("back.csv");
    labeljoin::aws::s3::get_to_file(&s3_client(), &to, &back).unwrap();
    assert!(fs::read(&back).unwrap() == bytes);
}

#[test]
fn s3_backfill_equals_the_file_run() {
    let s = events();
    let text = ad_pipeline("30s", false);
    let local = s.run(&text, 1, "local");
    let b = bucket("backfill");
    // Impressions in two objects (one gzip) under a prefix, read in key order.
    let imps = fs::read_to_string(s.path().join("impressions.jsonl")).unwrap();
    let lines: Vec<&str> = imps.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let (_g, dir) = scratch();
    fs::write(dir.join("a.jsonl"), first.join("\n") + "\n").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, (second.join("\n") + "\n").as_bytes()).unwrap();
    fs::write(dir.join("b.jsonl.gz"), gz.finish().unwrap()).unwrap();
    fs::write(dir.join("_SUCCESS"), b"").unwrap();
    put(
        &dir.join("a.jsonl"),
        &format!("s3://{b}/in/impressions/2023/part-a.jsonl"),
    );
    put(
        &dir.join("b.jsonl.gz"),
        &format!("s3://{b}/in/impressions/2023/part-b.jsonl.gz"),
    );
    put(
        &dir.join("_SUCCESS"),
        &format!("s3://{b}/in/impressions/2023/_SUCCESS"),
    );
    put(
        &s.path().join("clicks.jsonl"),
        &format!("s3://{b}/in/clicks/c.jsonl"),
    );
    let text = text
        .replace(
            "\"impressions*.jsonl\"",
            &format!("\"s3://{b}/in/impressions/\""),
        )
        .replace("\"clicks*.jsonl\"", &format!("\"s3://{b}/in/clicks/\""));
    let p = Pipeline::from_toml(&text, "test.toml", s.path()).unwrap();
    let got = run_pipeline(p, &s.path().join("out-s3"), 1);
    assert_eq!(got.summary.events, local.summary.events);
    assert_eq!(got.rows(), local.rows());
    assert_eq!(channel_files(&got.out), channel_files(&local.out));
}

#[test]
fn bad_s3_settings_name_the_field_and_the_fix() {
    let text = ad_pipeline("30s", false).replace("\"clicks*.jsonl\"", "\"s3://Bad_Bucket/x/\"");
    let e = Pipeline::from_toml(&text, "t.toml", std::path::Path::new(".")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("sources[1].path") && msg.contains("s3://my-bucket"),
        "{msg}"
    );

    let s = events();
    let p = Pipeline::from_toml(&ad_pipeline("30s", false), "t.toml", s.path()).unwrap();
    let missing = common::aws::unique("no-such-bucket");
    let opts = RunOptions {
        output: Some(format!("s3://{missing}/x").into()),
        ..Default::default()
    };
    let msg = format!("{:#}", run(p, &opts).unwrap_err());
    assert!(
        msg.contains("does not exist") && msg.contains("aws s3 mb"),
        "{msg}"
    );
}

#[test]
fn snapshot_push_and_pull_round_trip() {
    let s = events();
    let p = Pipeline::from_toml(&ad_pipeline("30s", false), "t.toml", s.path()).unwrap();
    let state = s.path().join("state");
    let opts = RunOptions {
        output: Some(s.path().join("out")),
        state: Some(state.clone()),
        snapshot_every: Some(3_600_000),
        ..Default::default()
    };
    run(p, &opts).unwrap();
    let snaps = labeljoin::tables::snapshot::list(&state);
    let v = snaps.last().expect("a snapshot").version;
    let b = bucket("snap");
    let dest = url(&format!("s3://{b}/snapshots"));
    let pushed = labeljoin::aws::snapshot::push(&state, v, &dest).unwrap();
    let state2 = s.path().join("state2");
    let pulled = labeljoin::aws::snapshot::pull(&dest, v, &state2).unwrap();
    assert_eq!(pulled, pushed);
    assert!(
        labeljoin::aws::snapshot::pull(&dest, v, &state2).is_err(),
        "overwrote"
    );
    assert!(labeljoin::aws::snapshot::pull(&dest, v + 100, &s.path().join("s3")).is_err());
}
