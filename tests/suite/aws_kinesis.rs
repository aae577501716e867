//! Kinesis source against the local emulator (run through infra/test.sh): generated events
//! put into Kinesis -> job -> CSV in S3 equal the file run; a shard split mid-stream loses
//! nothing and keeps the order per key.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::aws::{bucket, channel_files, download, scratch, unique};
use common::{ad_pipeline, Scratch};
use labeljoin::aws::kinesis_put::{ensure_stream, put_generated, put_lines};
use labeljoin::aws::{block_on, kinesis_client};
use labeljoin::config::Pipeline;
use labeljoin::gen::{write_files, GenConfig};
use labeljoin::run::{run, RunOptions};
use labeljoin::sources::kinesis::{receiver, Fetched, KinesisSpec};

/// Seeded events without far-late ones (lateness then does not depend on partitioning).
fn generate(s: &Scratch, impressions: u64) {
    let cfg = GenConfig {
        impressions,
        users: 50,
        late_fraction: 0.0,
        ..GenConfig::default()
    };
    write_files(&cfg, s.path()).unwrap();
}

fn kinesis_pipeline(prefix: &str) -> String {
    let src = |name: &str| format!("\"kinesis://{prefix}-{name}?stop_after_idle=10\"");
    ad_pipeline("30s", false)
        .replace("\"impressions*.jsonl\"", &src("impressions"))
        .replace("\"clicks*.jsonl\"", &src("clicks"))
        .replace("\"predictions*.jsonl\"", &src("predictions"))
}

#[test]
fn kinesis_to_s3_equals_the_file_run() {
    common::aws::endpoint();
    let s = Scratch::new();
    generate(&s, 3000);
    let local = s.run(&ad_pipeline("30s", false), 1, "local");
    let prefix = unique("gen");
    let put = put_generated(s.path(), &prefix, 2).unwrap();
    assert_eq!(put.len(), 3, "{put:?}");

    let b = bucket("kinesis-out");
    let p = Pipeline::from_toml(&kinesis_pipeline(&prefix), "k.toml", s.path()).unwrap();
    let opts = RunOptions {
        output: Some(format!("s3://{b}/out").into()),
        workers: 1,
        ..Default::default()
    };
    let summary = run(p, &opts).unwrap();
    assert_eq!(summary.rows, local.summary.rows);
    assert_eq!(summary.events, local.summary.events);
    let (_g, got) = scratch();
    download(&format!("s3://{b}/out/"), &got);
    assert_eq!(channel_files(&got), channel_files(&local.out));
}

#[test]
fn kinesis_source_on_two_workers_equals_the_file_run() {
    common::aws::endpoint();
    let s = Scratch::new();
    generate(&s, 2000);
    let local = s.run(&ad_pipeline("30s", false), 2, "local");
    let prefix = unique("gen2");
    put_generated(s.path(), &prefix, 3).unwrap();
    let got = s.run(&kinesis_pipeline(&prefix), 2, "kinesis");
    assert_eq!(got.rows(), local.rows());
}

/// Every record the fetcher delivers for a stream, in delivery order, until it ends.
fn drain(stream: &str) -> Vec<(String, String)> {
    let p = Arc::new(
        Pipeline::from_toml(
            &ad_pipeline("30s", false),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap(),
    );
    let spec = KinesisSpec::parse(&format!("kinesis://{stream}?stop_after_idle=15"))
        .unwrap()
        .unwrap();
    let mut rx = receiver(&p, 0, &spec, 0, 1);
    let mut out = Vec::new();
    while let Some(m) = rx.blocking_recv() {
        match m {
            Fetched::Records { shard, records } => {
                for (_, data) in records {
                    out.push((shard.clone(), String::from_utf8(data.to_vec()).unwrap()));
                }
            }
            Fetched::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    out
}

#[test]
fn resharding_split_mid_stream_loses_nothing_and_keeps_order_per_key() {
    common::aws::endpoint();
    let client = kinesis_client();
    let stream = unique("split");
    ensure_stream(&client, &stream, 1).unwrap();
    let lines: Vec<String> = (0..600)
        .map(|i| {
            format!(
                r#"{{"id":"e{i:04}","user_id":"u{}","ts":{}}}"#,
                i % 7,
                1_700_000_000_000u64 + i
            )
        })
        .collect();
    put_lines(&client, &stream, &lines[..300], "user_id").unwrap();
    let reader = {
        let stream = stream.clone();
        std::thread::spawn(move || drain(&stream))
    };
    std::thread::sleep(Duration::from_millis(600));
    // Split the only shard in the middle of its hash range, then keep putting.
    let shards = block_on(client.list_shards().stream_name(&stream).send()).unwrap();
    let parent = shards.shards()[0].shard_id().to_string();
    block_on(
        client
            .split_shard()
            .stream_name(&stream)
            .shard_to_split(&parent)
            .new_starting_hash_key((1u128 << 127).to_string())
            .send(),
    )
    .unwrap();
    put_lines(&client, &stream, &lines[300..], "user_id").unwrap();
    let got = reader.join().unwrap();

    // Delivery is at least once (the emulator re-puts a split parent's records into its
    // children): keep each id's first delivery.
    let mut seen = HashSet::new();
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut shards_read = HashSet::new();
    for (shard, line) in got {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        shards_read.insert(shard);
        if seen.insert(id.clone()) {
            per_key
                .entry(v["user_id"].as_str().unwrap().into())
                .or_default()
                .push(id);
        }
    }
    assert_eq!(seen.len(), 600, "events lost");
    assert!(shards_read.len() >= 2, "children not read: {shards_read:?}");
    for (key, ids) in per_key {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "order of key {key} changed");
    }
}

#[test]
fn kinesis_paths_parse_and_bad_ones_name_the_fix() {
    use labeljoin::sources::kinesis::Start;
    let k = |t: &str| KinesisSpec::parse(t).unwrap();
    let s = k("kinesis://clicks").unwrap();
    assert_eq!(
        (s.stream.as_str(), s.start, s.stop_after_idle),
        ("clicks", Start::TrimHorizon, None)
    );
    let s = k("kinesis://a.b-c?start=at_timestamp:1700000000000&stop_after_idle=5").unwrap();
    assert_eq!(
        (s.start, s.stop_after_idle),
        (Start::AtTimestamp(1_700_000_000_000), Some(5))
    );
    assert_eq!(k("kinesis://x?start=latest").unwrap().start, Start::Latest);
    assert!(KinesisSpec::parse("s3://b/p").is_none());
    let e = k("kinesis://x?start=yesterday").unwrap_err().to_string();
    assert!(
        e.contains("unknown setting") && e.contains("kinesis://STREAM?start="),
        "{e}"
    );
    let text = ad_pipeline("30s", false).replace("\"clicks*.jsonl\"", "\"kinesis://bad name\"");
    let e = Pipeline::from_toml(&text, "t.toml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sources[1].path") && e.contains("stream name"),
        "{e}"
    );
}

#[test]
fn an_idle_shard_does_not_hold_the_watermark_back() {
    common::aws::endpoint();
    let s = Scratch::new();
    let cfg = GenConfig {
        impressions: 1500,
        users: 50,
        rate_per_s: 0.3, // about 80 minutes of event time: hour partitions complete
        late_fraction: 0.0,
        malformed_fraction: 0.0,
        ..GenConfig::default()
    };
    write_files(&cfg, s.path()).unwrap();
    let local = s.run(&ad_pipeline("30s", false), 1, "local");
    // Every record gets one partition key: one shard of each stream has everything, the
    // other stays empty (idle) until the source stops it after ~15 s.
    let prefix = unique("idle");
    let client = kinesis_client();
    for name in ["impressions", "clicks", "predictions"] {
        let stream = format!("{prefix}-{name}");
        ensure_stream(&client, &stream, 2).unwrap();
        let lines: Vec<String> = std::fs::read_to_string(s.path().join(format!("{name}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| l.replacen('{', r#"{"k":"one","#, 1))
            .collect();
        put_lines(&client, &stream, &lines, "k").unwrap();
    }
    let src = |name: &str| format!("\"kinesis://{prefix}-{name}?stop_after_idle=75\"");
    let text = ad_pipeline("30s", false)
        .replace(
            "max_out_of_orderness = \"30s\"",
            "max_out_of_orderness = \"30s\"\nidle_timeout = \"1s\"",
        )
        .replace("\"impressions*.jsonl\"", &src("impressions"))
        .replace("\"clicks*.jsonl\"", &src("clicks"))
        .replace("\"predictions*.jsonl\"", &src("predictions"));
    let out = s.path().join("out-idle");
    let job = {
        let (text, dir, out) = (text.clone(), s.path().to_path_buf(), out.clone());
        std::thread::spawn(move || {
            let p = Pipeline::from_toml(&text, "k.toml", &dir).unwrap();
            common::run_pipeline(p, &out, 1).summary
        })
    };
    let started = std::time::Instant::now();
    let mut committed_while_running = None;
    while !job.is_finished() {
        let train = out.join("train");
        if train.exists()
            && common::aws::tree(&train)
                .iter()
                .any(|f| f.ends_with("_SUCCESS"))
        {
            committed_while_running = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let summary = job.join().unwrap();
    let at =
        committed_while_running.expect("no partition committed before the idle shards stopped");
    assert!(at < Duration::from_secs(12), "first commit after {at:?}");
    assert_eq!(summary.rows, local.summary.rows);
}

#[test]
fn expired_iterators_and_throttling_lose_nothing() {
    common::aws::endpoint();
    let s = Scratch::new();
    generate(&s, 1500);
    let local = s.run(&ad_pipeline("30s", false), 1, "local");
    // infra/moto_server.py fails GetRecords on "faulty-*" streams: every 3rd call with an
    // expired iterator, every 5th with throttling.
    let prefix = unique("faulty");
    put_generated(s.path(), &prefix, 2).unwrap();
    let got = s.run(&kinesis_pipeline(&prefix), 1, "kinesis");
    assert_eq!(got.summary.events, local.summary.events);
    assert_eq!(got.summary.duplicates, local.summary.duplicates);
    assert_eq!(channel_files(&got.out), channel_files(&local.out));
}

/// Clauses 4 and 5 on the Kinesis source: a malformed record goes to `dead_letter/` and a
/// late one to `late/`, each named by its shard and sequence number; the job goes on.
#[test]
fn kinesis_late_and_malformed_records_go_to_side_files_with_shard_and_sequence() {
    common::aws::endpoint();
    let s = Scratch::new();
    let prefix = unique("side");
    let client = kinesis_client();
    let t0 = 1_700_000_000_000u64;
    let streams = [
        (
            "impressions",
            vec![
                common::impression("i1", t0, "u1", "c1"),
                "{not json".to_string(),
                common::impression("i2", t0 + 120_000, "u1", "c1"),
                // More than the 30 s of out-of-orderness behind i2: late.
                common::impression("i0", t0 + 10_000, "u1", "c1"),
                common::impression("i3", t0 + 3_600_000, "u1", "c1"),
            ],
        ),
        (
            "clicks",
            vec![common::click("k1", t0 + 5_000, "i1", "u1", "c1")],
        ),
        ("predictions", vec![common::prediction("p1", t0, "u1", 0.5)]),
    ];
    for (name, lines) in &streams {
        let stream = format!("{prefix}-{name}");
        ensure_stream(&client, &stream, 1).unwrap();
        put_lines(&client, &stream, lines, "user_id").unwrap();
    }
    let o = s.run(&kinesis_pipeline(&prefix), 1, "kinesis");
    let rows = o.rows();
    assert!(
        rows.contains_key("i1") && rows.contains_key("i3"),
        "{rows:?}"
    );
    assert!(!rows.contains_key("i0"), "a late example makes no row");
    assert_eq!(rows["i1"]["label"], "1");

    let dead = o.side("dead_letter");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let file = dead[0]["file"].as_str().unwrap();
    assert!(file.starts_with("kinesis-shard:"), "{file}");
    let position = dead[0]["position"].as_str().unwrap();
    assert!(position.starts_with("sequence "), "{position}");
    assert_eq!(dead[0]["record"], "{not json");

    let late = o.side("late");
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0]["id"], "i0");
    assert_eq!(late[0]["reason"], "late");
    assert!(late[0]["shard"].as_str().unwrap().starts_with("shardId-"));
    assert!(!late[0]["sequence"].as_str().unwrap().is_empty());
    assert_eq!(late[0]["watermark"].as_u64(), Some(t0 + 120_000 - 30_000));
}
