//! Items keyed by event time, taken out once the watermark passes them.

use std::collections::BTreeMap;

use crate::time::Time;

/// Width of a bucket: items of one second share a vector, so pushes of nearly sorted
/// times are O(1) and a pass takes whole buckets.
const BUCKET_MS: Time = 1_000;

/// A queue of `(time, item)` drained in watermark steps (order within a step is not kept).
pub struct TimeQueue<T> {
    buckets: BTreeMap<Time, Vec<(Time, T)>>,
    len: usize,
}

impl<T> Default for TimeQueue<T> {
    fn default() -> Self {
        TimeQueue {
            buckets: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> TimeQueue<T> {
    /// Adds an item due at `time`.
    pub fn push(&mut self, time: Time, item: T) {
        self.buckets
            .entry(time / BUCKET_MS)
            .or_default()
            .push((time, item));
        self.len += 1;
    }

    /// Moves every item with time `< watermark` into `out`.
    pub fn take_before(&mut self, watermark: Time, out: &mut Vec<(Time, T)>) {
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
        self.buckets
            .values()
            .next()
            .and_then(|b| b.iter().map(|(t, _)| *t).min())
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
