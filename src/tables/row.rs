//! Encoding of a table row version: the features of one key after all events `<= T`.
//!
//! A version at `T` stores what a read at `now = T + 1` sees, except `time_since_last`,
//! which depends on the read time: it stores the last event time and is computed at read.
//! Ratios are recomputed from their operands. So `get(as_of = t - 1)` equals the features a
//! training row at `t` carries.

use crate::config::{Agg, FeatureSpec};
use crate::event::Value;
use crate::features::agg::{fill_ratios, AggState};
use crate::label::pending::{decode_segment, put_numbers, Dictionary};
use crate::time::Time;

/// Encodes the row of `states` as of `version` (a read at `version + 1`).
pub fn encode(specs: &[FeatureSpec], states: &mut [AggState], version: Time, out: &mut Vec<u8>) {
    let stored = specs.iter().filter(|f| f.ratio.is_none()).count();
    let now = version + 1;
    let values = specs
        .iter()
        .zip(states.iter_mut())
        .filter(|(f, _)| f.ratio.is_none())
        .map(|(f, s)| match f.agg {
            Agg::TimeSinceLast => s.last_time().map(|t| t as f64),
            _ => s.read(f, now),
        });
    put_numbers(out, 0, stored, values);
}

/// Decodes a row read `as_of`: every feature's value, ratios included.
pub fn decode(specs: &[FeatureSpec], bytes: &[u8], as_of: Time) -> Vec<Option<f64>> {
    let mut stored = Vec::new();
    decode_segment(bytes, 0, &Dictionary::default(), &mut stored);
    let mut stored = stored.into_iter();
    let mut values: Vec<Option<f64>> = specs
        .iter()
        .map(|f| {
            if f.ratio.is_some() {
                return None;
            }
            let v = stored.next().and_then(|v: Value| v.as_num());
            match f.agg {
                Agg::TimeSinceLast => v.map(|last| (as_of + 1 - last as Time) as f64 / 1000.0),
                _ => v,
            }
        })
        .collect();
    fill_ratios(specs, &mut values);
    values
}
