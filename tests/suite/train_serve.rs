//! DESIGN.md clause 8, train/serve consistency: for every emitted row, each table read
//! `as_of = event_time - 1 ms` from the state directory equals the row's features.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use labeljoin::config::Pipeline;
use labeljoin::features::agg::{fill_ratios, AggState};
use labeljoin::run::{run, RunOptions};
use labeljoin::sinks::numbers::write_num;
use labeljoin::tables::{TableReader, TableStore};

/// Impression id -> its fields, from the fixture (malformed lines skipped).
fn impressions(path: &Path) -> HashMap<String, serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v.get("id")?.as_str()?.to_string(), v)))
        .collect()
}

fn text(v: Option<f64>) -> String {
    let mut s = String::new();
    if let Some(n) = v {
        write_num(n, &mut s);
    }
    s
}

/// Runs a pipeline with a state directory and checks every row's table features against
/// reads as of one millisecond before the row; `fields` gives an example's field values.
fn check(pipeline: Pipeline, fields: impl Fn(&str) -> HashMap<String, String>) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let state = dir.path().join("state");
    let rows = common::run_with_state(pipeline.clone(), &out, &state, 2).rows();
    let reader = TableReader::open(&state).unwrap();

    let mut checked = 0;
    for (id, r) in &rows {
        let ev = fields(id);
        let as_of = r["event_time"].parse::<u64>().unwrap() - 1;
        for t in &pipeline.tables {
            let key: Vec<&str> = t
                .key_names
                .iter()
                .map(|k| ev[k.as_str()].as_str())
                .collect();
            let key = key.join("|");
            let values = match reader.get(&t.name, &key, as_of).unwrap() {
                Some((_, named)) => named.values().to_vec(),
                None => {
                    let mut v: Vec<Option<f64>> =
                        t.features.iter().map(AggState::empty_value).collect();
                    fill_ratios(&t.features, &mut v);
                    v
                }
            };
            for (f, v) in t.features.iter().zip(values) {
                assert_eq!(
                    text(v),
                    r[&f.name],
                    "{id} {}: table {} key {key} as of {as_of}",
                    f.name,
                    t.name
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= rows.len() * 7,
        "{} rows, {checked} values",
        rows.len()
    );
    rows.len()
}

/// The fields of an ad-click fixture impression.
fn impression_fields() -> impl Fn(&str) -> HashMap<String, String> {
    let events = impressions(Path::new("fixtures/ad_clicks/impressions.jsonl"));
    move |id| {
        let ev = events[id].as_object().unwrap();
        ev.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect()
    }
}

#[test]
fn every_rows_features_equal_the_tables_as_of_one_ms_before() {
    let pipeline = Pipeline::load(Path::new("pipelines/ad_clicks.toml")).unwrap();
    assert!(check(pipeline, impression_fields()) > 4_900);
}

/// Windowed max, last and distinct counts change when an event leaves the window, with no
/// event of their key: those instants are versions too, fired between a key's records
/// (a country has many records in each pass of the table operator).
#[test]
fn windowed_values_that_change_when_events_leave_equal_the_tables_as_of_one_ms_before() {
    let text = std::fs::read_to_string("pipelines/ad_clicks.toml").unwrap();
    let user = r#"  { name = "user_model_score", agg = "last", stream = "predictions", field = "score" },"#;
    let country =
        r#"  { name = "country_clicks_24h", agg = "count", stream = "clicks", window = "24h" },"#;
    assert!(text.contains(user) && text.contains(country));
    let text = text
        .replace(user, &format!(r#"{user}
  {{ name = "user_max_score_10m", agg = "max", stream = "predictions", field = "score", window = "10m" }},
  {{ name = "user_last_score_10m", agg = "last", stream = "predictions", field = "score", window = "10m" }},
  {{ name = "user_campaigns_10m", agg = "distinct_count", stream = "impressions", field = "campaign_id", window = "10m" }},"#))
        .replace(country, &format!(r#"{country}
  {{ name = "country_users_5m", agg = "distinct_count", stream = "impressions", field = "user_id", window = "5m" }},"#));
    let pipeline = Pipeline::from_toml(&text, "windowed", Path::new("pipelines")).unwrap();
    assert!(check(pipeline, impression_fields()) > 4_900);
}

#[test]
fn talkingdata_rows_equal_the_tables_as_of_one_ms_before() {
    let mut reader = csv::Reader::from_path("../shared/data/talkingdata_train_sample.csv").unwrap();
    let records: Vec<HashMap<String, String>> = reader.deserialize().map(Result::unwrap).collect();
    let pipeline = Pipeline::load(Path::new("pipelines/talkingdata.toml")).unwrap();
    let rows = check(pipeline, |id| {
        records[id.parse::<usize>().unwrap() - 1].clone()
    });
    assert_eq!(rows, 100_000);
}

#[test]
fn a_run_with_snapshots_leaves_a_restorable_final_snapshot() {
    use labeljoin::tables::{snapshot, TableReader};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let opts = RunOptions {
        output: Some(dir.path().join("out")),
        state: Some(state.clone()),
        snapshot_every: Some(30 * 60_000),
        ..Default::default()
    };
    run(
        Pipeline::load(Path::new("pipelines/ad_clicks.toml")).unwrap(),
        &opts,
    )
    .unwrap();
    let list = snapshot::list(&state);
    let last = list.last().expect("the final snapshot");
    assert_eq!(
        last.watermark,
        u64::MAX,
        "the final snapshot is taken after every version is written"
    );
    let restored = dir.path().join("restored");
    snapshot::restore(&state, last.version, &restored).unwrap();
    let (live, copy) = (
        TableReader::open(&state).unwrap(),
        TableReader::open(&restored).unwrap(),
    );
    for key in ["u0", "u1", "u42"] {
        for as_of in [1_700_000_000_000u64, 1_700_001_000_000, 1_700_004_000_000] {
            assert_eq!(
                copy.get("user", key, as_of).unwrap(),
                live.get("user", key, as_of).unwrap()
            );
        }
    }
}

#[test]
fn table_retention_from_the_pipeline_keeps_every_read_at_or_after_the_cutoff() {
    use labeljoin::tables::TableReader;
    let dir = tempfile::tempdir().unwrap();
    let mut pipeline = Pipeline::load(Path::new("pipelines/ad_clicks.toml")).unwrap();
    // Windows shorter than the fixture's two hours: retention keeps one longest window
    // more (window reads subtract the version that much earlier), and must find old
    // versions to remove.
    for f in &mut pipeline.tables[0].features {
        if let Some(w) = f.window.as_mut() {
            *w = (*w).min(20 * 60_000);
        }
    }
    let mut thinned = pipeline.clone();
    let keep = 30 * 60_000;
    thinned.tables[0].retention = Some(keep);
    let run_into = |p: Pipeline, name: &str| {
        let state = dir.path().join(name);
        let opts = RunOptions {
            output: Some(dir.path().join(format!("out-{name}"))),
            state: Some(state.clone()),
            ..Default::default()
        };
        run(p, &opts).unwrap();
        state
    };
    let (full, thin) = (run_into(pipeline, "full"), run_into(thinned, "thin"));
    let (full_store, thin_store) = (
        TableStore::open_read_only(&full).unwrap(),
        TableStore::open_read_only(&thin).unwrap(),
    );
    // The cutoff counts back from the newest event applied (a late click, here).
    let newest = ["impressions", "clicks", "predictions"]
        .iter()
        .flat_map(|s| {
            impressions(Path::new(&format!("fixtures/ad_clicks/{s}.jsonl"))).into_values()
        })
        .filter_map(|v| v["ts"].as_u64())
        .max()
        .unwrap();
    let cutoff = newest + 1 - keep;
    let (full_reader, thin_reader) = (
        TableReader::open(&full).unwrap(),
        TableReader::open(&thin).unwrap(),
    );
    let (mut fewer, mut reads) = (0, 0);
    for key in (0..200).map(|u| format!("u{u}")) {
        let all = full_store
            .history("user", key.as_bytes(), 0, u64::MAX)
            .unwrap();
        let kept = thin_store
            .history("user", key.as_bytes(), 0, u64::MAX)
            .unwrap();
        fewer += all.len() - kept.len();
        for as_of in [cutoff, cutoff + 60_000, newest, newest + 86_400_000] {
            assert_eq!(
                thin_reader.get("user", &key, as_of).unwrap(),
                full_reader.get("user", &key, as_of).unwrap(),
                "user {key} as of {as_of}"
            );
            reads += 1;
        }
        // Versions at or after the cutoff are all kept.
        let recent = |v: &Vec<(u64, Vec<u8>)>| v.iter().filter(|(t, _)| *t >= cutoff).count();
        assert_eq!(recent(&kept), recent(&all), "user {key}");
    }
    assert!(fewer > 1_000, "retention removed only {fewer} old versions");
    assert_eq!(reads, 800);
    // Tables without retention keep everything.
    let count = |s: &TableStore| s.history("campaign", b"c1", 0, u64::MAX).unwrap().len();
    assert_eq!(count(&thin_store), count(&full_store));
}
