//! Pipeline files: the shipped ones validate; mistakes are rejected naming the field.

use std::path::Path;

use labeljoin::config::Pipeline;

fn error_of(text: &str) -> String {
    Pipeline::from_toml(text, "bad.toml", Path::new("."))
        .unwrap_err()
        .to_string()
}

const BASE: &str = r#"
name = "t"
[[sources]]
name = "imps"
stream = "impressions"
path = "x.jsonl"
format = "jsonl"
id_field = "id"
time_field = "ts"
[[sources]]
name = "clicks"
stream = "clicks"
path = "y.jsonl"
format = "jsonl"
id_field = "id"
time_field = "ts"
[label]
example_stream = "impressions"
outcome_stream = "clicks"
outcome_key = "impression_id"
"#;

#[test]
fn shipped_pipelines_validate() {
    for file in ["pipelines/ad_clicks.toml", "pipelines/talkingdata.toml"] {
        Pipeline::load(Path::new(file)).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn an_unknown_stream_is_named_with_its_field_path() {
    let e = error_of(&format!(
        "{BASE}\n[[tables]]\nname = \"user\"\nkey = [\"user_id\"]\nfeatures = [{{ name = \"n\", agg = \"count\", stream = \"clikcs\" }}]\n"
    ));
    assert!(e.contains("tables[0].features[0].stream"), "{e}");
    assert!(e.contains("clikcs") && e.contains("clicks"), "{e}");
}

#[test]
fn a_bad_duration_names_the_field_and_the_fix() {
    let e = error_of(&BASE.replace(
        "outcome_key = \"impression_id\"",
        "outcome_key = \"impression_id\"\nwindow = \"15 parsecs\"",
    ));
    assert!(e.contains("label.window"), "{e}");
    assert!(e.contains("15m"), "suggests a valid form: {e}");
}

#[test]
fn an_unknown_key_is_rejected() {
    let e = error_of(&BASE.replace("name = \"t\"", "name = \"t\"\nwindw = 3"));
    assert!(e.contains("windw"), "{e}");
}

#[test]
fn an_unknown_aggregation_lists_the_known_ones() {
    let e = error_of(&format!(
        "{BASE}\n[[tables]]\nname = \"user\"\nkey = [\"user_id\"]\nfeatures = [{{ name = \"n\", agg = \"median\", stream = \"clicks\" }}]\n"
    ));
    assert!(
        e.contains("tables[0].features[0].agg") && e.contains("distinct_count"),
        "{e}"
    );
}

#[test]
fn a_missing_source_file_is_reported_before_the_run() {
    let p = Pipeline::from_toml(BASE, "t.toml", Path::new("/nonexistent")).unwrap();
    let e = labeljoin::run::run(p, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("imps") && e.contains("matches no file"), "{e}");
}

#[test]
fn state_settings_name_their_field() {
    let e = error_of(&format!("{BASE}\n[state]\nsnapshot_every = \"hourly\"\n"));
    assert!(e.contains("state.snapshot_every"), "{e}");
    let e = error_of(&format!(
        "{BASE}\n[[tables]]\nname = \"user\"\nkey = [\"user_id\"]\nretention = \"a week\"\nfeatures = [{{ name = \"n\", agg = \"count\", stream = \"clicks\" }}]\n"
    ));
    assert!(e.contains("tables[0].retention"), "{e}");
}

#[test]
fn state_defaults_to_a_state_directory_without_snapshots() {
    let p = Pipeline::from_toml(BASE, "ok.toml", Path::new(".")).unwrap();
    assert_eq!(p.state.dir, Path::new("state"));
    assert_eq!(p.state.snapshot_every, None);
}
