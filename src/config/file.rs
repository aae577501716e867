//! The pipeline file as written (`pipelines/*.toml`), before validation.

use serde::Deserialize;

/// Top level of a pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Pipeline name, used in logs and output metadata.
    pub name: String,
    /// Event-time settings.
    #[serde(default)]
    pub time: TimeFile,
    /// Where events come from.
    pub sources: Vec<SourceFile>,
    /// The delayed label join.
    pub label: LabelFile,
    /// Features read from the example event itself.
    #[serde(default)]
    pub event_features: Vec<EventFeatureFile>,
    /// Per-entity tables of declared aggregates.
    #[serde(default)]
    pub tables: Vec<TableFile>,
    /// Where rows go.
    #[serde(default)]
    pub output: OutputFile,
    /// Where the job's state (versioned tables, snapshots) lives.
    #[serde(default)]
    pub state: StateFile,
    /// The profile-query API (`run --serve`).
    #[serde(default)]
    pub api: ApiFile,
}

/// `[api]`: settings of the profile-query HTTP API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    /// Bearer tokens accepted by the API (also `LABELJOIN_API_TOKENS`, comma-separated).
    #[serde(default)]
    pub tokens: Vec<String>,
}

/// `[time]`: watermarks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeFile {
    /// How far behind the newest event of a partition its watermark trails.
    pub max_out_of_orderness: String,
    /// A live partition silent this long (processing time) stops holding the watermark back.
    pub idle_timeout: String,
    /// How far (event time) a partition may be read ahead of the slowest one.
    pub read_ahead: String,
}

impl Default for TimeFile {
    fn default() -> Self {
        TimeFile {
            max_out_of_orderness: "30s".into(),
            idle_timeout: "60s".into(),
            read_ahead: "60s".into(),
        }
    }
}

/// `[[sources]]`: one input (a file glob) feeding one stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Source name, used in dead-letter and late records.
    pub name: String,
    /// The logical stream this source feeds (e.g. `impressions`).
    pub stream: String,
    /// File path or glob, relative to the pipeline file's directory.
    pub path: String,
    /// `jsonl` or `csv`.
    pub format: String,
    /// Read through gzip; default: when the file name ends in `.gz`.
    pub gzip: Option<bool>,
    /// Field holding the event id; CSV sources without it number their data rows from 1.
    pub id_field: Option<String>,
    /// Field holding the event time.
    pub time_field: String,
    /// `auto`, `epoch_ms`, `epoch_s`, `rfc3339` or a strftime pattern (UTC).
    #[serde(default = "auto")]
    pub time_format: String,
    /// Records whose value of this field is empty or absent are not events of this source.
    pub skip_if_empty: Option<String>,
}

fn auto() -> String {
    "auto".into()
}

/// `[label]`: which stream is the example, which the outcome, and the window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelFile {
    /// Stream whose events become training rows (impressions).
    pub example_stream: String,
    /// Stream whose events label them (clicks).
    pub outcome_stream: String,
    /// Field of an outcome naming its example's id; `_id` means the outcome's own id.
    pub outcome_key: String,
    /// How long after the example an outcome still counts (inclusive).
    #[serde(default = "fifteen_minutes")]
    pub window: String,
    /// `exists` (label 0/1) or `count` (label = number of outcomes).
    #[serde(default = "exists")]
    pub kind: String,
    /// How long a finished example's id is remembered to tell late outcomes from orphans.
    #[serde(default = "one_hour")]
    pub outcome_lookback: String,
}

fn fifteen_minutes() -> String {
    "15m".into()
}
fn exists() -> String {
    "exists".into()
}
fn one_hour() -> String {
    "1h".into()
}

/// `[[event_features]]`: a column computed from the example event alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFeatureFile {
    /// Column name.
    pub name: String,
    /// Field of the example event (for raw values, `device_class` and `is_bot`).
    pub field: Option<String>,
    /// `hour_of_day`, `day_of_week`, `device_class` or `is_bot`; absent = the raw field.
    pub derive: Option<String>,
    /// SageMaker encoding of a raw field: `hash` (default), `numeric` or `drop`.
    pub encoding: Option<String>,
}

/// `[[tables]]`: a per-entity table of aggregates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFile {
    /// Table name (e.g. `user`).
    pub name: String,
    /// Key fields, present in the example stream and every stream the table aggregates.
    pub key: Vec<String>,
    /// The aggregates, in column order.
    pub features: Vec<FeatureFile>,
    /// Versions older than this (plus the table's longest window) behind the newest event
    /// are compacted away, each key's newest kept; e.g. `7d`. Default: keep every version.
    pub retention: Option<String>,
}

/// `[[tables.features]]`: one declared aggregate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureFile {
    /// Column name.
    pub name: String,
    /// `count`, `sum`, `mean`, `min`, `max`, `last`, `distinct_count`, `ratio` or `time_since_last`.
    pub agg: String,
    /// Stream aggregated (all but `ratio`).
    pub stream: Option<String>,
    /// Field aggregated (`sum`, `mean`, `min`, `max`, `last`, `distinct_count`).
    pub field: Option<String>,
    /// `lifetime` (default) or a sliding duration like `1h`, `24h`.
    pub window: Option<String>,
    /// `ratio`: the feature (same table) on top.
    pub numerator: Option<String>,
    /// `ratio`: the feature (same table) below.
    pub denominator: Option<String>,
    /// `ratio`: prior value the ratio is smoothed toward.
    pub prior: Option<f64>,
    /// `ratio`: weight of the prior, in denominator units.
    pub strength: Option<f64>,
}

/// `[output]`: where rows go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputFile {
    /// Output location: a local directory (relative to the working directory) or `file://` path.
    pub dir: String,
    /// Share of examples (by a stable hash of the id) written to `validation/`.
    pub validation_fraction: f64,
    /// Categorical values are hashed into `[0, hash_buckets)`; 2^24 keeps them exact as float32.
    pub hash_buckets: u64,
}

impl Default for OutputFile {
    fn default() -> Self {
        OutputFile {
            dir: "out".into(),
            validation_fraction: 0.1,
            hash_buckets: 1 << 24,
        }
    }
}

/// `[state]`: the job's state directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateFile {
    /// State directory (relative to the working directory), default `state`.
    pub dir: String,
    /// Snapshot the tables each time the watermark crosses a multiple of this much event
    /// time (e.g. `1h`), and at the end. Default: no snapshots.
    pub snapshot_every: Option<String>,
}

impl Default for StateFile {
    fn default() -> Self {
        StateFile {
            dir: "state".into(),
            snapshot_every: None,
        }
    }
}
