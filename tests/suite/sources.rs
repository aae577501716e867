//! Sources: gzip and RFC 3339 inputs read the same events as plain files with epoch ms.

use crate::common;

use std::fs;
use std::io::Write;

use common::Scratch;
use labeljoin::gen::{write_files, GenConfig};

const T0: u64 = 1_700_000_000_000;

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

/// Plain files are read in place (mapped) and gzip files through a stream: both must see
/// the same lines, whatever their ends, and keep a line that is not UTF-8 for the
/// dead-letter file.
#[test]
fn lines_not_utf8_go_to_dead_letter_and_line_ends_read_alike_mapped_or_streamed() {
    let s = Scratch::new();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(common::impression("i1", T0, "u1", "c1").as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(b"{\"id\":\"i2\",\"user_id\":\"u\xff1\"}\n");
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(common::impression("i3", T0 + 1_000, "u1", "c1").as_bytes());
    // No line end after the last line.
    for dir in ["plain", "gz"] {
        fs::create_dir(s.path().join(dir)).unwrap();
        fs::write(s.path().join(dir).join("clicks.jsonl"), "").unwrap();
        fs::write(s.path().join(dir).join("predictions.jsonl"), "").unwrap();
    }
    fs::write(s.path().join("plain/impressions.jsonl"), &bytes).unwrap();
    let mut enc = flate2::write::GzEncoder::new(
        fs::File::create(s.path().join("gz/impressions.jsonl.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&bytes).unwrap();
    enc.finish().unwrap();
    let pipeline = |dir: &str, ext: &str| {
        pipeline(dir, "jsonl").replace(
            &format!("{dir}/impressions*.jsonl"),
            &format!("{dir}/impressions*.{ext}"),
        )
    };
    let plain = s.run(&pipeline("plain", "jsonl"), 1, "plain");
    let gz = s.run(&pipeline("gz", "jsonl.gz"), 1, "gz");
    for o in [&plain, &gz] {
        assert_eq!(o.rows().keys().collect::<Vec<_>>(), ["i1", "i3"]);
        assert_eq!(o.summary.malformed, 1);
        let dead = o.side("dead_letter");
        assert_eq!(dead[0]["position"], "line 2");
        assert!(dead[0]["error"].as_str().unwrap().contains("UTF-8"));
        // The line is kept, its bad byte replaced.
        assert_eq!(
            dead[0]["record"],
            "{\"id\":\"i2\",\"user_id\":\"u\u{fffd}1\"}"
        );
    }
    assert_eq!(plain.rows(), gz.rows());
}
