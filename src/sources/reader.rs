//! Reads one file partition (JSON lines or CSV, optionally gzip) into typed events.

use std::io::{BufReader, Read};

use compact_str::{CompactString, ToCompactString};

use super::json::{extract, Raw};
use super::lines::Lines;
use super::texts::Texts;
use super::PartitionSpec;
use crate::config::{FieldSpec, Format, Pipeline, SourceSpec};
use crate::event::{Event, Fields, Value};

/// A record that could not be read: where it was and why (goes to the dead-letter sink).
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Line (JSONL) or data row (CSV), 1-based, with the byte offset where known.
    pub position: String,
    /// What is wrong, naming the field.
    pub error: String,
    /// The record as read.
    pub raw: String,
}

/// What reading one record gave.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A valid event (with the record text, kept in case it turns out late).
    Event(Event, Position),
    /// A record this source skips by configuration (`skip_if_empty`).
    Skip,
    /// A malformed record.
    Bad(BadRecord),
}

/// Where a record was in its file.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    /// 1-based line (JSONL) or data row (CSV).
    pub record: u64,
}

/// Which raw slot feeds each part of an event.
struct Plan {
    names: Vec<String>,
    id: Option<usize>,
    time: usize,
    skip: Option<usize>,
    fields: Vec<(usize, FieldSpec)>,
    /// Per field: no later field reads its slot, so its text can be moved out.
    last_reader: Vec<bool>,
}

impl Plan {
    fn new(s: &SourceSpec, fields: &[FieldSpec]) -> Plan {
        let mut names: Vec<String> = Vec::new();
        let mut slot = |n: &str| match names.iter().position(|x| x == n) {
            Some(i) => i,
            None => {
                names.push(n.to_string());
                names.len() - 1
            }
        };
        let id = s.id_field.as_deref().map(&mut slot);
        let time = slot(&s.time_field);
        let skip = s.skip_if_empty.as_deref().map(&mut slot);
        let fields: Vec<(usize, FieldSpec)> =
            fields.iter().map(|f| (slot(&f.name), f.clone())).collect();
        let last_reader = (0..fields.len())
            .map(|i| fields[i + 1..].iter().all(|(s, _)| *s != fields[i].0))
            .collect();
        Plan {
            names,
            id,
            time,
            skip,
            fields,
            last_reader,
        }
    }
}

enum Body {
    Jsonl(Lines),
    Csv {
        reader: csv::Reader<Box<dyn Read>>,
        record: csv::StringRecord,
        columns: Vec<Option<usize>>,
    },
}

/// Reads one partition record by record.
pub struct PartitionReader {
    source: SourceSpec,
    stream: u16,
    plan: Plan,
    body: Body,
    raw: Vec<Raw>,
    /// Per field: its repeated long text, shared (see [`Texts`]).
    texts: Texts,
    record_no: u64,
}

/// Source `ix` of `p` and the plan of the fields it reads.
fn source_and_plan(p: &Pipeline, ix: usize) -> (SourceSpec, Plan) {
    let source = p.sources[ix].clone();
    let plan = Plan::new(&source, &p.streams[source.stream].fields);
    (source, plan)
}

impl PartitionReader {
    /// Opens a partition; a CSV header missing a needed column is an error naming it.
    pub fn open(p: &Pipeline, part: &PartitionSpec) -> anyhow::Result<PartitionReader> {
        let source = &p.sources[part.source];
        let cannot_open = |e: anyhow::Error| {
            anyhow::anyhow!(
                "source {:?}: cannot open {}: {e:#}",
                source.name,
                part.path.display()
            )
        };
        let gzip = source
            .gzip
            .unwrap_or_else(|| part.path.extension().is_some_and(|e| e == "gz"));
        if !gzip && source.format == Format::Jsonl {
            if let Some(lines) = super::map_local(&part.path).map_err(cannot_open)? {
                let (source, plan) = source_and_plan(p, part.source);
                return Ok(Self::with_body(source, plan, Body::Jsonl(lines)));
            }
        }
        let file = super::open_input(&part.path).map_err(cannot_open)?;
        Self::from_read(p, part.source, &part.path.display().to_string(), file, gzip)
    }

    /// A reader of source `source_ix` over any byte stream (e.g. Kinesis records fed as
    /// lines); `input` names it in errors. A JSONL reader does not latch its end:
    /// more lines fed later are read.
    pub fn from_read(
        p: &Pipeline,
        source_ix: usize,
        input: &str,
        file: Box<dyn Read>,
        gzip: bool,
    ) -> anyhow::Result<PartitionReader> {
        let (source, plan) = source_and_plan(p, source_ix);
        let read: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 16,
                file,
            )))
        } else {
            file
        };
        let body = match source.format {
            Format::Jsonl => Body::Jsonl(Lines::buffered(Box::new(BufReader::with_capacity(
                1 << 16,
                read,
            )))),
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(true)
                    .buffer_capacity(1 << 16)
                    .from_reader(read);
                let header = reader.headers()?.clone();
                let columns: Vec<Option<usize>> = plan
                    .names
                    .iter()
                    .map(|n| header.iter().position(|h| h.trim() == n))
                    .collect();
                for (name, col) in plan.names.iter().zip(&columns) {
                    let optional = plan
                        .fields
                        .iter()
                        .any(|(_, f)| &f.name == name && !f.required)
                        || source.skip_if_empty.as_deref() == Some(name.as_str());
                    if col.is_none() && !optional {
                        anyhow::bail!(
                            "source {:?}: {} has no column {name:?} (columns: {})",
                            source.name,
                            input,
                            header.iter().collect::<Vec<_>>().join(",")
                        );
                    }
                }
                Body::Csv {
                    reader,
                    record: csv::StringRecord::new(),
                    columns,
                }
            }
        };
        Ok(Self::with_body(source, plan, body))
    }

    fn with_body(source: SourceSpec, plan: Plan, body: Body) -> PartitionReader {
        PartitionReader {
            stream: source.stream as u16,
            raw: vec![Raw::Absent; plan.names.len()],
            texts: Texts::new(plan.names.len()),
            source,
            plan,
            body,
            record_no: 0,
        }
    }

    /// Name of the source this partition belongs to.
    pub fn source_name(&self) -> &str {
        &self.source.name
    }

    /// Reads the next record; `None` at the end of the file.
    pub fn next_record(&mut self) -> Option<ReadOutcome> {
        self.record_no += 1;
        if let Err(error) = self.read_raw()? {
            let raw = self.record_text();
            return Some(self.bad(error, raw));
        }
        if self.record_is_blank() {
            return Some(ReadOutcome::Skip);
        }
        Some(match self.take_event() {
            Ok(Some(ev)) => ReadOutcome::Event(
                ev,
                Position {
                    record: self.record_no,
                },
            ),
            Ok(None) => ReadOutcome::Skip,
            Err(e) => {
                let raw = self.record_text();
                self.bad(e, raw)
            }
        })
    }

    /// Reads the next record's wanted fields into `self.raw`; `None` at the end.
    fn read_raw(&mut self) -> Option<Result<(), String>> {
        match &mut self.body {
            Body::Jsonl(lines) => {
                if let Err(e) = lines.advance()? {
                    return Some(Err(e));
                }
                let text = lines.line();
                if super::is_blank(text) {
                    return Some(Ok(()));
                }
                let fields = extract(text, &self.plan.names, &mut self.raw, &mut self.texts);
                Some(fields.map_err(|e| format!("invalid JSON: {e}")))
            }
            Body::Csv {
                reader,
                record,
                columns,
            } => {
                match reader.read_record(record) {
                    Ok(false) => return None,
                    Ok(true) => {}
                    Err(e) => return Some(Err(format!("invalid CSV: {e}"))),
                }
                let slots = self.raw.iter_mut().zip(columns.iter()).enumerate();
                for (field, (slot, col)) in slots {
                    *slot = match col.and_then(|c| record.get(c)) {
                        Some(v) if !v.is_empty() => Raw::Str(self.texts.text(field, v)),
                        _ => Raw::Absent,
                    };
                }
                Some(Ok(()))
            }
        }
    }

    /// Whether the current record is empty or white space (skipped, not an error).
    fn record_is_blank(&self) -> bool {
        match &self.body {
            Body::Jsonl(lines) => super::is_blank(lines.line()),
            // As its text (fields joined by commas) would be: a row of empty fields is
            // not blank, it goes to the dead-letter file.
            Body::Csv { record, .. } => record.len() <= 1 && record.iter().all(super::is_blank),
        }
    }

    /// The current record as text, for dead-letter and late files.
    pub fn record_text(&self) -> String {
        match &self.body {
            Body::Jsonl(lines) => lines.text().into_owned(),
            Body::Csv { record, .. } => record.iter().collect::<Vec<_>>().join(","),
        }
    }

    fn bad(&self, error: String, raw: String) -> ReadOutcome {
        ReadOutcome::Bad(BadRecord {
            position: self.position_text(),
            error,
            raw,
        })
    }

    fn position_text(&self) -> String {
        match &self.body {
            Body::Jsonl(_) => format!("line {}", self.record_no),
            Body::Csv { record, .. } => match record.position() {
                Some(p) => format!(
                    "row {} (line {}, byte {})",
                    self.record_no,
                    p.line(),
                    p.byte()
                ),
                None => format!("row {}", self.record_no),
            },
        }
    }

    /// The event of the current record's fields (moved out of them); `None` to skip it.
    fn take_event(&mut self) -> Result<Option<Event>, String> {
        let plan = &self.plan;
        if let Some(skip) = plan.skip {
            if self.raw[skip].is_empty() {
                return Ok(None);
            }
        }
        let id: CompactString = match plan.id {
            Some(slot) => self.raw[slot]
                .text()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    format!("field {:?} (the id) is missing or empty", plan.names[slot])
                })?,
            None => self.record_no.to_compact_string(),
        };
        let time_name = &plan.names[plan.time];
        let time = match &self.raw[plan.time] {
            Raw::Num(n) => self.source.time_format.parse_number(*n),
            Raw::Str(s) => self.source.time_format.parse_str(s),
            _ => Err("it is missing".to_string()),
        }
        .map_err(|e| format!("field {time_name:?} (the time): {e}"))?;
        let mut fields = Fields::with_capacity(plan.fields.len());
        for ((slot, spec), &last) in plan.fields.iter().zip(&plan.last_reader) {
            let raw = &mut self.raw[*slot];
            let value = if raw.is_empty() {
                Value::Missing
            } else if spec.numeric {
                match raw {
                    Raw::Num(n) => Value::Num(*n),
                    Raw::Str(s) => Value::Num(s.trim().parse::<f64>().map_err(|_| {
                        format!("field {:?}: expected a number, got {s:?}", spec.name)
                    })?),
                    Raw::Bool(b) => Value::Num(if *b { 1.0 } else { 0.0 }),
                    _ => return Err(format!("field {:?}: expected a number", spec.name)),
                }
            } else {
                let text = if last { raw.take_text() } else { raw.text() };
                match text {
                    Some(s) if spec.check_numeric && s.trim().parse::<f64>().is_err() => {
                        return Err(format!(
                            "field {:?}: expected a number, got {s:?}",
                            spec.name
                        ))
                    }
                    Some(s) => Value::Str(s),
                    None => {
                        return Err(format!(
                            "field {:?}: expected text or a number, got an object or array",
                            spec.name
                        ))
                    }
                }
            };
            if spec.required && value == Value::Missing {
                return Err(format!(
                    "field {:?} is required (a key or join field) but missing",
                    spec.name
                ));
            }
            fields.push(value);
        }
        Ok(Some(Event {
            stream: self.stream,
            id,
            time,
            fields,
        }))
    }
}
