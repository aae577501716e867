//! The TalkingData sample, read as is: every row's label equals an independent computation
//! from the raw file (`attributed_time - click_time <= 15 min`), and features are sane.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDateTime;

const DATA: &str = "../shared/data/talkingdata_train_sample.csv";

fn secs(s: &str) -> i64 {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp()
}

#[test]
fn talkingdata_labels_equal_an_independent_computation_from_the_raw_file() {
    assert!(
        Path::new(DATA).exists(),
        "{DATA} missing: the tests read ../shared beside the checkout"
    );
    // Independent answer: row number -> (label, click time ms).
    let mut expected: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut reader = csv::Reader::from_path(DATA).unwrap();
    for (n, rec) in reader.deserialize::<BTreeMap<String, String>>().enumerate() {
        let rec = rec.unwrap();
        let click = secs(&rec["click_time"]);
        let label = match rec["attributed_time"].as_str() {
            "" => 0,
            at => {
                assert_eq!(rec["is_attributed"], "1");
                let delay = secs(at) - click;
                u8::from((0..=900).contains(&delay))
            }
        };
        expected.insert((n + 1).to_string(), (label.to_string(), click * 1000));
    }
    let dir = tempfile::tempdir().unwrap();
    let outcome = common::run_file("pipelines/talkingdata.toml", dir.path(), 2);
    let (summary, rows) = (outcome.summary.clone(), outcome.rows());

    assert_eq!(rows.len(), 100_000);
    assert_eq!(summary.malformed + summary.late + summary.duplicates, 0);
    let mut positives = 0;
    for (id, (label, time)) in &expected {
        let row = &rows[id];
        assert_eq!(&row["label"], label, "row {id}");
        assert_eq!(row["event_time"], time.to_string(), "row {id}");
        positives += (label == "1") as usize;
    }
    assert_eq!(
        positives, 139,
        "227 attributed clicks, 139 of them within 15 minutes"
    );
    assert_eq!(summary.positive_rows, 139);
    assert_eq!(summary.outside_window, 227 - 139);
}

#[test]
fn talkingdata_features_count_only_earlier_clicks_of_the_ip() {
    // Reference for two features on the raw file: clicks of the ip strictly before t, and
    // clicks of the (ip, app) strictly before t.
    let mut reader = csv::Reader::from_path(DATA).unwrap();
    let recs: Vec<(String, String, i64)> = reader
        .deserialize::<BTreeMap<String, String>>()
        .map(|r| {
            let r = r.unwrap();
            (r["ip"].clone(), r["app"].clone(), secs(&r["click_time"]))
        })
        .collect();
    let mut by_ip: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut by_ip_app: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for (ip, app, t) in &recs {
        by_ip.entry(ip).or_default().push(*t);
        by_ip_app.entry((ip, app)).or_default().push(*t);
    }
    let dir = tempfile::tempdir().unwrap();
    let outcome = common::run_file("pipelines/talkingdata.toml", dir.path(), 1);
    let rows = outcome.rows();
    for (n, (ip, app, t)) in recs.iter().enumerate().step_by(97) {
        let row = &rows[&(n + 1).to_string()];
        let ip_before = by_ip[ip.as_str()].iter().filter(|x| **x < *t).count();
        let pair_before = by_ip_app[&(ip.as_str(), app.as_str())]
            .iter()
            .filter(|x| **x < *t)
            .count();
        assert_eq!(row["ip_clicks"], ip_before.to_string(), "row {}", n + 1);
        assert_eq!(
            row["ip_app_clicks"],
            pair_before.to_string(),
            "row {}",
            n + 1
        );
    }
}
