//! The endpoints: tables, one profile, a batch lookup, a key's history, health and readiness.
//!
//! RocksDB reads here are short (microseconds from the block cache), so they run on the
//! async workers directly rather than through `spawn_blocking`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{ApiState, MAX_HISTORY, MAX_KEYS, MAX_TIME};
use crate::tables::{NamedRow, RowValues};
use crate::time::{Time, TimeFormat};

/// Feature values by name, in column order (`null` = missing).
pub struct Features(RowValues);

impl Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.values().len()))?;
        for (name, value) in self.0.iter() {
            map.serialize_entry(name, &value.filter(|v| v.is_finite()))?;
        }
        map.end()
    }
}

/// `GET /v1/tables/{table}/{key}`: one key's row.
#[derive(Serialize)]
pub struct Profile {
    table: String,
    key: String,
    /// The event time the row was read at (epoch ms).
    as_of: Time,
    /// The event time of the version read (its newest change at or before `as_of`).
    version_time: Time,
    features: Features,
}

/// One entry of a batch lookup, in the order of the request's keys.
#[derive(Serialize)]
pub struct LookupResult {
    key: String,
    found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<Features>,
}

/// `POST /v1/tables/{table}/lookup` answer.
#[derive(Serialize)]
pub struct LookupAnswer {
    table: String,
    results: Vec<LookupResult>,
}

/// `GET /v1/tables/{table}/{key}/history` answer.
#[derive(Serialize)]
pub struct HistoryAnswer {
    table: String,
    key: String,
    from: Time,
    to: Time,
    /// More than `limit` versions were in range; the oldest were left out.
    truncated: bool,
    versions: Vec<HistoryVersion>,
}

/// One version in a history answer.
#[derive(Serialize)]
pub struct HistoryVersion {
    version_time: Time,
    features: Features,
}

/// Query of a single read.
#[derive(Deserialize)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

/// Query of a history read.
#[derive(Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// Body of a batch lookup.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupBody {
    keys: Vec<String>,
    #[serde(default)]
    as_of: Option<serde_json::Value>,
}

/// Reads a time parameter (epoch ms or RFC 3339, like `query --as-of`).
fn parse_time(field: &str, text: &str) -> Result<Time, ApiError> {
    TimeFormat::Auto
        .parse_str(text)
        .map(|t| t.min(MAX_TIME))
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

fn json_time(field: &str, v: &serde_json::Value) -> Result<Option<Time>, ApiError> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => parse_time(field, s).map(Some),
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| ApiError::bad_request(format!("{field}: {n} is not a time")))
            .and_then(|f| {
                TimeFormat::Auto
                    .parse_number(f)
                    .map(|t| Some(t.min(MAX_TIME)))
                    .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
            }),
        other => Err(ApiError::bad_request(format!(
            "{field}: {other} is not a time; send epoch ms or an RFC 3339 string"
        ))),
    }
}

impl ApiState {
    fn check_table(&self, table: &str) -> Result<(), ApiError> {
        if self.shared.reader.schema().contains_key(table) {
            return Ok(());
        }
        let known: Vec<&String> = self.shared.reader.schema().keys().collect();
        Err(ApiError::not_found(format!(
            "no table {table:?}; tables: {known:?}"
        )))
    }

    /// A key's row as of `as_of`, or as of "current" (see [`super::Shared::current`]).
    fn read(
        &self,
        table: &str,
        key: &str,
        as_of: Option<Time>,
    ) -> Result<Option<(Time, NamedRow)>, ApiError> {
        let reader = &self.shared.reader;
        let read = match as_of.or_else(|| self.shared.current()) {
            Some(t) => reader.get(table, key, t).map(|r| r.map(|row| (t, row))),
            None => reader.latest(table, key).map(|r| r.map(|row| (row.0, row))),
        };
        read.map_err(|e| ApiError::internal(format!("reading table {table:?}: {e:#}")))
    }
}

/// `GET /v1/tables`.
pub async fn tables(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let tables: Vec<serde_json::Value> = state
        .shared
        .reader
        .schema()
        .iter()
        .map(|(name, specs)| {
            let columns: Vec<&str> = specs.iter().map(|f| f.name.as_str()).collect();
            serde_json::json!({ "name": name, "columns": columns })
        })
        .collect();
    Json(serde_json::json!({ "tables": tables }))
}

/// `GET /v1/tables/{table}/{key}?as_of=`.
pub async fn profile(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<Profile>, ApiError> {
    let Path((table, key)) = path?;
    profile_of(state, table, key, query)
}

/// `GET /v1/tables/{table}/lookup`: the profile of a key named `lookup` (the path of the
/// batch route, which only takes POST).
pub async fn profile_of_lookup(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<Profile>, ApiError> {
    let Path(table) = path?;
    profile_of(state, table, "lookup".into(), query)
}

fn profile_of(
    state: ApiState,
    table: String,
    key: String,
    query: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<Profile>, ApiError> {
    let Query(q) = query?;
    state.check_table(&table)?;
    let as_of = q
        .as_of
        .as_deref()
        .map(|s| parse_time("as_of", s))
        .transpose()?;
    match state.read(&table, &key, as_of)? {
        Some((as_of, (version_time, values))) => Ok(Json(Profile {
            table,
            key,
            as_of,
            version_time,
            features: Features(values),
        })),
        None => Err(ApiError::not_found(format!(
            "no row for key {key:?} in table {table:?}{}",
            as_of.map_or(String::new(), |t| format!(
                " as of {}",
                crate::time::display(t)
            ))
        ))),
    }
}

/// `POST /v1/tables/{table}/lookup` with `{"keys": [...], "as_of": ...}`.
pub async fn lookup(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<LookupBody>, JsonRejection>,
) -> Result<Json<LookupAnswer>, ApiError> {
    let Path(table) = path?;
    state.check_table(&table)?;
    let Json(body) = body?;
    if body.keys.len() > MAX_KEYS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_keys",
            format!(
                "keys: {} keys; send at most {MAX_KEYS} per request",
                body.keys.len()
            ),
        ));
    }
    let as_of = match &body.as_of {
        Some(v) => json_time("as_of", v)?,
        None => None,
    };
    let mut results = Vec::with_capacity(body.keys.len());
    for key in body.keys {
        results.push(match state.read(&table, &key, as_of)? {
            Some((as_of, (version_time, values))) => LookupResult {
                key,
                found: true,
                as_of: Some(as_of),
                version_time: Some(version_time),
                features: Some(Features(values)),
            },
            None => LookupResult {
                key,
                found: false,
                as_of: None,
                version_time: None,
                features: None,
            },
        });
    }
    Ok(Json(LookupAnswer { table, results }))
}

/// `GET /v1/tables/{table}/{key}/history?from=&to=&limit=`.
pub async fn history(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let Path((table, key)) = path?;
    let Query(q) = query?;
    state.check_table(&table)?;
    let from = q
        .from
        .as_deref()
        .map(|s| parse_time("from", s))
        .transpose()?
        .unwrap_or(0);
    let to = match q.to.as_deref() {
        Some(s) => parse_time("to", s)?,
        None => state.shared.current().unwrap_or(MAX_TIME),
    };
    if from > to {
        return Err(ApiError::bad_request(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    let limit = match q.limit.as_deref() {
        None => 1_000,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_HISTORY).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit: {s:?} is not a number in 1..={MAX_HISTORY}"
                )))
            }
        },
    };
    let mut versions = state
        .shared
        .reader
        .history(&table, &key, (from, to), limit + 1)
        .map_err(|e| ApiError::internal(format!("reading table {table:?}: {e:#}")))?;
    let truncated = versions.len() > limit;
    if truncated {
        versions.remove(0); // the one past the limit, oldest
    }
    let versions: Vec<HistoryVersion> = versions
        .into_iter()
        .map(|(version_time, values)| HistoryVersion {
            version_time,
            features: Features(values),
        })
        .collect();
    Ok(Json(HistoryAnswer {
        table,
        key,
        from,
        to,
        truncated,
        versions,
    }))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when ready, 503 while catching up (see [`super::Shared::readiness`]).
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let (ready, message) = state.shared.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": ready, "message": message })),
    )
        .into_response()
}

/// Any path the API does not serve.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {}; see docs/API.md", uri.path()))
}

/// A known path with the wrong method.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served on {}; see docs/API.md", uri.path()),
    )
}
