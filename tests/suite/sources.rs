//! Sources: gzip and RFC 3339 inputs read the same events as plain files with epoch ms.

use crate::common;

use std::fs;
use std::io::Write;

use common::Scratch;
use labeljoin::gen::{write_files, GenConfig};

fn generate(s: &Scratch, sub: &str, epoch_ms_times: bool) {
    let cfg = GenConfig {
        impressions: 2_000,
        users: 50,
        epoch_ms_times,
        ..GenConfig::default()
    };
    write_files(&cfg, &s.path().join(sub)).unwrap();
}

fn pipeline(dir: &str, ext: &str) -> String {
    common::ad_pipeline("5s", false)
        .replace(
            "path = \"impressions*.jsonl\"",
            &format!("path = \"{dir}/impressions*.{ext}\""),
        )
        .replace(
            "path = \"clicks*.jsonl\"",
            &format!("path = \"{dir}/clicks*.{ext}\""),
        )
        .replace(
            "path = \"predictions*.jsonl\"",
            &format!("path = \"{dir}/predictions*.{ext}\""),
        )
}

#[test]
fn gzip_files_give_the_rows_of_plain_files() {
    let s = Scratch::new();
    generate(&s, "plain", true);
    fs::create_dir(s.path().join("gz")).unwrap();
    for entry in fs::read_dir(s.path().join("plain")).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{}.gz", path.file_name().unwrap().to_string_lossy());
        let mut enc = flate2::write::GzEncoder::new(
            fs::File::create(s.path().join("gz").join(name)).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(&fs::read(&path).unwrap()).unwrap();
        enc.finish().unwrap();
    }
    let plain = s.run(&pipeline("plain", "jsonl"), 2, "plain");
    let gz = s.run(&pipeline("gz", "jsonl.gz"), 2, "gz");
    assert!(plain.summary.rows > 1_900);
    assert_eq!(gz.rows(), plain.rows());
    assert_eq!(gz.summary.malformed, plain.summary.malformed);
}

#[test]
fn rfc3339_times_read_as_the_same_instants_as_epoch_millis() {
    let s = Scratch::new();
    generate(&s, "epoch", true);
    generate(&s, "rfc", false);
    let epoch = s.run(&pipeline("epoch", "jsonl"), 1, "epoch");
    let rfc = s.run(&pipeline("rfc", "jsonl"), 1, "rfc");
    assert_eq!(rfc.rows(), epoch.rows());
}
