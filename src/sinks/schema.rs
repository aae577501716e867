//! Column layout of the two CSV forms, and `schema.json` describing it.

use std::path::Path;

use serde_json::json;

use crate::config::{Encoding, LabelKind, Pipeline};
use crate::event::{stable_hash, ValueRef};
use crate::sinks::numbers::{push_fixed, push_u64, write_num};
use crate::time::Time;

/// How each feature column is written to the numeric (SageMaker) CSV.
#[derive(Debug, Clone)]
pub struct Columns {
    /// Per feature (row order): its SageMaker encoding.
    pub encodings: Vec<Encoding>,
    /// Hash buckets of categorical values.
    pub buckets: u64,
    /// Full CSV header line.
    pub full_header: String,
}

impl Columns {
    /// Layout of a pipeline's rows.
    pub fn new(p: &Pipeline) -> Self {
        let mut encodings: Vec<Encoding> = p.event_features.iter().map(|f| f.encoding).collect();
        // Table features are numeric in both forms: the label join renders their cells
        // once and copies the run (`Columns::number_cell`).
        encodings.extend(
            p.tables
                .iter()
                .flat_map(|t| t.features.iter().map(|_| Encoding::Numeric)),
        );
        let mut header = String::from("example_id,event_time,label,outcome_count");
        for name in p.feature_names() {
            header.push(',');
            header.push_str(name);
        }
        Columns {
            encodings,
            buckets: p.output.hash_buckets,
            full_header: header,
        }
    }

    /// Starts a row: its full CSV line (raw values) in `full`, its SageMaker line (label
    /// first, no ids, categoricals hashed) in `sagemaker`; then one [`Columns::cell`] per
    /// feature column. The caller ends both lines.
    pub fn start(
        &self,
        example_id: &str,
        time: Time,
        label: u32,
        outcome_count: u32,
        full: &mut String,
        sagemaker: &mut String,
    ) {
        write_csv_field(example_id, full);
        for n in [time, label as u64, outcome_count as u64] {
            full.push(',');
            push_u64(full, n);
        }
        push_u64(sagemaker, label as u64);
    }

    /// Renders feature column `column` in both lines. Numbers are formatted once and
    /// copied to both.
    pub fn cell(&self, column: usize, v: ValueRef<'_>, full: &mut String, sagemaker: &mut String) {
        full.push(',');
        let start = full.len();
        match v {
            ValueRef::Missing => {}
            ValueRef::Num(n) => write_num(n, full),
            ValueRef::Str(s) => write_csv_field(s, full),
        }
        match (self.encodings[column], v) {
            (Encoding::Drop, _) => {}
            (Encoding::Numeric, ValueRef::Num(_)) => {
                sagemaker.push(',');
                sagemaker.push_str(&full[start..]);
            }
            (Encoding::Numeric, _) => {
                sagemaker.push(',');
                if let Some(n) = v.as_num() {
                    write_num(n, sagemaker);
                }
            }
            (Encoding::Hash, ValueRef::Missing) => sagemaker.push(','),
            (Encoding::Hash, ValueRef::Str(s)) => {
                sagemaker.push(',');
                push_u64(sagemaker, hash_category(s, self.buckets));
            }
            (Encoding::Hash, ValueRef::Num(_)) => {
                let code = hash_category(&full[start..], self.buckets);
                sagemaker.push(',');
                push_u64(sagemaker, code);
            }
        }
    }

    /// Renders a numeric cell in the full line only. Table features are numeric in both
    /// forms, so their cells read the same in both lines: the caller renders them all here
    /// and copies the whole run to the SageMaker line once.
    pub fn number_cell(v: Option<f64>, full: &mut String) {
        full.push(',');
        if let Some(n) = v {
            write_num(n, full);
        }
    }
}

/// Cells of repeated values already rendered, by column: dictionary text by its index (see
/// [`crate::label::pending`]) and small whole numbers (hour of day, flags) by value. A
/// category is checked for quoting, hashed and formatted once per worker instead of once
/// per row.
#[derive(Default)]
pub struct RepeatedCells {
    /// Per column, per key (`[texts, numbers]`): where in `text` its full cell starts, where
    /// its SageMaker cell starts and where that ends; `UNSET` when not rendered yet.
    spans: Vec<[Vec<(u32, u32, u32)>; 2]>,
    text: String,
}

const UNSET: u32 = u32::MAX;

/// Dictionary indexes past this are rendered every time (bounds the memo to what the
/// dictionary's most frequent values need).
const MAX_TEXT_CELLS: u32 = 1 << 16;

/// Whole numbers below this are rendered once per column.
const SMALL_NUMBERS: f64 = 1024.0;

impl RepeatedCells {
    /// Appends the cells of column `column` holding `v` to both lines, as
    /// [`Columns::cell`] renders them: from the memo when `v` is dictionary text
    /// (`text`: its index) or a small whole number, else rendered directly.
    pub fn cell(
        &mut self,
        columns: &Columns,
        column: usize,
        (v, text): (ValueRef<'_>, Option<u32>),
        full: &mut String,
        sagemaker: &mut String,
    ) {
        let (kind, key) = match (text, v) {
            (Some(ix), _) if ix < MAX_TEXT_CELLS => (0, ix as usize),
            // Not -0.0: it prints as "-0".
            (None, ValueRef::Num(n))
                if (0.0..SMALL_NUMBERS).contains(&n)
                    && n.is_sign_positive()
                    && n as usize as f64 == n =>
            {
                (1, n as usize)
            }
            _ => return columns.cell(column, v, full, sagemaker),
        };
        if self.spans.len() <= column {
            self.spans.resize_with(column + 1, Default::default);
        }
        let spans = &mut self.spans[column][kind];
        if spans.len() <= key {
            spans.resize(key + 1, (UNSET, 0, 0));
        }
        if spans[key].0 == UNSET {
            let (mut f, mut s) = (String::new(), String::new());
            columns.cell(column, v, &mut f, &mut s);
            self.text.truncate(self.text.len().saturating_sub(PAD));
            let start = self.text.len();
            self.text.push_str(&f);
            self.text.push_str(&s);
            let at = |n: usize| u32::try_from(n).expect("repeated cells under 4 GiB");
            spans[key] = (at(start), at(start + f.len()), at(self.text.len()));
            self.text.extend(std::iter::repeat_n('\0', PAD));
        }
        let (start, mid, end) = spans[key];
        push_cell(full, &self.text, start as usize, mid as usize);
        push_cell(sagemaker, &self.text, mid as usize, end as usize);
    }
}

/// Bytes kept past the last cell in [`RepeatedCells`]' text, so that a cell up to this long
/// is copied by one fixed-size move (a copy of its own length is a call to `memcpy`).
const PAD: usize = 16;

/// Appends `text[start..end]`, a run of whole cells of [`RepeatedCells`]' text.
#[inline]
fn push_cell(out: &mut String, text: &str, start: usize, end: usize) {
    let len = end - start;
    if len <= PAD && start + PAD <= text.len() {
        // SAFETY: the `PAD` bytes from `start` lie inside `text`, and `text[start..end]` is
        // whole cells, so UTF-8.
        unsafe { push_fixed::<PAD>(out, text.as_ptr().add(start), len) }
    } else {
        out.push_str(&text[start..end]);
    }
}

/// Stable integer code of a categorical value: xxh3-64 of its UTF-8 bytes modulo `buckets`.
pub fn hash_category(value: &str, buckets: u64) -> u64 {
    stable_hash(value.as_bytes()) % buckets
}

fn write_csv_field(s: &str, out: &mut String) {
    // The four bytes that need quotes are all <= b','; most ids have no such byte, and this
    // test reads them without a branch per byte.
    let low = s.bytes().fold(false, |any, b| any | (b <= b','));
    if low && s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Writes `<output>/schema.json`: every column of both CSV forms and its encoding.
/// It lives outside the `train/` and `validation/` channels so SageMaker never reads it as data.
pub fn write_schema(p: &Pipeline, dir: &Path) -> std::io::Result<()> {
    let cols = Columns::new(p);
    let mut sagemaker = vec![
        json!({"index": 0, "name": "label", "type": match p.label.kind {
            LabelKind::Exists => "label: 1 if an outcome falls in [t, t + window], else 0",
            LabelKind::Count => "label: number of outcomes in [t, t + window]",
        }}),
    ];
    let mut dropped = Vec::new();
    for (name, enc) in p.feature_names().into_iter().zip(&cols.encodings) {
        match enc {
            Encoding::Drop => dropped.push(name),
            Encoding::Numeric => {
                sagemaker.push(json!({"index": sagemaker.len(), "name": name, "type": "numeric"}))
            }
            Encoding::Hash => sagemaker.push(
                json!({"index": sagemaker.len(), "name": name, "type": "hashed_categorical",
                "hash": format!("xxh3_64(utf8 value) mod {}", cols.buckets)}),
            ),
        }
    }
    let doc = json!({
        "pipeline": p.name,
        "label": {"example_stream": p.streams[p.label.example_stream].name,
                  "outcome_stream": p.streams[p.label.outcome_stream].name,
                  "window_ms": p.label.window,
                  "kind": match p.label.kind { LabelKind::Exists => "exists", LabelKind::Count => "count" }},
        "sagemaker_csv": {"header": false, "missing_value": "empty field", "columns": sagemaker, "dropped": dropped},
        "full_csv": {"header": true, "columns": cols.full_header.split(',').collect::<Vec<_>>()},
        "partitioning": "dt=YYYY-MM-DD/hour=HH of the example time (UTC)",
    });
    std::fs::create_dir_all(dir)?;
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    std::fs::write(dir.join("schema.json"), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns hashing, dropping and reading text as a number.
    fn columns() -> Columns {
        Columns {
            encodings: vec![Encoding::Hash, Encoding::Drop, Encoding::Numeric],
            buckets: 1_000,
            full_header: String::new(),
        }
    }

    #[test]
    fn repeated_text_renders_as_the_columns_do_each_time() {
        let columns = columns();
        let mut cells = RepeatedCells::default();
        let texts = [
            "site1.example",
            "a,b \"quoted\"",
            "",
            "12.5",
            "a.category.longer.than.sixteen.bytes",
            "site1.example",
        ];
        for round in 0..2 {
            for column in 0..3 {
                for (ix, text) in texts.iter().enumerate() {
                    let v = ValueRef::Str(text);
                    let (mut full, mut sagemaker) = (String::from("x"), String::from("y"));
                    let (mut want_full, mut want_sagemaker) = (full.clone(), sagemaker.clone());
                    // Dictionary indexes past the memo's bound are rendered directly.
                    let ix = if ix == texts.len() - 1 {
                        MAX_TEXT_CELLS
                    } else {
                        ix as u32
                    };
                    cells.cell(&columns, column, (v, Some(ix)), &mut full, &mut sagemaker);
                    columns.cell(column, v, &mut want_full, &mut want_sagemaker);
                    assert_eq!(
                        (full, sagemaker),
                        (want_full, want_sagemaker),
                        "round {round}"
                    );
                }
            }
        }
    }

    #[test]
    fn repeated_numbers_render_as_the_columns_do_each_time() {
        let columns = columns();
        let mut cells = RepeatedCells::default();
        // -0.0 prints "-0" and must not take 0's cell; 1023.5 and 1024 are rendered directly.
        let numbers = [
            0.0, -0.0, 1.0, 23.0, 1023.0, 1023.5, 1024.0, -1.0, 0.0, -0.0,
        ];
        for round in 0..2 {
            for column in 0..3 {
                for n in numbers {
                    let v = ValueRef::Num(n);
                    let (mut full, mut sagemaker) = (String::from("x"), String::from("y"));
                    let (mut want_full, mut want_sagemaker) = (full.clone(), sagemaker.clone());
                    cells.cell(&columns, column, (v, None), &mut full, &mut sagemaker);
                    columns.cell(column, v, &mut want_full, &mut want_sagemaker);
                    assert_eq!(
                        (full, sagemaker),
                        (want_full, want_sagemaker),
                        "round {round}, {n:?}"
                    );
                }
            }
        }
    }
}
