//! Records that flow through the dataflow: parsed events and their field values.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::prefetch::{lines, prefetch};
use crate::time::Time;

/// A field value as the pipeline uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Value {
    /// Absent, null or empty.
    #[default]
    Missing,
    /// A number (aggregated fields, numeric features).
    Num(f64),
    /// Text (keys, categories, user agents).
    Str(CompactString),
}

impl Value {
    /// The number, if this is one or is text that reads as one.
    pub fn as_num(&self) -> Option<f64> {
        self.as_ref().as_num()
    }

    /// The value borrowed.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Missing => ValueRef::Missing,
            Value::Num(n) => ValueRef::Num(*n),
            Value::Str(s) => ValueRef::Str(s),
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as JSON, for side files.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Missing => serde_json::Value::Null,
            Value::Num(n) => serde_json::json!(n),
            Value::Str(s) => serde_json::json!(s.as_str()),
        }
    }
}

/// A [`Value`] borrowed: what decoding a held example yields, without allocating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// Absent, null or empty.
    Missing,
    /// A number.
    Num(f64),
    /// Text.
    Str(&'a str),
}

impl ValueRef<'_> {
    /// The number, if this is one or is text that reads as one.
    pub fn as_num(&self) -> Option<f64> {
        match self {
            ValueRef::Num(n) => Some(*n),
            ValueRef::Str(s) => s.trim().parse().ok(),
            ValueRef::Missing => None,
        }
    }
}

/// One event of a stream, with the fields the pipeline reads (in [`crate::config::StreamSchema`] order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stream index.
    pub stream: u16,
    /// Event id (CSV row number when the source has no id column).
    pub id: CompactString,
    /// Event time.
    pub time: Time,
    /// Field values.
    pub fields: Fields,
}

/// An event's field values, inline up to [`INLINE_FIELDS`]: the reference streams carry
/// two to five fields, and a vector was an allocation per event that the worker after
/// the id exchange frees (docs/PERFORMANCE-HISTORY.md).
pub type Fields = smallvec::SmallVec<[Value; INLINE_FIELDS]>;

/// Fields an event holds without an allocation.
pub const INLINE_FIELDS: usize = 5;

impl Event {
    /// Fetches the event's field values into cache: inline, that is the event itself
    /// (events from another worker arrive cold), else their spilled block.
    pub fn prefetch_fields(&self) {
        prefetch(
            self.fields.as_ptr(),
            lines(std::mem::size_of_val(&self.fields[..])),
        );
    }

    /// Fetches the text of its long (heap) string fields into cache; reads the field values,
    /// so best after [`Event::prefetch_fields`] had time to land.
    pub fn prefetch_text(&self) {
        for v in &self.fields {
            if let Value::Str(s) = v {
                if s.is_heap_allocated() {
                    prefetch(s.as_ptr(), lines(s.len()));
                }
            }
        }
    }
}

/// A stable 64-bit hash (xxh3) for exchange routing, splits and categorical encoding.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
