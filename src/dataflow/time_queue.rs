//! Items keyed by event time, taken out once the watermark passes them.

use std::collections::btree_map::{BTreeMap, Entry};
use std::collections::VecDeque;

use crate::time::Time;

/// Width of a bucket: items of one second share a vector, so a pass takes whole buckets.
const BUCKET_MS: Time = 1_000;

/// Buckets the ring spans (about 2.3 hours: a label join's finished ids wait window plus
/// outcome lookback): pushes within it index their bucket directly; the rare pushes
/// further out (a 24 h window's expiry) wait in a map.
const RING_BUCKETS: u64 = 8_192;

/// Emptied bucket vectors kept for reuse (their room, not their items).
const SPARE_BUCKETS: usize = 64;

/// A queue of `(time, item)` drained in watermark steps (order within a step is not kept).
///
/// Times pushed are nearly in order but interleave a few seconds (out-of-orderness):
/// buckets live in a ring indexed by bucket number, so a push is an index and a vector
/// push whatever bucket the previous one went to (a map keyed by bucket, with the last
/// bucket kept apart, switched buckets on most pushes: ~3 % of a run's samples).
pub struct TimeQueue<T> {
    /// `ring[i]` holds the items of bucket `first + i`.
    ring: VecDeque<Vec<(Time, T)>>,
    first: u64,
    /// Items too far from the ring's buckets, by bucket.
    far: BTreeMap<u64, Vec<(Time, T)>>,
    spare: Vec<Vec<(Time, T)>>,
    len: usize,
}

impl<T> Default for TimeQueue<T> {
    fn default() -> Self {
        TimeQueue {
            ring: VecDeque::new(),
            first: 0,
            far: BTreeMap::new(),
            spare: Vec::new(),
            len: 0,
        }
    }
}

impl<T> TimeQueue<T> {
    /// Adds an item due at `time`.
    pub fn push(&mut self, time: Time, item: T) {
        if self.len == 0 {
            // Nothing queued: the ring restarts at this bucket.
            while let Some(empty) = self.ring.pop_front() {
                self.recycle(empty);
            }
        }
        self.len += 1;
        let bucket = time / BUCKET_MS;
        if self.ring.is_empty() {
            self.first = bucket;
        }
        let end = self.first + self.ring.len() as u64;
        if bucket >= self.first && bucket < end {
            self.ring[(bucket - self.first) as usize].push((time, item));
        } else if bucket >= end && bucket - self.first < RING_BUCKETS {
            while self.first + (self.ring.len() as u64) <= bucket {
                let empty = self.spare.pop().unwrap_or_default();
                self.ring.push_back(empty);
            }
            self.ring
                .back_mut()
                .expect("just pushed")
                .push((time, item));
        } else if bucket < self.first && end - bucket <= RING_BUCKETS {
            while self.first > bucket {
                let empty = self.spare.pop().unwrap_or_default();
                self.ring.push_front(empty);
                self.first -= 1;
            }
            self.ring[0].push((time, item));
        } else {
            match self.far.entry(bucket) {
                Entry::Vacant(e) => {
                    e.insert(vec![(time, item)]);
                }
                Entry::Occupied(mut e) => e.get_mut().push((time, item)),
            }
        }
    }

    /// Moves every item with time `< watermark` into `out`.
    pub fn take_before(&mut self, watermark: Time, out: &mut Vec<(Time, T)>) {
        let before = out.len();
        while let Some(items) = self.ring.front_mut() {
            let start = self.first * BUCKET_MS;
            if start >= watermark {
                break;
            }
            if start.saturating_add(BUCKET_MS) > watermark {
                out.extend(items.extract_if(.., |(t, _)| *t < watermark));
                break;
            }
            out.append(items);
            let empty = self.ring.pop_front().expect("a front bucket");
            self.recycle(empty);
            self.first += 1;
        }
        while let Some(mut entry) = self.far.first_entry() {
            let start = *entry.key() * BUCKET_MS;
            if start >= watermark {
                break;
            }
            if start.saturating_add(BUCKET_MS) <= watermark {
                out.append(&mut entry.remove());
                continue;
            }
            out.extend(entry.get_mut().extract_if(.., |(t, _)| *t < watermark));
            if entry.get().is_empty() {
                entry.remove();
            }
            break;
        }
        self.len -= out.len() - before;
    }

    /// Keeps an emptied bucket's vector for a later bucket.
    fn recycle(&mut self, empty: Vec<(Time, T)>) {
        if self.spare.len() < SPARE_BUCKETS && empty.capacity() > 0 {
            self.spare.push(empty);
        }
    }

    /// Earliest time queued.
    pub fn first_time(&self) -> Option<Time> {
        let min = |items: &Vec<(Time, T)>| items.iter().map(|(t, _)| *t).min();
        let ring = self.ring.iter().find(|b| !b.is_empty()).and_then(min);
        let far = self.far.values().next().and_then(min);
        ring.into_iter().chain(far).min()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate bytes held (items plus a vector per bucket, and a tree slot per far
    /// bucket), in O(1).
    pub fn heap_bytes(&self) -> usize {
        self.len * std::mem::size_of::<(Time, T)>()
            + (self.ring.len() + self.spare.len()) * std::mem::size_of::<Vec<(Time, T)>>()
            + self.far.len() * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Against a plain list: every step takes exactly the items before its watermark,
        /// and the earliest time is the list's (times within the ring's span, and hours
        /// apart: pushes ahead of and behind the ring, into the far map).
        #[test]
        fn drains_as_a_list_does(
            steps in proptest::collection::vec(
                (proptest::collection::vec(
                    proptest::prop_oneof![0u64..10_000, 0u64..40_000_000], 0..20),
                 proptest::prop_oneof![0u64..12_000, 0u64..45_000_000]),
                1..12),
        ) {
            let mut q = TimeQueue::default();
            let mut list: Vec<(Time, usize)> = Vec::new();
            let mut next = 0;
            for (pushes, watermark) in steps {
                for t in pushes {
                    q.push(t, next);
                    list.push((t, next));
                    next += 1;
                }
                proptest::prop_assert_eq!(q.first_time(), list.iter().map(|x| x.0).min());
                let mut got = Vec::new();
                q.take_before(watermark, &mut got);
                got.sort();
                let mut want: Vec<_> = list.extract_if(.., |x| x.0 < watermark).collect();
                want.sort();
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(q.len(), list.len());
            }
        }
    }

    #[test]
    fn takes_exactly_the_items_before_the_watermark() {
        let mut q = TimeQueue::default();
        for t in [5_500u64, 10, 999, 1_000, 2_500, 1_001, 7_000] {
            q.push(t, t);
        }
        let mut out = Vec::new();
        q.take_before(1_001, &mut out);
        out.sort();
        assert_eq!(
            out.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![10, 999, 1_000]
        );
        assert_eq!(q.first_time(), Some(1_001));
        out.clear();
        q.take_before(Time::MAX, &mut out);
        assert_eq!(out.len(), 4);
        assert!(q.is_empty());
    }
}
