//! Test helpers: write event files, run a pipeline in-process, read its outputs back.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use labeljoin::config::Pipeline;
use labeljoin::metrics::Summary;
use labeljoin::run::{run, RunOptions};

/// A scratch directory with event files and an output directory.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes lines to a file under the scratch directory.
    pub fn write(&self, name: &str, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(self.path().join(name), text).unwrap();
    }

    /// Runs pipeline text (paths relative to the scratch dir) into `out-<tag>`.
    pub fn run(&self, pipeline: &str, workers: usize, tag: &str) -> Outcome {
        let p = Pipeline::from_toml(pipeline, "test.toml", self.path()).unwrap();
        run_pipeline(p, &self.path().join(format!("out-{tag}")), workers)
    }
}

/// Runs a pipeline file of the repository into `out`.
pub fn run_file(pipeline: &str, out: &Path, workers: usize) -> Outcome {
    run_pipeline(Pipeline::load(Path::new(pipeline)).unwrap(), out, workers)
}

/// Runs a pipeline into `out` on `workers` workers.
pub fn run_pipeline(p: Pipeline, out: &Path, workers: usize) -> Outcome {
    let opts = RunOptions {
        output: Some(out.to_path_buf()),
        workers,
        ..Default::default()
    };
    Outcome {
        summary: run(p, &opts).unwrap(),
        out: out.to_path_buf(),
    }
}

/// Runs a pipeline into `out` on `workers` workers, writing its tables to `state`.
#[allow(dead_code)] // not every test binary keeps a state
pub fn run_with_state(p: Pipeline, out: &Path, state: &Path, workers: usize) -> Outcome {
    let opts = RunOptions {
        output: Some(out.to_path_buf()),
        workers,
        state: Some(state.to_path_buf()),
        ..Default::default()
    };
    Outcome {
        summary: run(p, &opts).unwrap(),
        out: out.to_path_buf(),
    }
}

/// What a run produced.
pub struct Outcome {
    pub summary: Summary,
    pub out: PathBuf,
}

/// One full-CSV row as column -> value.
pub type Row = BTreeMap<String, String>;

impl Outcome {
    /// Every row of the full CSV, keyed by example id.
    pub fn rows(&self) -> BTreeMap<String, Row> {
        let mut rows = BTreeMap::new();
        for file in files_under(&self.out.join("full"), "csv") {
            let mut r = csv::Reader::from_path(&file).unwrap();
            let header = r.headers().unwrap().clone();
            for rec in r.records() {
                let rec = rec.unwrap();
                let row: Row = header
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect();
                let prev = rows.insert(row["example_id"].clone(), row);
                assert!(prev.is_none(), "an example was emitted twice");
            }
        }
        rows
    }

    /// Records of a side file kind (`late`, `dead_letter`, `duplicates`, `unmatched`).
    pub fn side(&self, kind: &str) -> Vec<serde_json::Value> {
        files_under(&self.out.join(kind), "jsonl")
            .iter()
            .flat_map(|f| {
                fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Files with an extension under a directory, sorted.
pub fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p, ext));
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn impression(id: &str, ts: u64, user: &str, campaign: &str) -> String {
    format!(
        r#"{{"id":"{id}","ts":{ts},"user_id":"{user}","campaign_id":"{campaign}","country":"DE","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"}}"#
    )
}

pub fn click(id: &str, ts: u64, imp: &str, user: &str, campaign: &str) -> String {
    format!(
        r#"{{"id":"{id}","ts":{ts},"impression_id":"{imp}","user_id":"{user}","campaign_id":"{campaign}"}}"#
    )
}

pub fn prediction(id: &str, ts: u64, user: &str, score: f64) -> String {
    format!(r#"{{"id":"{id}","ts":{ts},"user_id":"{user}","score":{score}}}"#)
}

/// A small ad-click pipeline over `impressions.jsonl`, `clicks.jsonl`, `predictions.jsonl`
/// (clicks listed first when `clicks_first`, so they are read before impressions).
pub fn ad_pipeline(out_of_orderness: &str, clicks_first: bool) -> String {
    let imps = r#"
[[sources]]
name = "impressions"
stream = "impressions"
path = "impressions*.jsonl"
format = "jsonl"
id_field = "id"
time_field = "ts"
"#;
    let clicks = r#"
[[sources]]
name = "clicks"
stream = "clicks"
path = "clicks*.jsonl"
format = "jsonl"
id_field = "id"
time_field = "ts"
"#;
    let (a, b) = if clicks_first {
        (clicks, imps)
    } else {
        (imps, clicks)
    };
    format!(
        r#"
name = "test"
[time]
max_out_of_orderness = "{out_of_orderness}"
{a}{b}
[[sources]]
name = "predictions"
stream = "predictions"
path = "predictions*.jsonl"
format = "jsonl"
id_field = "id"
time_field = "ts"

[label]
example_stream = "impressions"
outcome_stream = "clicks"
outcome_key = "impression_id"
window = "15m"

[[event_features]]
name = "campaign"
field = "campaign_id"

[[tables]]
name = "user"
key = ["user_id"]
features = [
  {{ name = "user_impressions", agg = "count", stream = "impressions" }},
  {{ name = "user_clicks", agg = "count", stream = "clicks" }},
  {{ name = "user_impressions_1h", agg = "count", stream = "impressions", window = "1h" }},
  {{ name = "user_distinct_campaigns", agg = "distinct_count", stream = "impressions", field = "campaign_id" }},
  {{ name = "user_secs_since_impression", agg = "time_since_last", stream = "impressions" }},
  {{ name = "user_model_score", agg = "last", stream = "predictions", field = "score" }},
]

[[tables]]
name = "campaign"
key = ["campaign_id"]
features = [
  {{ name = "campaign_impressions", agg = "count", stream = "impressions" }},
  {{ name = "campaign_clicks", agg = "count", stream = "clicks" }},
]
"#
    )
}
pub mod aws;
