//! Encoding of a table row version: the features of one key after all events `<= T`.
//!
//! A version at `T` stores what a read at `now = T + 1` sees, except for values that
//! depend on the read time:
//! - `time_since_last` stores the last event time and is computed at read;
//! - sliding-window counts, sums and means store running totals of every event applied,
//!   and a read subtracts the totals of the version at `as_of - window` (see
//!   [`crate::features::agg::Window`]), so no version is written when an event leaves a
//!   window and reads at any later time are exact;
//! - ratios are recomputed from their operands.
//!
//! So `get(as_of = t - 1)` equals the features a training row at `t` carries.

use crate::config::{Agg, FeatureSpec};
use crate::features::agg::{fill_ratios, from_totals, windowed_by_totals, AggState};
use crate::label::pending::{
    decode_segment, put_count, put_numbers_header, put_optional_number, Dictionary,
};
use crate::time::Time;

/// Numbers a feature stores in a version.
fn stored_numbers(f: &FeatureSpec) -> usize {
    match f.agg {
        Agg::Ratio => 0,
        Agg::Sum | Agg::Mean if windowed_by_totals(f) => 2,
        _ => 1,
    }
}

/// Appends the row of `states` as of `version` (a read at `version + 1`) to `out`.
pub fn encode(specs: &[FeatureSpec], states: &mut [AggState], version: Time, out: &mut Vec<u8>) {
    let stored = specs.iter().map(stored_numbers).sum();
    let now = version + 1;
    put_numbers_header(out, 0, stored);
    // Written feature by feature: an iterator chain here cost ~600 instructions a version.
    for (f, s) in specs.iter().zip(states.iter_mut()) {
        match f.agg {
            Agg::Ratio => {}
            Agg::TimeSinceLast => match s.last_time() {
                Some(t) => put_count(out, t),
                None => put_optional_number(out, None),
            },
            _ if windowed_by_totals(f) => {
                let (count, sum) = s.totals().unwrap_or_default();
                put_count(out, count);
                if stored_numbers(f) == 2 {
                    put_optional_number(out, Some(sum));
                }
            }
            _ => s.put_read(f, now, out),
        }
    }
}

/// The distinct windows of `specs` read from running totals: the versions at
/// `as_of - window` a [`decode`] needs.
pub fn windows(specs: &[FeatureSpec]) -> Vec<Time> {
    let mut w: Vec<Time> = specs
        .iter()
        .filter(|f| windowed_by_totals(f))
        .filter_map(|f| f.window)
        .collect();
    w.sort_unstable();
    w.dedup();
    w
}

/// The [`windows`] a read `as_of` needs an earlier version for (those starting after 0).
pub fn windows_at(specs: &[FeatureSpec], as_of: Time) -> Vec<Time> {
    let mut w = windows(specs);
    w.retain(|w| as_of >= *w);
    w
}

/// Decodes a row read `as_of`: every feature's value, ratios included. `before(window)`
/// gives the version at `as_of - window` (`None`: no events that early), one for each of
/// [`windows_at`].
pub fn decode<'a>(
    specs: &[FeatureSpec],
    bytes: &[u8],
    as_of: Time,
    before: impl Fn(Time) -> Option<&'a [u8]>,
) -> Vec<Option<f64>> {
    let numbers = |bytes: &[u8]| -> Vec<Option<f64>> {
        let mut stored = Vec::new();
        decode_segment(bytes, 0, &Dictionary::default(), |v| {
            stored.push(v.as_num())
        });
        stored
    };
    let now = numbers(bytes);
    // Running totals as of `as_of - window`, per window.
    let earlier: Vec<(Time, Vec<Option<f64>>)> = windows_at(specs, as_of)
        .into_iter()
        .filter_map(|w| Some((w, numbers(before(w)?))))
        .collect();
    let mut pos = 0;
    let mut values: Vec<Option<f64>> = specs
        .iter()
        .map(|f| {
            let at = pos;
            pos += stored_numbers(f);
            let number = |row: &[Option<f64>], i: usize| row.get(at + i).copied().flatten();
            let totals = |row: &[Option<f64>]| {
                let count = number(row, 0).unwrap_or(0.0);
                let sum = if stored_numbers(f) == 2 {
                    number(row, 1)
                } else {
                    None
                };
                (count, sum.unwrap_or(count))
            };
            match f.agg {
                Agg::Ratio => None,
                Agg::TimeSinceLast => {
                    number(&now, 0).map(|last| (as_of + 1 - last as Time) as f64 / 1000.0)
                }
                _ if windowed_by_totals(f) => {
                    let before = earlier
                        .iter()
                        .find(|(w, _)| Some(*w) == f.window)
                        .map_or((0.0, 0.0), |(_, row)| totals(row));
                    from_totals(f.agg, totals(&now), before)
                }
                _ => number(&now, 0),
            }
        })
        .collect();
    fill_ratios(specs, &mut values);
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;
    use crate::features::distinct::DistinctIds;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn spec(agg: Agg, window: Time) -> FeatureSpec {
        crate::features::agg::test_spec(agg, Some(window))
    }

    proptest! {
        /// A window read from two versions' running totals has the bits of the job's own
        /// read at that time (clause 8 for sums and means of fractional values).
        #[test]
        fn window_reads_from_totals_equal_the_jobs_reads(
            events in prop::collection::vec((0u64..40, -1000i32..1000), 1..40),
            window in 1u64..60,
            agg in prop::sample::select(vec![Agg::Count, Agg::Sum, Agg::Mean]),
        ) {
            let specs = [spec(agg, window)];
            let input = |v: f64| AggState::input(&specs[0], &Value::Num(v)).expect("a number");
            let mut events: Vec<(Time, f64)> =
                events.into_iter().map(|(t, v)| (t, v as f64 / 7.0)).collect();
            events.sort_by_key(|e| e.0);
            // The job: one version per event time, after applying that time's events.
            let mut state = [AggState::new(&specs[0])];
            let mut versions = BTreeMap::new();
            for same_time in events.chunk_by(|a, b| a.0 == b.0) {
                for (t, v) in same_time {
                    state[0].apply(&specs[0], *t, input(*v), &mut DistinctIds::default());
                }
                let mut row = Vec::new();
                encode(&specs, &mut state, same_time[0].0, &mut row);
                versions.insert(same_time[0].0, row);
            }
            let at = |t: Time| versions.range(..=t).next_back().map(|(_, r)| r.as_slice());
            for as_of in 0..(events.last().unwrap().0 + window + 2) {
                let mut job = AggState::new(&specs[0]);
                for (t, v) in events.iter().filter(|e| e.0 <= as_of) {
                    job.apply(&specs[0], *t, input(*v), &mut DistinctIds::default());
                }
                let want = job.read(&specs[0], as_of + 1).map(f64::to_bits);
                let got = match at(as_of) {
                    Some(row) => decode(&specs, row, as_of, |w| at(as_of - w))[0],
                    None => AggState::empty_value(&specs[0]),
                };
                prop_assert_eq!(got.map(f64::to_bits), want, "as of {}", as_of);
            }
        }
    }
}
