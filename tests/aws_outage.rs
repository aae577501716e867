//! Emulator outage: the network path to the emulator goes down for a few seconds while
//! the Kinesis source reads and the S3 sink uploads; retries ride it out, and the output
//! equals the file run (nothing lost, nothing duplicated). Its own test binary, outside
//! `suite`, because it points this process's AWS endpoint at an interruptible proxy.

#[path = "suite/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::aws::{channel_files, download, scratch, unique, Proxy};
use common::{ad_pipeline, Scratch};
use labeljoin::config::Pipeline;
use labeljoin::gen::{write_files, GenConfig};
use labeljoin::run::{run, RunOptions};

#[test]
fn emulator_outage_while_reading_and_uploading_loses_and_duplicates_nothing() {
    let upstream = common::aws::endpoint();
    let proxy = Arc::new(Proxy::start(&upstream));
    // Before any client exists: every AWS call of this process goes through the proxy.
    std::env::set_var("AWS_ENDPOINT_URL", &proxy.endpoint);

    let s = Scratch::new();
    let cfg = GenConfig {
        impressions: 3000,
        users: 50,
        late_fraction: 0.0,
        ..GenConfig::default()
    };
    write_files(&cfg, s.path()).unwrap();
    let local = s.run(&ad_pipeline("30s", false), 1, "local");
    let prefix = unique("outage");
    labeljoin::aws::kinesis_put::put_generated(s.path(), &prefix, 2).unwrap();
    let b = common::aws::bucket("outage");

    let src = |name: &str| format!("\"kinesis://{prefix}-{name}?stop_after_idle=25\"");
    let text = ad_pipeline("30s", false)
        .replace("\"impressions*.jsonl\"", &src("impressions"))
        .replace("\"clicks*.jsonl\"", &src("clicks"))
        .replace("\"predictions*.jsonl\"", &src("predictions"));
    let p = Pipeline::from_toml(&text, "k.toml", s.path()).unwrap();
    let opts = RunOptions {
        output: Some(format!("s3://{b}/out").into()),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let outage = proxy.outage(Duration::from_millis(400), Duration::from_secs(3));
    let summary = run(p, &opts).unwrap();
    // The run was still going when the path came back: the outage hit it.
    assert!(
        started.elapsed() > Duration::from_millis(3400),
        "{:?}",
        started.elapsed()
    );
    outage.join().unwrap();
    assert_eq!(summary.rows, local.summary.rows);

    let (_g, got) = scratch();
    download(&format!("s3://{b}/out/"), &got);
    assert_eq!(channel_files(&got), channel_files(&local.out));
}
