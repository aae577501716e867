//! State of one declared aggregate for one key, updated in event-time order.

use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::distinct::{DistinctIds, DistinctSet};
use super::window_times::Times;
use crate::config::{Agg, FeatureSpec};
use crate::event::{stable_hash, Value};
use crate::label::pending::{put_count, put_optional_number};
use crate::prefetch::{lines, prefetch};
use crate::time::Time;

/// Running state of one aggregate of one key: 16 bytes inline (a tag and 8 bytes), so a
/// row of states packs densely (a two-count row is 32 bytes); sets, windows and the rare
/// lifetime mean are boxed.
///
/// Reads happen at a time `t` and see exactly the events applied before (all with time `< t`,
/// DESIGN.md clause 6); sliding windows cover `[t - window, t)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AggState {
    /// Lifetime count.
    Count(u64),
    /// Lifetime sum.
    Sum(f64),
    /// Lifetime sum and count of a mean (boxed: inline, every state would take 24 bytes).
    Mean(Box<(f64, u64)>),
    /// Lifetime extreme (min or max): the bits of the value, [`NO_VALUE`] before any event.
    Extreme(u64),
    /// Latest value: its bits, [`NO_VALUE`] before any event.
    Last(u64),
    /// Time of the latest event (`time_since_last`), `NEVER` before any event.
    LastTime(Time),
    /// Lifetime distinct values, by their numbers (see [`DistinctIds`]).
    Distinct(Box<DistinctSet>),
    /// A sliding window.
    Window(Box<Window>),
}

/// Time of `AggState::LastTime` before any event.
const NEVER: Time = Time::MAX;

/// Bits of "no value yet" in `AggState::Extreme` and `AggState::Last`: a signalling NaN,
/// which neither parsing nor arithmetic produces (their NaNs are quiet), so no input
/// value has these bits.
const NO_VALUE: u64 = 0x7FF4_0000_0000_0001;

/// The value stored as `bits`, if any.
fn stored(bits: u64) -> Option<f64> {
    (bits != NO_VALUE).then(|| f64::from_bits(bits))
}

/// Events inside a sliding window, oldest first.
///
/// Counts, sums and means are differences of running totals: everything applied minus
/// everything expired, each summed in event order from zero. A stored version keeps the
/// running totals (see [`crate::tables::row`]), so a table read computes the same
/// difference from two versions and gets the same bits, and no version is needed when an
/// event leaves the window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Window {
    /// Event times; for min/max a monotone deque, front = answer.
    times: Times,
    /// Running counts of every event applied and of the events expired.
    applied: u64,
    expired: u64,
    /// What windows other than counts keep besides (boxed: a count window is 56 bytes,
    /// one cache line to fetch per read).
    more: Option<Box<WindowValues>>,
}

/// Values of a window other than a count.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct WindowValues {
    /// Values beside `times`.
    values: VecDeque<f64>,
    /// Running sums of every value applied and of the values expired, in the same order.
    applied: f64,
    expired: f64,
    distinct: HashMap<u64, u32>,
    last: Option<(Time, f64)>,
}

/// Whether a windowed feature is read as a difference of running totals (count, sum and
/// mean); the others (min, max, distinct count, last) change when an event leaves.
pub fn windowed_by_totals(spec: &FeatureSpec) -> bool {
    spec.window.is_some() && matches!(spec.agg, Agg::Count | Agg::Sum | Agg::Mean)
}

/// The value of a count, sum or mean from running totals `(count, sum)`: all events
/// minus the events before the window.
pub fn from_totals(agg: Agg, all: (f64, f64), before: (f64, f64)) -> Option<f64> {
    let (count, sum) = (all.0 - before.0, all.1 - before.1);
    match agg {
        Agg::Count => Some(count),
        Agg::Sum => Some(sum),
        _ => (count > 0.0).then(|| sum / count),
    }
}

impl AggState {
    /// Empty state for a feature.
    pub fn new(spec: &FeatureSpec) -> Self {
        if spec.window.is_some() {
            return AggState::Window(Box::default());
        }
        match spec.agg {
            // Ratios are computed from their operands; the state is a placeholder.
            Agg::Count | Agg::Ratio => AggState::Count(0),
            Agg::Sum => AggState::Sum(0.0),
            Agg::Mean => AggState::Mean(Box::default()),
            Agg::Min | Agg::Max => AggState::Extreme(NO_VALUE),
            Agg::Last => AggState::Last(NO_VALUE),
            Agg::TimeSinceLast => AggState::LastTime(NEVER),
            Agg::DistinctCount => AggState::Distinct(Box::default()),
        }
    }

    /// The value of a feature for a key with no events yet.
    pub fn empty_value(spec: &FeatureSpec) -> Option<f64> {
        match spec.agg {
            Agg::Count | Agg::DistinctCount => Some(0.0),
            Agg::Sum => Some(0.0),
            _ => None,
        }
    }

    /// What `spec` aggregates of one event whose aggregated field is `value`: 1 for counts
    /// and times since the last event, the field's number, or for distinct counts the
    /// hash of the value (as `f64` bits). `None`: the event is skipped (missing value).
    pub fn input(spec: &FeatureSpec, value: &Value) -> Option<f64> {
        match spec.agg {
            Agg::Count | Agg::TimeSinceLast => Some(1.0),
            Agg::DistinctCount => match value {
                Value::Missing => None,
                Value::Str(s) => Some(f64::from_bits(stable_hash(s.as_bytes()))),
                Value::Num(n) => Some(f64::from_bits(stable_hash(&n.to_le_bytes()))),
            },
            // Missing values are skipped by numeric aggregates.
            _ => value.as_num(),
        }
    }

    /// Applies one event of the aggregated stream at `time`; `x` is its [`AggState::input`]
    /// and `ids` numbers the feature's distinct values on this worker.
    pub fn apply(&mut self, spec: &FeatureSpec, time: Time, x: f64, ids: &mut DistinctIds) {
        match self {
            AggState::Count(n) => *n += 1,
            AggState::Sum(s) => *s += x,
            AggState::Mean(m) => {
                m.0 += x;
                m.1 += 1;
            }
            AggState::Extreme(bits) => {
                *bits = match (stored(*bits), spec.agg) {
                    (Some(v), Agg::Min) => v.min(x),
                    (Some(v), _) => v.max(x),
                    (None, _) => x,
                }
                .to_bits()
            }
            AggState::Last(bits) => *bits = x.to_bits(),
            AggState::LastTime(t) => *t = time,
            AggState::Distinct(set) => set.insert(ids.id(x.to_bits())),
            AggState::Window(w) => {
                // Reads come later than `time`: what is out of the window by then goes now,
                // so keys that are updated but seldom read stay small.
                w.expire_at(spec, time);
                w.push(spec.agg, time, x)
            }
        }
    }

    /// The value at time `now` (state of events strictly before `now`); `None` = missing.
    pub fn read(&mut self, spec: &FeatureSpec, now: Time) -> Option<f64> {
        match self {
            AggState::Count(n) => Some(*n as f64),
            AggState::Sum(s) => Some(*s),
            AggState::Mean(m) => (m.1 > 0).then(|| m.0 / m.1 as f64),
            AggState::Extreme(bits) | AggState::Last(bits) => stored(*bits),
            AggState::LastTime(NEVER) => None,
            AggState::LastTime(t) => Some((now - *t) as f64 / 1000.0),
            AggState::Distinct(set) => Some(set.len() as f64),
            AggState::Window(w) => {
                w.expire_at(spec, now);
                w.read(spec.agg)
            }
        }
    }

    /// Appends the value at `now` (what [`AggState::read`] gives) to an encoded segment:
    /// counts as integers, without the trip through `f64` (the same bytes).
    pub fn put_read(&mut self, spec: &FeatureSpec, now: Time, out: &mut Vec<u8>) {
        match self.read_count(spec, now) {
            Some(n) => put_count(out, n),
            None => put_optional_number(out, self.read(spec, now)),
        }
    }

    /// A lifetime or sliding count at `now` as an integer; `None` for other aggregates.
    fn read_count(&mut self, spec: &FeatureSpec, now: Time) -> Option<u64> {
        match self {
            AggState::Count(n) if spec.agg == Agg::Count => Some(*n),
            AggState::Window(w) if spec.agg == Agg::Count => {
                w.expire_at(spec, now);
                Some(w.applied - w.expired)
            }
            _ => None,
        }
    }

    /// Time of the oldest event still held by a sliding window (`None` if empty or not
    /// windowed).
    pub fn oldest_in_window(&self) -> Option<Time> {
        match self {
            AggState::Window(w) => w.times.front(),
            _ => None,
        }
    }

    /// Running totals `(count, sum)` of every event applied to a sliding window.
    pub fn totals(&self) -> Option<(u64, f64)> {
        match self {
            AggState::Window(w) => Some(w.totals().0),
            _ => None,
        }
    }

    /// Time of the latest event applied (`time_since_last` states).
    pub fn last_time(&self) -> Option<Time> {
        match self {
            AggState::LastTime(NEVER) => None,
            AggState::LastTime(t) => Some(*t),
            _ => None,
        }
    }

    /// Asks the CPU to fetch this state's heap part (set or window) into cache.
    pub fn prefetch_heap(&self) {
        match self {
            AggState::Distinct(s) => prefetch(&**s, 1),
            AggState::Window(w) => prefetch(&**w, lines(std::mem::size_of::<Window>())),
            _ => {}
        }
    }

    /// Asks the CPU to fetch the buffers behind this state's heap part (a window's oldest
    /// and newest times, a distinct set's bitmap).
    pub fn prefetch_buffers(&self) {
        match self {
            AggState::Window(w) => w.times.prefetch_ends(),
            AggState::Distinct(s) => s.prefetch(),
            _ => {}
        }
    }

    /// Rough heap bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match self {
            AggState::Mean(_) => 16,
            AggState::Distinct(s) => s.heap_bytes(),
            AggState::Window(w) => w.heap_bytes(),
            _ => 0,
        }
    }
}

impl Window {
    /// Drops what is out of `spec`'s window at time `now`.
    fn expire_at(&mut self, spec: &FeatureSpec, now: Time) {
        let length = spec.window.unwrap_or(Time::MAX);
        self.expire(spec.agg, now.saturating_sub(length));
    }

    fn push(&mut self, agg: Agg, time: Time, x: f64) {
        self.applied += 1;
        if agg == Agg::Count {
            self.times.push_back(time);
            return;
        }
        let more = self.more.get_or_insert_with(Box::default);
        match agg {
            // Monotone deques: drop entries the new one dominates.
            Agg::Min | Agg::Max => {
                while more
                    .values
                    .back()
                    .is_some_and(|&v| if agg == Agg::Min { v >= x } else { v <= x })
                {
                    self.times.pop_back();
                    more.values.pop_back();
                }
            }
            Agg::DistinctCount => *more.distinct.entry(x.to_bits()).or_insert(0) += 1,
            _ => {}
        }
        self.times.push_back(time);
        more.values.push_back(x);
        more.applied += x;
        more.last = Some((time, x));
    }

    /// Drops entries older than `start`.
    fn expire(&mut self, agg: Agg, start: Time) {
        while let Some(t) = self.times.front() {
            if t >= start {
                break;
            }
            self.times.pop_front();
            let Some(more) = self.more.as_mut() else {
                self.expired += 1; // a count: no values
                continue;
            };
            let x = more.values.pop_front().expect("values beside times");
            match agg {
                Agg::DistinctCount => {
                    let n = more
                        .distinct
                        .get_mut(&x.to_bits())
                        .expect("counted on push");
                    *n -= 1;
                    if *n == 0 {
                        more.distinct.remove(&x.to_bits());
                    }
                }
                Agg::Min | Agg::Max => {}
                _ => {
                    self.expired += 1;
                    more.expired += x;
                }
            }
        }
        if let Some(more) = self.more.as_mut() {
            if more.last.is_some_and(|(t, _)| t < start) {
                more.last = None;
            }
        }
        if self.times.capacity() > 64 && self.times.len() < self.times.capacity() / 4 {
            self.times.shrink_to(self.times.len() * 2);
            if let Some(more) = self.more.as_mut() {
                more.values.shrink_to(more.values.len() * 2);
            }
        }
    }

    /// Running totals `(count, sum)` of every event applied and of the events expired.
    /// A count's sum is its count: each event adds 1.
    fn totals(&self) -> ((u64, f64), (u64, f64)) {
        match &self.more {
            Some(m) => ((self.applied, m.applied), (self.expired, m.expired)),
            None => (
                (self.applied, self.applied as f64),
                (self.expired, self.expired as f64),
            ),
        }
    }

    fn read(&self, agg: Agg) -> Option<f64> {
        let totals = |(n, s): (u64, f64)| (n as f64, s);
        let more = self.more.as_deref();
        match agg {
            Agg::Count | Agg::Sum | Agg::Mean => {
                let (applied, expired) = self.totals();
                from_totals(agg, totals(applied), totals(expired))
            }
            Agg::Min | Agg::Max => more?.values.front().copied(),
            Agg::Last => more?.last.map(|(_, v)| v),
            Agg::DistinctCount => Some(more.map_or(0, |m| m.distinct.len()) as f64),
            Agg::TimeSinceLast | Agg::Ratio => None,
        }
    }

    /// Rough heap bytes held.
    fn heap_bytes(&self) -> usize {
        let more = self.more.as_deref().map_or(0, |m| {
            std::mem::size_of::<WindowValues>()
                + m.values.capacity() * 8
                + m.distinct.capacity() * 13
        });
        std::mem::size_of::<Window>() + self.times.heap_bytes() + more
    }
}

/// Fills ratio features from their operands: `(num + prior * strength) / (den + strength)`.
pub fn fill_ratios(specs: &[FeatureSpec], values: &mut [Option<f64>]) {
    for (i, spec) in specs.iter().enumerate() {
        if let Some((num, den, prior, strength)) = spec.ratio {
            values[i] = match (values[num], values[den]) {
                (Some(n), Some(d)) if d + strength != 0.0 => {
                    Some((n + prior * strength) / (d + strength))
                }
                _ => None,
            };
        }
    }
}

/// A feature aggregating field 0 of stream 0 (for tests).
#[cfg(test)]
pub(crate) fn test_spec(agg: Agg, window: Option<Time>) -> FeatureSpec {
    FeatureSpec {
        name: "f".into(),
        agg,
        stream: 0,
        field: Some(0),
        window,
        ratio: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_value_is_what_a_fresh_state_reads() {
        use crate::config::Agg::*;
        for agg in [
            Count,
            Sum,
            Mean,
            Min,
            Max,
            Last,
            DistinctCount,
            TimeSinceLast,
        ] {
            for window in [None, Some(3_600_000)] {
                let spec = test_spec(agg, window);
                assert_eq!(
                    AggState::empty_value(&spec),
                    AggState::new(&spec).read(&spec, 1_000),
                    "{agg:?} {window:?}"
                );
            }
        }
    }

    proptest::proptest! {
        /// Lifetime aggregates read what their definitions give over the events before
        /// the read (the reference is computed from the list of events).
        #[test]
        fn lifetime_aggregates_read_their_definitions(
            values in proptest::collection::vec(-1e6f64..1e6, 0..20),
            agg in proptest::sample::select(vec![
                Agg::Count, Agg::Sum, Agg::Mean, Agg::Min, Agg::Max, Agg::Last,
                Agg::TimeSinceLast, Agg::DistinctCount,
            ]),
        ) {
            let spec = test_spec(agg, None);
            let mut state = AggState::new(&spec);
            let mut ids = DistinctIds::default();
            for (i, v) in values.iter().enumerate() {
                let x = AggState::input(&spec, &Value::Num(*v)).expect("a number");
                state.apply(&spec, 1_000 * i as Time, x, &mut ids);
            }
            let now = 1_000 * values.len() as Time + 500;
            let want = reference(agg, &values, (!values.is_empty()).then_some(1.5));
            proptest::prop_assert_eq!(state.read(&spec, now).map(f64::to_bits), want.map(f64::to_bits));
        }
    }

    /// An aggregate by its definition over `values`; `since` is the time since the last.
    fn reference(agg: Agg, values: &[f64], since: Option<f64>) -> Option<f64> {
        let n = values.len() as f64;
        let sum = || values.iter().fold(0.0, |s, v| s + v);
        match agg {
            Agg::Count => Some(n),
            Agg::Sum => Some(sum()),
            Agg::Mean => (n > 0.0).then(|| sum() / n),
            Agg::Min => values.iter().copied().reduce(f64::min),
            Agg::Max => values.iter().copied().reduce(f64::max),
            Agg::Last => values.last().copied(),
            Agg::TimeSinceLast => since,
            _ => {
                let mut distinct: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
                distinct.sort_unstable();
                distinct.dedup();
                Some(distinct.len() as f64)
            }
        }
    }

    proptest::proptest! {
        /// Sliding windows read, at each event's time, their definition over the events in
        /// `[t - window, t)` (reads and updates interleaved as the job does them).
        #[test]
        fn windowed_aggregates_read_their_definitions(
            mut events in proptest::collection::vec((0u64..60, -20i32..20), 0..30),
            window in 1u64..20,
            agg in proptest::sample::select(vec![
                Agg::Count, Agg::Sum, Agg::Mean, Agg::Min, Agg::Max, Agg::Last, Agg::DistinctCount,
            ]),
        ) {
            events.sort_by_key(|e| e.0);
            let spec = test_spec(agg, Some(window));
            let mut state = AggState::new(&spec);
            let mut ids = DistinctIds::default();
            let mut reads_at: Vec<Time> = events.iter().map(|e| e.0).collect();
            reads_at.push(70);
            let mut applied = 0;
            for now in reads_at {
                while applied < events.len() && events[applied].0 < now {
                    let (t, v) = events[applied];
                    let x = AggState::input(&spec, &Value::Num(v as f64 / 4.0)).expect("a number");
                    state.apply(&spec, t, x, &mut ids);
                    applied += 1;
                }
                let inside: Vec<f64> = events
                    .iter()
                    .filter(|e| e.0 < now && e.0 + window >= now)
                    .map(|e| e.1 as f64 / 4.0)
                    .collect();
                let want = reference(agg, &inside, None);
                proptest::prop_assert_eq!(
                    state.read(&spec, now).map(f64::to_bits),
                    want.map(f64::to_bits),
                    "at {}", now
                );
            }
        }
    }

    #[test]
    fn state_stays_small() {
        assert!(
            std::mem::size_of::<AggState>() <= 16,
            "per-key memory grows with every byte here"
        );
    }
}
