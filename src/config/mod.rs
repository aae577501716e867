//! Pipeline configuration: the file format (`file`) and the validated, index-resolved pipeline.

pub mod file;

use std::path::{Path, PathBuf};

use crate::time::{parse_duration, Time, TimeFormat};
use file::*;

/// A rejected pipeline file: names the field and says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {field}: {message}")]
pub struct ConfigError {
    /// The pipeline file.
    pub path: String,
    /// Dotted path of the offending field, e.g. `tables[0].features[2].stream`.
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// A field of a stream that the pipeline reads, by index into [`StreamSchema::fields`].
pub type FieldIx = usize;

/// Where a value comes from in an event: a named field or the event's id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef {
    /// The event's id (`_id`).
    Id,
    /// A field of the stream's schema.
    Field(FieldIx),
}

/// One field a stream's events carry, as the pipeline uses it.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    /// Field name in the source records.
    pub name: String,
    /// Read as a number (aggregated) rather than text (keys, categories).
    pub numeric: bool,
    /// Kept as text (it is also a key or category) but must parse as a number.
    pub check_numeric: bool,
    /// A record without it is malformed (keys, join fields).
    pub required: bool,
}

/// A logical stream (impressions, clicks, ...) and the fields the pipeline reads from it.
#[derive(Debug, Clone)]
pub struct StreamSchema {
    /// Stream name.
    pub name: String,
    /// Fields read, in the order events carry them.
    pub fields: Vec<FieldSpec>,
}

/// File format of a source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Source name.
    pub name: String,
    /// Stream index.
    pub stream: usize,
    /// Path or glob, resolved against the pipeline file's directory.
    pub pattern: PathBuf,
    /// File format.
    pub format: Format,
    /// Force gzip on or off; `None` = by `.gz` extension.
    pub gzip: Option<bool>,
    /// Id field name (`None`: CSV row number).
    pub id_field: Option<String>,
    /// Time field name.
    pub time_field: String,
    /// How times are written.
    pub time_format: TimeFormat,
    /// Field whose emptiness means "not an event of this source".
    pub skip_if_empty: Option<String>,
}

/// Label semantics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelKind {
    /// 1 if any outcome falls in the window.
    Exists,
    /// Number of outcomes in the window.
    Count,
}

/// The validated label join.
#[derive(Debug, Clone)]
pub struct LabelSpec {
    /// Example stream index.
    pub example_stream: usize,
    /// Outcome stream index.
    pub outcome_stream: usize,
    /// Where an outcome names its example.
    pub outcome_key: FieldRef,
    /// Window length (inclusive bounds).
    pub window: Time,
    /// exists or count.
    pub kind: LabelKind,
    /// How long finished example ids are remembered.
    pub outcome_lookback: Time,
}

/// How a column is written to the numeric SageMaker CSV.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Encoding {
    /// Written as is (numbers).
    Numeric,
    /// Hashed text into `[0, hash_buckets)`.
    Hash,
    /// Only in the full CSV.
    Drop,
}

/// What an event feature computes.
#[derive(Debug, Clone, PartialEq)]
pub enum EventFeatureKind {
    /// The raw value of an example field.
    Raw(FieldIx),
    /// Hour of day (UTC) of the example time.
    HourOfDay,
    /// Day of week (0 = Monday, UTC).
    DayOfWeek,
    /// Device class of a user-agent field (pc, smartphone, mobilephone, crawler, ...).
    DeviceClass(FieldIx),
    /// 1 if the user-agent field is a known crawler.
    IsBot(FieldIx),
}

/// A validated event feature.
#[derive(Debug, Clone)]
pub struct EventFeature {
    /// Column name.
    pub name: String,
    /// What it computes.
    pub kind: EventFeatureKind,
    /// SageMaker encoding.
    pub encoding: Encoding,
}

/// Aggregation kinds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    /// Number of events.
    Count,
    /// Sum of a field.
    Sum,
    /// Mean of a field.
    Mean,
    /// Minimum of a field.
    Min,
    /// Maximum of a field.
    Max,
    /// Latest value of a field (ties: the greatest event id).
    Last,
    /// Number of distinct values of a field.
    DistinctCount,
    /// Seconds since the key's previous event of the stream.
    TimeSinceLast,
    /// `(numerator + prior * strength) / (denominator + strength)` of two features.
    Ratio,
}

/// A validated table feature.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FeatureSpec {
    /// Column name.
    pub name: String,
    /// Aggregation.
    pub agg: Agg,
    /// Stream aggregated (unused for ratio).
    pub stream: usize,
    /// Field aggregated, when the aggregation takes one.
    pub field: Option<FieldIx>,
    /// Sliding window length; `None` = lifetime.
    pub window: Option<Time>,
    /// Ratio operands: indices of features in the same table.
    pub ratio: Option<(usize, usize, f64, f64)>,
}

/// A validated table.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Table name.
    pub name: String,
    /// Key field names.
    pub key_names: Vec<String>,
    /// Per stream: the key fields' indices, if the table reads that stream (examples always).
    pub key_fields: Vec<Option<Vec<FieldIx>>>,
    /// Aggregates in column order.
    pub features: Vec<FeatureSpec>,
    /// Versions older than this (plus the longest window) behind the newest event may be
    /// compacted away.
    pub retention: Option<Time>,
}

/// Validated output settings.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// Output directory.
    pub dir: PathBuf,
    /// Share of examples in `validation/`.
    pub validation_fraction: f64,
    /// Hash buckets of categorical values.
    pub hash_buckets: u64,
}

/// Validated state settings.
#[derive(Debug, Clone)]
pub struct StateSpec {
    /// State directory.
    pub dir: PathBuf,
    /// Snapshot period in event time.
    pub snapshot_every: Option<Time>,
}

/// A validated pipeline: every name resolved to an index.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Pipeline name.
    pub name: String,
    /// Watermark lag behind the newest event of a partition.
    pub max_out_of_orderness: Time,
    /// Processing-time silence after which a live partition stops holding the watermark.
    pub idle_timeout: Time,
    /// Event-time read-ahead allowed over the slowest partition.
    pub read_ahead: Time,
    /// Streams, with the fields read from each.
    pub streams: Vec<StreamSchema>,
    /// Sources.
    pub sources: Vec<SourceSpec>,
    /// Label join.
    pub label: LabelSpec,
    /// Event features.
    pub event_features: Vec<EventFeature>,
    /// Tables.
    pub tables: Vec<TableSpec>,
    /// Output.
    pub output: OutputSpec,
    /// State directory and snapshots.
    pub state: StateSpec,
    /// Bearer tokens of the profile-query API (`[api] tokens`).
    pub api_tokens: Vec<String>,
}

mod validate;

impl Pipeline {
    /// Reads and validates a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            field: "(file)".into(),
            message: format!("cannot read the pipeline file: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::from_toml(&text, &path.display().to_string(), &base)
    }

    /// Validates pipeline text; relative source paths resolve against `base_dir`.
    pub fn from_toml(text: &str, name: &str, base_dir: &Path) -> Result<Pipeline, ConfigError> {
        let file: PipelineFile = toml::from_str(text).map_err(|e| ConfigError {
            path: name.to_string(),
            field: "(toml)".into(),
            message: e.to_string().trim_end().to_string(),
        })?;
        validate::validate(file, name, base_dir)
    }

    /// Column names of the features, in row order (event features, then tables).
    pub fn feature_names(&self) -> Vec<&str> {
        let ev = self.event_features.iter().map(|f| f.name.as_str());
        let tb = self
            .tables
            .iter()
            .flat_map(|t| t.features.iter().map(|f| f.name.as_str()));
        ev.chain(tb).collect()
    }

    /// Index of a stream by name.
    pub fn stream_index(&self, name: &str) -> Option<usize> {
        self.streams.iter().position(|s| s.name == name)
    }
}

pub(crate) fn duration(value: &str, path: &str, field: &str) -> Result<Time, ConfigError> {
    parse_duration(value).map_err(|message| ConfigError {
        path: path.into(),
        field: field.into(),
        message,
    })
}
