//! The event times a sliding window holds, oldest first, in half the memory of `u64`s.
//!
//! Times are kept as 32-bit millisecond offsets from a base, which covers ~49 days: a
//! window holds only times within its length of the newest, so offsets from the oldest
//! fit unless the window itself is longer. The base moves when a time does not fit; a
//! window whose times span more than 2^32 ms keeps full times instead.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::Time;

/// A deque of event times (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Times {
    /// Offsets from a base time.
    Narrow {
        /// The time offsets count from.
        base: Time,
        /// Each time minus `base`.
        offsets: VecDeque<u32>,
    },
    /// Full times (a span over 2^32 ms).
    Wide(VecDeque<Time>),
}

impl Default for Times {
    fn default() -> Self {
        Times::Narrow {
            base: 0,
            offsets: VecDeque::new(),
        }
    }
}

impl Times {
    /// Number of times held.
    pub fn len(&self) -> usize {
        match self {
            Times::Narrow { offsets, .. } => offsets.len(),
            Times::Wide(times) => times.len(),
        }
    }

    /// Whether no time is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest time.
    pub fn front(&self) -> Option<Time> {
        match self {
            Times::Narrow { base, offsets } => offsets.front().map(|&o| base + Time::from(o)),
            Times::Wide(times) => times.front().copied(),
        }
    }

    /// The newest time.
    fn back(&self) -> Option<Time> {
        match self {
            Times::Narrow { base, offsets } => offsets.back().map(|&o| base + Time::from(o)),
            Times::Wide(times) => times.back().copied(),
        }
    }

    /// Appends a time.
    pub fn push_back(&mut self, time: Time) {
        if let Times::Narrow { base, offsets } = self {
            if offsets.is_empty() {
                *base = time;
            }
            if let Some(offset) = time.checked_sub(*base).and_then(|o| u32::try_from(o).ok()) {
                offsets.push_back(offset);
                return;
            }
        }
        self.make_room(time);
        match self {
            Times::Narrow { base, offsets } => offsets.push_back((time - *base) as u32),
            Times::Wide(times) => times.push_back(time),
        }
    }

    /// Rebases on the oldest time (or `time`, if older), or widens when the span does not
    /// fit in 32 bits.
    fn make_room(&mut self, time: Time) {
        let low = self.front().map_or(time, |f| f.min(time));
        let high = self.back().map_or(time, |b| b.max(time));
        let Times::Narrow { base, offsets } = self else {
            return;
        };
        if high - low <= Time::from(u32::MAX) {
            let old = *base;
            for o in offsets.iter_mut() {
                *o = (old + Time::from(*o) - low) as u32;
            }
            *base = low;
        } else {
            let times = offsets.iter().map(|&o| *base + Time::from(o)).collect();
            *self = Times::Wide(times);
        }
    }

    /// Removes the oldest time.
    pub fn pop_front(&mut self) -> Option<Time> {
        match self {
            Times::Narrow { base, offsets } => offsets.pop_front().map(|o| *base + Time::from(o)),
            Times::Wide(times) => times.pop_front(),
        }
    }

    /// Removes the newest time.
    pub fn pop_back(&mut self) -> Option<Time> {
        match self {
            Times::Narrow { base, offsets } => offsets.pop_back().map(|o| *base + Time::from(o)),
            Times::Wide(times) => times.pop_back(),
        }
    }

    /// Room held, in times.
    pub fn capacity(&self) -> usize {
        match self {
            Times::Narrow { offsets, .. } => offsets.capacity(),
            Times::Wide(times) => times.capacity(),
        }
    }

    /// Shrinks the room held to at least `len` times.
    pub fn shrink_to(&mut self, len: usize) {
        match self {
            Times::Narrow { offsets, .. } => offsets.shrink_to(len),
            Times::Wide(times) => times.shrink_to(len),
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Times::Narrow { offsets, .. } => offsets.capacity() * 4,
            Times::Wide(times) => times.capacity() * 8,
        }
    }

    /// Asks the CPU to fetch the oldest and the newest time into cache.
    pub fn prefetch_ends(&self) {
        fn ends<T>(deque: &VecDeque<T>) {
            let (a, b) = deque.as_slices();
            if let Some(x) = a.first() {
                crate::prefetch::prefetch(x, 1);
            }
            if let Some(x) = b.last().or(a.last()) {
                crate::prefetch::prefetch(x, 1);
            }
        }
        match self {
            Times::Narrow { offsets, .. } => ends(offsets),
            Times::Wide(times) => ends(times),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Pushes and pops at both ends give the times a plain deque of `u64`s gives, for
        /// spans within and beyond 32 bits.
        #[test]
        fn times_behave_as_a_deque_of_full_times(
            start in 0u64..(1 << 50),
            steps in prop::collection::vec((0u64..3, prop_oneof![0u64..1_000, 0u64..(1 << 33)]), 1..60),
        ) {
            let (mut times, mut plain) = (Times::default(), VecDeque::new());
            let mut now = start;
            for (op, step) in steps {
                match op {
                    0 | 1 => {
                        now += step;
                        times.push_back(now);
                        plain.push_back(now);
                    }
                    _ if step % 2 == 0 => prop_assert_eq!(times.pop_front(), plain.pop_front()),
                    _ => prop_assert_eq!(times.pop_back(), plain.pop_back()),
                }
                prop_assert_eq!(times.len(), plain.len());
                prop_assert_eq!(times.front(), plain.front().copied());
                prop_assert_eq!(times.back(), plain.back().copied());
            }
        }
    }

    #[test]
    fn a_window_of_recent_times_stays_narrow_as_time_moves_on() {
        let mut times = Times::default();
        let hour = 3_600_000;
        // 100 days of one event an hour, a 24 h window: never more than 24 h held.
        for t in (0..100 * 24).map(|h| 1_700_000_000_000 + h * hour) {
            times.push_back(t);
            while times.front().is_some_and(|f| f < t - 24 * hour) {
                times.pop_front();
            }
        }
        assert!(matches!(times, Times::Narrow { .. }));
        assert_eq!(times.len(), 25);
        assert_eq!(times.heap_bytes(), times.capacity() * 4);
    }
}
