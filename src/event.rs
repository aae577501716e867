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
/// the id exchange frees (docs/PERFORMANCE.md).
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

/// Writes a number as Rust's `Display` does (`3`, `0.25`), integers through a fast path:
/// most features are counts.
pub fn write_num(n: f64, out: &mut String) {
    // `n as i64 as f64 == n` is the integer test without `f64::fract`, which is a libm
    // call (`trunc`) on x86-64 without SSE4.1.
    let i = n as i64;
    if i as f64 == n && n.abs() < 1e15 && !(n == 0.0 && n.is_sign_negative()) {
        out.push_str(itoa::Buffer::new().format(i));
    } else if let Some(m) = ten_thousandths(n) {
        // Seconds from milliseconds, scores with few decimals: the digits of `m / 10^4`
        // without trailing zeros are the shortest that read back as `n` (below 1e8 two
        // such decimals are always different numbers), which is what Display prints.
        out.push_str(itoa::Buffer::new().format(m / 10_000));
        let mut frac = m % 10_000;
        let mut digits = 4;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        out.push('.');
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(frac);
        out.extend(std::iter::repeat_n('0', digits - text.len()));
        out.push_str(text);
    } else if (1e-5..1e7).contains(&n.abs()) {
        // zmij (Ryū's successor, the same shortest digits, ~1.6x faster on ratios here)
        // prints what Display does in this range. (Not above: with 17 significant digits
        // the two can pick different last digits, e.g. 117156579416960.12 against
        // Display's ...60.13.)
        out.push_str(zmij::Buffer::new().format_finite(n));
    } else {
        use std::fmt::Write;
        write!(out, "{n}").unwrap();
    }
}

/// `m` if a positive, non-integer `n` below 1e8 is exactly the double nearest `m / 10^4`.
fn ten_thousandths(n: f64) -> Option<u64> {
    if !(n > 0.0 && n < 1e8) {
        return None;
    }
    let m = (n * 10_000.0 + 0.5) as u64;
    (!m.is_multiple_of(10_000) && m as f64 / 10_000.0 == n).then_some(m)
}

/// A stable 64-bit hash (xxh3) for exchange routing, splits and categorical encoding.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_display_does() {
        for n in [
            0.0,
            3.0,
            -7.0,
            0.1,
            0.06060606060606061,
            567.267,
            1e-5,
            1.5e-5,
            123456.789,
            -0.25,
            1e-7,
            2e20,
            f64::NAN,
            0.0414,
            0.0001,
            0.001,
            99_999_999.999_9,
            12.05,
            1.0001,
        ] {
            let mut s = String::new();
            write_num(n, &mut s);
            assert_eq!(s, format!("{n}"), "{n:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn few_decimal_numbers_print_as_display_does(m in 0u64..2_000_000_000_000, k in 0u32..6) {
            let n = m as f64 / 10f64.powi(k as i32);
            let mut s = String::new();
            write_num(n, &mut s);
            proptest::prop_assert_eq!(s, format!("{n}"));
        }

        #[test]
        fn numbers_of_feature_size_print_as_display_does(n in 1e-6f64..2e7) {
            let mut s = String::new();
            write_num(n, &mut s);
            proptest::prop_assert_eq!(s, format!("{n}"));
        }

        #[test]
        fn any_number_prints_as_display_does(n in proptest::num::f64::ANY) {
            let mut s = String::new();
            write_num(n, &mut s);
            proptest::prop_assert_eq!(s, format!("{n}"));
        }
    }
}
