//! Items keyed by event time, taken out once the watermark passes them.

use std::collections::btree_map::{BTreeMap, Entry};

use crate::time::Time;

/// Width of a bucket: items of one second share a vector, so pushes of nearly sorted
/// times are O(1) and a pass takes whole buckets.
const BUCKET_MS: Time = 1_000;

/// A queue of `(time, item)` drained in watermark steps (order within a step is not kept).
pub struct TimeQueue<T> {
    buckets: BTreeMap<Time, Vec<(Time, T)>>,
    /// The bucket pushed to last, kept out of the map: times pushed nearly in order go to
    /// one bucket for a while, and a map lookup per push was ~270 instructions.
    hot: Option<(Time, Vec<(Time, T)>)>,
    len: usize,
}

impl<T> Default for TimeQueue<T> {
    fn default() -> Self {
        TimeQueue {
            buckets: BTreeMap::new(),
            hot: None,
            len: 0,
        }
    }
}

impl<T> TimeQueue<T> {
    /// Adds an item due at `time`.
    pub fn push(&mut self, time: Time, item: T) {
        let bucket = time / BUCKET_MS;
        match &mut self.hot {
            Some((b, items)) if *b == bucket => items.push((time, item)),
            _ => {
                self.stash_hot();
                self.hot = Some((bucket, vec![(time, item)]));
            }
        }
        self.len += 1;
    }

    /// Moves the hot bucket into the map.
    fn stash_hot(&mut self) {
        if let Some((bucket, items)) = self.hot.take() {
            match self.buckets.entry(bucket) {
                Entry::Vacant(e) => {
                    e.insert(items);
                }
                Entry::Occupied(mut e) => e.get_mut().extend(items),
            }
        }
    }

    /// Moves every item with time `< watermark` into `out`.
    pub fn take_before(&mut self, watermark: Time, out: &mut Vec<(Time, T)>) {
        if self
            .hot
            .as_ref()
            .is_some_and(|(b, _)| b * BUCKET_MS < watermark)
        {
            self.stash_hot();
        }
        while let Some(mut entry) = self.buckets.first_entry() {
            let start = *entry.key() * BUCKET_MS;
            if start >= watermark {
                break;
            }
            if start.saturating_add(BUCKET_MS) <= watermark {
                let items = entry.remove();
                self.len -= items.len();
                out.extend(items);
                continue;
            }
            let before = out.len();
            out.extend(entry.get_mut().extract_if(.., |(t, _)| *t < watermark));
            self.len -= out.len() - before;
            if entry.get().is_empty() {
                entry.remove();
            }
            break;
        }
    }

    /// Earliest time queued.
    pub fn first_time(&self) -> Option<Time> {
        let min = |items: &Vec<(Time, T)>| items.iter().map(|(t, _)| *t).min();
        let first = self.buckets.values().next().and_then(min);
        let hot = self.hot.as_ref().and_then(|(_, items)| min(items));
        first.into_iter().chain(hot).min()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate bytes held (items plus a vector and tree slot per bucket), in O(1).
    pub fn heap_bytes(&self) -> usize {
        self.len * std::mem::size_of::<(Time, T)>() + self.buckets.len() * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Against a plain list: every step takes exactly the items before its watermark,
        /// and the earliest time is the list's.
        #[test]
        fn drains_as_a_list_does(
            steps in proptest::collection::vec(
                (proptest::collection::vec(0u64..10_000, 0..20), 0u64..12_000), 1..12),
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
