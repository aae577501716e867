//! Turns a parsed pipeline file into a [`Pipeline`], rejecting mistakes by field name.

use std::path::Path;

use super::*;

/// Collects errors' context and the fields each stream must carry.
struct Checker<'a> {
    path: &'a str,
    streams: Vec<StreamSchema>,
}

impl Checker<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn stream(&self, name: &str, at: &str) -> Result<usize, ConfigError> {
        self.streams
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| {
                let known: Vec<_> = self.streams.iter().map(|s| s.name.as_str()).collect();
                self.err(
                    at,
                    format!(
                        "unknown stream {name:?}; streams come from [[sources]].stream: {known:?}"
                    ),
                )
            })
    }

    /// Registers that `stream` events carry `name`, returning its index.
    fn field(
        &mut self,
        stream: usize,
        name: &str,
        numeric: bool,
        required: bool,
        at: &str,
    ) -> Result<FieldIx, ConfigError> {
        if name == "_id" {
            return Err(self.err(
                at,
                "`_id` is only allowed as label.outcome_key; name a record field",
            ));
        }
        let fields = &mut self.streams[stream].fields;
        if let Some(ix) = fields.iter().position(|f| f.name == name) {
            let f = &mut fields[ix];
            if f.numeric != numeric {
                // Used both as text and as a number: keep the text, insist that it parses.
                f.numeric = false;
                f.check_numeric = true;
            }
            f.required |= required;
            return Ok(ix);
        }
        fields.push(FieldSpec {
            name: name.to_string(),
            numeric,
            check_numeric: false,
            required,
        });
        Ok(fields.len() - 1)
    }
}

pub(super) fn validate(
    file: PipelineFile,
    path: &str,
    base_dir: &Path,
) -> Result<Pipeline, ConfigError> {
    let mut c = Checker {
        path,
        streams: Vec::new(),
    };
    if file.name.trim().is_empty() {
        return Err(c.err("name", "give the pipeline a name"));
    }
    let max_out_of_orderness = duration(
        &file.time.max_out_of_orderness,
        path,
        "time.max_out_of_orderness",
    )?;
    let idle_timeout = duration(&file.time.idle_timeout, path, "time.idle_timeout")?;
    let read_ahead = duration(&file.time.read_ahead, path, "time.read_ahead")?;

    // Streams are named by the sources that feed them.
    if file.sources.is_empty() {
        return Err(c.err("sources", "declare at least one [[sources]] entry"));
    }
    for s in &file.sources {
        if !c.streams.iter().any(|x| x.name == s.stream) {
            c.streams.push(StreamSchema {
                name: s.stream.clone(),
                fields: Vec::new(),
            });
        }
    }
    let mut sources = Vec::new();
    for (i, s) in file.sources.iter().enumerate() {
        let at = |f: &str| format!("sources[{i}].{f}");
        if sources.iter().any(|x: &SourceSpec| x.name == s.name) {
            return Err(c.err(
                at("name"),
                format!("source name {:?} is used twice", s.name),
            ));
        }
        let format = match s.format.as_str() {
            "jsonl" | "json" => Format::Jsonl,
            "csv" => Format::Csv,
            other => {
                return Err(c.err(
                    at("format"),
                    format!("unknown format {other:?}; use \"jsonl\" or \"csv\""),
                ))
            }
        };
        if format == Format::Jsonl && s.id_field.is_none() {
            return Err(c.err(
                at("id_field"),
                "JSON sources need an id field (used for duplicates and joins)",
            ));
        }
        if s.path.trim().is_empty() {
            return Err(c.err(at("path"), "give a file path or glob"));
        }
        sources.push(SourceSpec {
            name: s.name.clone(),
            stream: c.stream(&s.stream, &at("stream"))?,
            pattern: match (
                crate::aws::s3::S3Url::parse(&s.path),
                crate::sources::kinesis::KinesisSpec::parse(&s.path),
            ) {
                (Some(Err(e)), _) | (_, Some(Err(e))) => {
                    return Err(c.err(at("path"), format!("{e:#}")))
                }
                // An S3 prefix or a Kinesis stream: not a local path.
                (Some(Ok(_)), _) | (_, Some(Ok(_))) => s.path.clone().into(),
                (None, None) => base_dir.join(&s.path),
            },
            format,
            gzip: s.gzip,
            id_field: s.id_field.clone(),
            time_field: s.time_field.clone(),
            time_format: TimeFormat::from_setting(&s.time_format),
            skip_if_empty: s.skip_if_empty.clone(),
        });
    }

    // Label.
    let l = &file.label;
    let example_stream = c.stream(&l.example_stream, "label.example_stream")?;
    let outcome_stream = c.stream(&l.outcome_stream, "label.outcome_stream")?;
    if example_stream == outcome_stream {
        return Err(c.err(
            "label.outcome_stream",
            "examples and outcomes must be different streams",
        ));
    }
    let outcome_key = match l.outcome_key.as_str() {
        "_id" => FieldRef::Id,
        name => FieldRef::Field(c.field(outcome_stream, name, false, true, "label.outcome_key")?),
    };
    let window = duration(&l.window, path, "label.window")?;
    if window == 0 {
        return Err(c.err("label.window", "the label window must be longer than 0 ms"));
    }
    let kind = match l.kind.as_str() {
        "exists" => LabelKind::Exists,
        "count" => LabelKind::Count,
        other => {
            return Err(c.err(
                "label.kind",
                format!("unknown label kind {other:?}; use \"exists\" or \"count\""),
            ))
        }
    };
    let label = LabelSpec {
        example_stream,
        outcome_stream,
        outcome_key,
        window,
        kind,
        outcome_lookback: duration(&l.outcome_lookback, path, "label.outcome_lookback")?,
    };

    let event_features = event_features(&mut c, &file.event_features, example_stream)?;
    let tables = tables(&mut c, &file.tables, example_stream)?;

    // Column names must be unique and not collide with the fixed columns.
    let mut seen: Vec<&str> = vec!["example_id", "event_time", "label", "outcome_count"];
    let names = event_features.iter().map(|f| f.name.as_str()).chain(
        tables
            .iter()
            .flat_map(|t| t.features.iter().map(|f| f.name.as_str())),
    );
    for name in names {
        if seen.contains(&name) {
            return Err(c.err(
                "event_features/tables.features.name",
                format!("column name {name:?} is used twice (or is a fixed column)"),
            ));
        }
        seen.push(name);
    }

    let o = &file.output;
    if !(0.0..1.0).contains(&o.validation_fraction) {
        return Err(c.err("output.validation_fraction", "must be in [0, 1), e.g. 0.1"));
    }
    if o.hash_buckets < 2 {
        return Err(c.err(
            "output.hash_buckets",
            "must be at least 2; 16777216 keeps hashes exact in float32",
        ));
    }
    let dir = o.dir.strip_prefix("file://").unwrap_or(&o.dir);
    if let Some(Err(e)) = crate::aws::s3::S3Url::parse(dir) {
        return Err(c.err("output.dir", e.to_string()));
    }
    let snapshot_every = match &file.state.snapshot_every {
        Some(every) => match duration(every, path, "state.snapshot_every")? {
            0 => {
                return Err(c.err(
                    "state.snapshot_every",
                    "must be longer than 0 ms, e.g. \"1h\"",
                ))
            }
            every => Some(every),
        },
        None => None,
    };
    if file.state.dir.is_empty() {
        return Err(c.err("state.dir", "must name a directory, e.g. \"state\""));
    }
    for (i, t) in file.api.tokens.iter().enumerate() {
        if t.len() < 16 || t.chars().any(|ch| ch.is_whitespace() || ch == ',') {
            return Err(c.err(
                format!("api.tokens[{i}]"),
                "a token needs at least 16 characters, no spaces or commas; e.g. `openssl rand -hex 32`",
            ));
        }
    }
    Ok(Pipeline {
        name: file.name,
        max_out_of_orderness,
        idle_timeout,
        read_ahead,
        streams: c.streams,
        sources,
        label,
        event_features,
        tables,
        output: OutputSpec {
            dir: dir.into(),
            validation_fraction: o.validation_fraction,
            hash_buckets: o.hash_buckets,
        },
        state: StateSpec {
            dir: file.state.dir.clone().into(),
            snapshot_every,
        },
        api_tokens: file.api.tokens.clone(),
    })
}

fn event_features(
    c: &mut Checker,
    list: &[EventFeatureFile],
    example: usize,
) -> Result<Vec<EventFeature>, ConfigError> {
    let mut out = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let at = |x: &str| format!("event_features[{i}].{x}");
        let field = |c: &mut Checker, numeric: bool| match &f.field {
            Some(name) => c.field(example, name, numeric, false, &at("field")),
            None => Err(c.err(
                at("field"),
                "this feature reads a field of the example; add field = \"...\"",
            )),
        };
        let encoding = match f.encoding.as_deref() {
            None => None,
            Some("hash") => Some(Encoding::Hash),
            Some("numeric") => Some(Encoding::Numeric),
            Some("drop") => Some(Encoding::Drop),
            Some(other) => {
                return Err(c.err(
                    at("encoding"),
                    format!("unknown encoding {other:?}; use \"hash\", \"numeric\" or \"drop\""),
                ))
            }
        };
        let (kind, default_encoding) = match f.derive.as_deref() {
            None => {
                let numeric = encoding == Some(Encoding::Numeric);
                (EventFeatureKind::Raw(field(c, numeric)?), Encoding::Hash)
            }
            Some("hour_of_day") => (EventFeatureKind::HourOfDay, Encoding::Numeric),
            Some("day_of_week") => (EventFeatureKind::DayOfWeek, Encoding::Numeric),
            Some("device_class") => (EventFeatureKind::DeviceClass(field(c, false)?), Encoding::Hash),
            Some("is_bot") => (EventFeatureKind::IsBot(field(c, false)?), Encoding::Numeric),
            Some(other) => {
                return Err(c.err(
                    at("derive"),
                    format!("unknown derived feature {other:?}; use hour_of_day, day_of_week, device_class or is_bot"),
                ))
            }
        };
        out.push(EventFeature {
            name: f.name.clone(),
            kind,
            encoding: encoding.unwrap_or(default_encoding),
        });
    }
    Ok(out)
}

fn tables(
    c: &mut Checker,
    list: &[TableFile],
    example: usize,
) -> Result<Vec<TableSpec>, ConfigError> {
    let mut out = Vec::new();
    for (ti, t) in list.iter().enumerate() {
        let at = |x: &str| format!("tables[{ti}].{x}");
        if t.key.is_empty() {
            return Err(c.err(at("key"), "a table needs at least one key field"));
        }
        if out.iter().any(|x: &TableSpec| x.name == t.name) {
            return Err(c.err(at("name"), format!("table name {:?} is used twice", t.name)));
        }
        let mut key_fields = vec![None; c.streams.len()];
        let mut features = Vec::new();
        for (fi, f) in t.features.iter().enumerate() {
            let at = |x: &str| format!("tables[{ti}].features[{fi}].{x}");
            let agg = match f.agg.as_str() {
                "count" => Agg::Count,
                "sum" => Agg::Sum,
                "mean" => Agg::Mean,
                "min" => Agg::Min,
                "max" => Agg::Max,
                "last" => Agg::Last,
                "distinct_count" => Agg::DistinctCount,
                "time_since_last" => Agg::TimeSinceLast,
                "ratio" => Agg::Ratio,
                other => {
                    return Err(c.err(
                        at("agg"),
                        format!("unknown aggregation {other:?}; use count, sum, mean, min, max, last, distinct_count, time_since_last or ratio"),
                    ))
                }
            };
            let window = match f.window.as_deref() {
                None | Some("lifetime") => None,
                Some(w) => Some(duration(w, c.path, &at("window"))?),
            };
            if agg == Agg::Ratio {
                let operand = |name: &Option<String>, which: &str| -> Result<usize, ConfigError> {
                    let name = name.as_ref().ok_or_else(|| {
                        c.err(
                            at(which),
                            format!("ratio needs {which} = \"<feature of this table>\""),
                        )
                    })?;
                    t.features
                        .iter()
                        .position(|g| &g.name == name && g.agg != "ratio")
                        .ok_or_else(|| {
                            c.err(
                                at(which),
                                format!(
                                    "{name:?} is not a non-ratio feature of table {:?}",
                                    t.name
                                ),
                            )
                        })
                };
                let num = operand(&f.numerator, "numerator")?;
                let den = operand(&f.denominator, "denominator")?;
                features.push(FeatureSpec {
                    name: f.name.clone(),
                    agg,
                    stream: example,
                    field: None,
                    window: None,
                    ratio: Some((num, den, f.prior.unwrap_or(0.0), f.strength.unwrap_or(0.0))),
                });
                continue;
            }
            let stream_name = f
                .stream
                .as_ref()
                .ok_or_else(|| c.err(at("stream"), "name the stream this aggregates"))?;
            let stream = c.stream(stream_name, &at("stream"))?;
            let takes_field = !matches!(agg, Agg::Count | Agg::TimeSinceLast);
            let field = match (&f.field, takes_field) {
                (Some(name), true) => {
                    Some(c.field(stream, name, agg != Agg::DistinctCount, false, &at("field"))?)
                }
                (None, true) => {
                    return Err(c.err(at("field"), format!("{} needs field = \"...\"", f.agg)))
                }
                (Some(_), false) => {
                    return Err(c.err(at("field"), format!("{} takes no field; remove it", f.agg)))
                }
                (None, false) => None,
            };
            if window.is_some() && matches!(agg, Agg::TimeSinceLast) {
                return Err(c.err(at("window"), "time_since_last has no window; remove it"));
            }
            if key_fields[stream].is_none() {
                key_fields[stream] = Some(keys(c, stream, &t.key, &at("stream"))?);
            }
            features.push(FeatureSpec {
                name: f.name.clone(),
                agg,
                stream,
                field,
                window,
                ratio: None,
            });
        }
        if features.is_empty() {
            return Err(c.err(at("features"), "a table needs at least one feature"));
        }
        if key_fields[example].is_none() {
            key_fields[example] = Some(keys(c, example, &t.key, &at("key"))?);
        }
        let retention = match &t.retention {
            Some(r) => Some(duration(r, c.path, &at("retention"))?),
            None => None,
        };
        out.push(TableSpec {
            name: t.name.clone(),
            key_names: t.key.clone(),
            key_fields,
            features,
            retention,
        });
    }
    Ok(out)
}

fn keys(
    c: &mut Checker,
    stream: usize,
    names: &[String],
    at: &str,
) -> Result<Vec<FieldIx>, ConfigError> {
    names
        .iter()
        .map(|k| c.field(stream, k, false, true, at))
        .collect()
}
