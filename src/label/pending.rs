//! Compact bytes of an example waiting for its label: its features, encoded as they arrive.
//!
//! A held example costs its id, time, outcome count and these bytes. Values are tagged:
//! small integers as varints (counts), whole milliseconds-in-seconds as varints
//! (`time_since_last`), other numbers as 8 bytes, text as an index into a per-worker
//! dictionary (categories repeat: campaigns, countries, device classes).

use compact_str::CompactString;
use rustc_hash::FxHashMap as HashMap;

use crate::event::{Value, ValueRef};
use crate::varint::put_tagged;

const MISSING: u8 = 0;
const UINT: u8 = 1;
const MILLIS: u8 = 2;
const FLOAT: u8 = 3;
const TEXT: u8 = 4;
const RAW_TEXT: u8 = 5;
/// Segment tag of the example's own event features (tables use their index).
pub const EVENT_SEGMENT: u8 = u8::MAX;
/// Dictionary entries per worker before new text is stored inline instead.
const MAX_DICTIONARY: usize = 1 << 20;

/// Per-worker dictionary of repeated text values.
#[derive(Default)]
pub struct Dictionary {
    index: HashMap<CompactString, u32>,
    values: Vec<CompactString>,
}

impl Dictionary {
    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        self.index.capacity() * 29 + self.values.capacity() * 24
    }
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    crate::varint::put(out, v);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    crate::varint::get(bytes, pos).expect("held bytes are written by this process")
}

/// Appends one segment: its tag, value count, then the values.
pub fn put_segment<'a>(
    out: &mut Vec<u8>,
    dict: &mut Dictionary,
    tag: u8,
    values: impl ExactSizeIterator<Item = &'a Value>,
) {
    put_header(out, tag, values.len());
    for v in values {
        put_value(out, dict, v);
    }
}

/// A segment's tag and value count.
fn put_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    put_tagged(out, tag, len as u64);
}

/// Starts a segment of `len` numbers (table values, no dictionary), then written by
/// [`put_optional_number`] each; room for all of them as the longest number is reserved,
/// so writing them never reallocates.
pub fn put_numbers_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.reserve(1 + 10 + len * 9);
    put_header(out, tag, len);
}

/// Appends one number of a segment (`None`: missing).
pub fn put_optional_number(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(n) => put_number(out, n),
        None => out.push(MISSING),
    }
}

/// Appends a count or a time: the bytes `put_optional_number(out, Some(n as f64))` writes,
/// without its floating-point tests (most numbers of a table row are counts).
pub fn put_count(out: &mut Vec<u8>, n: u64) {
    if n < 1_000_000_000_000_000 {
        put_tagged(out, UINT, n);
    } else {
        put_number(out, n as f64);
    }
}

fn put_number(out: &mut Vec<u8>, n: f64) {
    // Integer tests by casts: `fract` and `round` are libm calls on x86-64 without SSE4.1.
    if (n as u64) as f64 == n && n < 1e15 && n.is_sign_positive() {
        put_tagged(out, UINT, n as u64);
    } else if n.is_sign_positive() && n < 1e12 && ((n * 1000.0 + 0.5) as u64) as f64 / 1000.0 == n {
        put_tagged(out, MILLIS, (n * 1000.0 + 0.5) as u64);
    } else {
        out.push(FLOAT);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn put_value(out: &mut Vec<u8>, dict: &mut Dictionary, v: &Value) {
    match v {
        Value::Missing => out.push(MISSING),
        Value::Num(n) => put_number(out, *n),
        Value::Str(s) => {
            let next = dict.values.len() as u32;
            let ix = match dict.index.get(s) {
                Some(&ix) => Some(ix),
                None if dict.values.len() < MAX_DICTIONARY => {
                    dict.index.insert(s.clone(), next);
                    dict.values.push(s.clone());
                    Some(next)
                }
                None => None,
            };
            match ix {
                Some(ix) => {
                    put_tagged(out, TEXT, ix as u64);
                }
                None => {
                    out.push(RAW_TEXT);
                    put_varint(out, s.len() as u64);
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
}

/// Position after the segment starting at `pos`.
pub fn skip_segment(bytes: &[u8], mut pos: usize) -> usize {
    pos += 1;
    let n = get_varint(bytes, &mut pos);
    for _ in 0..n {
        let kind = bytes[pos];
        pos += 1;
        match kind {
            MISSING => {}
            UINT | MILLIS | TEXT => {
                get_varint(bytes, &mut pos);
            }
            FLOAT => pos += 8,
            _ => pos += get_varint(bytes, &mut pos) as usize,
        }
    }
    pos
}

/// Decodes the segment starting at `pos`, passing each value to `each` (borrowed: text
/// points into the dictionary or the bytes); returns the position after it.
pub fn decode_segment<'a>(
    bytes: &'a [u8],
    pos: usize,
    dict: &'a Dictionary,
    mut each: impl FnMut(ValueRef<'a>),
) -> usize {
    decode_segment_texts(bytes, pos, dict, |v, _| each(v))
}

/// [`decode_segment`] that also gives each dictionary text's index (`None` for other
/// values), so a caller can reuse what it made of that text before.
pub fn decode_segment_texts<'a>(
    bytes: &'a [u8],
    mut pos: usize,
    dict: &'a Dictionary,
    mut each: impl FnMut(ValueRef<'a>, Option<u32>),
) -> usize {
    pos += 1; // tag
    let n = get_varint(bytes, &mut pos) as usize;
    for _ in 0..n {
        let kind = bytes[pos];
        pos += 1;
        let mut text = None;
        let value = match kind {
            MISSING => ValueRef::Missing,
            UINT => ValueRef::Num(get_varint(bytes, &mut pos) as f64),
            MILLIS => ValueRef::Num(get_varint(bytes, &mut pos) as f64 / 1000.0),
            FLOAT => {
                let n = f64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap());
                pos += 8;
                ValueRef::Num(n)
            }
            TEXT => {
                let ix = get_varint(bytes, &mut pos) as u32;
                text = Some(ix);
                ValueRef::Str(&dict.values[ix as usize])
            }
            _ => {
                let len = get_varint(bytes, &mut pos) as usize;
                let s = std::str::from_utf8(&bytes[pos..pos + len]).expect("encoded from a str");
                pos += len;
                ValueRef::Str(s)
            }
        };
        each(value, text);
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A count is written as the same bytes as the number it equals.
        #[test]
        fn counts_are_written_as_their_numbers(n in proptest::prop_oneof![
            0u64..1_000, 0u64..2_000_000_000_000_000, proptest::num::u64::ANY,
        ]) {
            let (mut count, mut number) = (Vec::new(), Vec::new());
            put_count(&mut count, n);
            put_optional_number(&mut number, Some(n as f64));
            proptest::prop_assert_eq!(count, number);
        }
    }

    /// Decodes every segment: `(tag, values)` in the order they were appended.
    fn segments(bytes: &[u8], dict: &Dictionary) -> Vec<(u8, Vec<Value>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let tag = bytes[pos];
            let mut values = Vec::new();
            pos = decode_segment(bytes, pos, dict, |v| {
                values.push(match v {
                    ValueRef::Missing => Value::Missing,
                    ValueRef::Num(n) => Value::Num(n),
                    ValueRef::Str(s) => Value::Str(s.into()),
                })
            });
            out.push((tag, values));
        }
        out
    }

    #[test]
    fn values_round_trip_exactly() {
        let mut dict = Dictionary::default();
        let values = vec![
            Value::Missing,
            Value::Num(0.0),
            Value::Num(12345.0),
            Value::Num(567.267),
            Value::Num(0.001),
            Value::Num(0.06060606060606061),
            Value::Num(-3.5),
            Value::Str("c7".into()),
            Value::Str("c7".into()),
        ];
        let mut bytes = Vec::new();
        put_segment(&mut bytes, &mut dict, EVENT_SEGMENT, values.iter());
        put_segment(&mut bytes, &mut dict, 2, [Value::Num(1.0)].iter());
        let back = segments(&bytes, &dict);
        assert_eq!(
            back,
            vec![(EVENT_SEGMENT, values), (2, vec![Value::Num(1.0)])]
        );
        for v in &back[0].1 {
            if let Value::Num(n) = v {
                assert!(n.to_bits() == n.to_bits(), "bit-exact");
            }
        }
    }
}
