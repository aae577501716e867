//! Lookup tables: versioned, time-travel key -> row stores in RocksDB, and their snapshots.

pub mod bench;
pub mod ingest;
pub mod keys;
pub mod options;
pub mod pack;
pub mod retention;
pub mod row;
pub mod snapshot;
pub mod store;

pub use store::{StoreError, TableStore, Version};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{FeatureSpec, Pipeline};
use crate::time::Time;

/// File in a state directory naming every table's columns, so reads need no pipeline file.
const SCHEMA: &str = "tables.json";

/// Writes the tables' column specs into a state directory. A state written by a pipeline
/// whose table of the same name had other columns is refused: its rows would decode wrong.
pub fn write_schema(state: &Path, pipeline: &Pipeline) -> anyhow::Result<()> {
    let schema: BTreeMap<&str, &[FeatureSpec]> = pipeline
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.features.as_slice()))
        .collect();
    let mut doc = serde_json::to_value(&schema)?;
    let path = state.join(SCHEMA);
    if let Ok(text) = std::fs::read(&path) {
        let old: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&text)?;
        for (table, columns) in &old {
            match doc.get(table) {
                Some(new) if new != columns => anyhow::bail!(
                    "state directory {} holds table {table:?} with other columns than pipeline {:?} declares; use a new --state directory (or remove this one to rebuild it)",
                    state.display(),
                    pipeline.name
                ),
                Some(_) => {}
                // Keep the columns of tables this pipeline no longer declares readable.
                None => {
                    doc[table] = columns.clone();
                }
            }
        }
    }
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}

/// The latest time a read may ask for: later `as_of` values read as this (reads compute
/// `as_of + 1`, and `Time::MAX` stands for "inputs ended").
pub const LATEST: Time = Time::MAX - 2;

/// A decoded row: the time of the version it comes from, and each feature by name.
pub type NamedRow = (Time, RowValues);

/// A decoded row's feature values in column order, with its table's feature names (one
/// list per table, shared by every row read, not copied per row).
#[derive(Debug, Clone, PartialEq)]
pub struct RowValues {
    names: Arc<[String]>,
    values: Vec<Option<f64>>,
}

impl RowValues {
    /// Each feature's name and value (`None`: missing), in column order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<f64>)> + '_ {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().copied())
    }

    /// The values alone, in column order.
    pub fn values(&self) -> &[Option<f64>] {
        &self.values
    }
}

/// Reads one table of a state (or snapshot) directory: its versions decoded to named
/// feature values, as of `as_of` (or each version's own time for history).
pub struct TableReader {
    store: Arc<TableStore>,
    schema: BTreeMap<String, Vec<FeatureSpec>>,
    /// Per table: its feature names, shared by the rows read.
    names: BTreeMap<String, Arc<[String]>>,
}

impl TableReader {
    /// Opens a state or snapshot directory read-only.
    pub fn open(dir: &Path) -> anyhow::Result<TableReader> {
        Self::with_store(Arc::new(TableStore::open_read_only(dir)?), dir)
    }

    /// Reads through an already open store (a running job's, or a secondary instance),
    /// with the schema of the state directory `dir`.
    pub fn with_store(store: Arc<TableStore>, dir: &Path) -> anyhow::Result<TableReader> {
        let text = std::fs::read(dir.join(SCHEMA)).map_err(|e| {
            anyhow::anyhow!(
                "{}: no {SCHEMA} ({e}); was this state written by `run --state`?",
                dir.display()
            )
        })?;
        let schema: BTreeMap<String, Vec<FeatureSpec>> = serde_json::from_slice(&text)?;
        let names = schema
            .iter()
            .map(|(t, specs)| (t.clone(), specs.iter().map(|f| f.name.clone()).collect()))
            .collect();
        Ok(TableReader {
            store,
            schema,
            names,
        })
    }

    /// The store read from.
    pub fn store(&self) -> &TableStore {
        &self.store
    }

    /// Every table and its columns, by table name.
    pub fn schema(&self) -> &BTreeMap<String, Vec<FeatureSpec>> {
        &self.schema
    }

    fn specs(&self, table: &str) -> anyhow::Result<&[FeatureSpec]> {
        self.schema.get(table).map(Vec::as_slice).ok_or_else(|| {
            let known: Vec<&String> = self.schema.keys().collect();
            anyhow::anyhow!("no table {table:?}; tables: {known:?}")
        })
    }

    /// The row of `key` after all events `<= as_of`, with the version time it comes from.
    pub fn get(&self, table: &str, key: &str, as_of: Time) -> anyhow::Result<Option<NamedRow>> {
        let specs = self.specs(table)?;
        // The version as of `as_of` and, in the same pass, those its windows subtract.
        let windows = row::windows_at(specs, as_of);
        let times: Vec<Time> = std::iter::once(as_of)
            .chain(windows.iter().map(|w| as_of - w))
            .collect();
        let mut found = self
            .store
            .get_at(table, key.as_bytes(), &times)?
            .into_iter();
        let Some((t, bytes)) = found.next().flatten() else {
            return Ok(None);
        };
        let values = decode_row(specs, &bytes, as_of, windows, found);
        Ok(Some((t, self.named(table, values))))
    }

    /// The newest version of `key`, read at its own time (a finished or quiet state's
    /// current row).
    pub fn latest(&self, table: &str, key: &str) -> anyhow::Result<Option<NamedRow>> {
        let specs = self.specs(table)?;
        match self.store.get(table, key.as_bytes(), LATEST)? {
            Some((t, bytes)) => Ok(Some((t, self.decode(table, specs, key, &bytes, t)?))),
            None => Ok(None),
        }
    }

    /// The newest `limit` versions of `key` in `[from, to]`, oldest first, each read at its
    /// own time.
    pub fn history(
        &self,
        table: &str,
        key: &str,
        (from, to): (Time, Time),
        limit: usize,
    ) -> anyhow::Result<Vec<NamedRow>> {
        let specs = self.specs(table)?;
        let versions = self
            .store
            .newest_versions(table, key.as_bytes(), from, to, limit)?;
        versions
            .into_iter()
            .map(|(t, bytes)| Ok((t, self.decode(table, specs, key, &bytes, t)?)))
            .collect()
    }

    /// Decodes a version of `key` read `as_of`, with the earlier versions its sliding
    /// windows subtract (see [`row`]).
    fn decode(
        &self,
        table: &str,
        specs: &[FeatureSpec],
        key: &str,
        bytes: &[u8],
        as_of: Time,
    ) -> anyhow::Result<RowValues> {
        let windows = row::windows_at(specs, as_of);
        let times: Vec<Time> = windows.iter().map(|w| as_of - w).collect();
        let found = self.store.get_at(table, key.as_bytes(), &times)?;
        let values = decode_row(specs, bytes, as_of, windows, found);
        Ok(self.named(table, values))
    }

    /// `values` of a row of `table` with the table's feature names.
    fn named(&self, table: &str, values: Vec<Option<f64>>) -> RowValues {
        RowValues {
            names: self.names[table].clone(),
            values,
        }
    }
}

/// Decodes a row read `as_of`, given the version found one window earlier for each of
/// `windows` ([`row::windows_at`]).
fn decode_row(
    specs: &[FeatureSpec],
    bytes: &[u8],
    as_of: Time,
    windows: Vec<Time>,
    found: impl IntoIterator<Item = Option<Version>>,
) -> Vec<Option<f64>> {
    let earlier: Vec<(Time, Option<Vec<u8>>)> = windows
        .into_iter()
        .zip(found.into_iter().map(|v| v.map(|v| v.1)))
        .collect();
    let before = |w: Time| {
        earlier
            .iter()
            .find(|(window, _)| *window == w)
            .and_then(|(_, row)| row.as_deref())
    };
    row::decode(specs, bytes, as_of, before)
}
