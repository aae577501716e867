//! Table records waiting for the watermark to pass their time.

use std::cmp::Ordering;
use std::collections::binary_heap::{BinaryHeap, PeekMut};

use super::records::TableRecord;
use crate::time::Time;

/// Records waiting for the watermark, as the batches they came in (each with its earliest
/// and latest time), in a heap by earliest time. A pass takes the due batches off the
/// heap's top and never looks at the others (the bench's runs keep ~570 batches waiting
/// on average; a list was scanned whole on each of ~2,400 passes). Moving the waiting
/// records down one vector on every pass (before batches) had copied each record ~2.5
/// times more.
#[derive(Default)]
pub struct WaitingRecords {
    batches: BinaryHeap<Batch>,
}

/// Records received together, and the range of their times.
struct Batch {
    records: Vec<TableRecord>,
    first: Time,
    last: Time,
}

/// Earliest first: `BinaryHeap` is a max-heap, so the order is reversed.
impl Ord for Batch {
    fn cmp(&self, other: &Self) -> Ordering {
        other.first.cmp(&self.first)
    }
}

impl PartialOrd for Batch {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        self.first == other.first
    }
}

impl Eq for Batch {}

impl WaitingRecords {
    /// Takes the records of `data` (left empty) to wait.
    pub fn append(&mut self, data: &mut Vec<TableRecord>) {
        let mut times = data.iter().map(|r| r.time);
        let Some(t) = times.next() else {
            return;
        };
        let (first, last) = times.fold((t, t), |(lo, hi), t| (lo.min(t), hi.max(t)));
        self.batches.push(Batch {
            records: std::mem::take(data),
            first,
            last,
        });
    }

    /// The earliest time of the waiting records.
    pub fn min(&self) -> Option<Time> {
        self.batches.peek().map(|b| b.first)
    }

    /// Moves the records before `watermark` into `ready` (cleared first; it keeps its
    /// capacity between passes: a fresh multi-megabyte vector per pass was fresh pages for
    /// the kernel to zero).
    pub fn take_before(&mut self, watermark: Time, ready: &mut Vec<TableRecord>) {
        ready.clear();
        while let Some(mut b) = self.batches.peek_mut().filter(|b| b.first < watermark) {
            if b.last < watermark {
                ready.append(&mut PeekMut::pop(b).records);
                continue;
            }
            // Partly due: what stays starts at or after the watermark, so the batch sinks
            // below every due one when `b` is dropped.
            ready.extend(b.records.extract_if(.., |r| r.time < watermark));
            b.first = b.records.iter().map(|r| r.time).min().unwrap_or(b.last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Against a plain list: each pass takes exactly the records before its watermark,
        /// and the earliest waiting time is the list's.
        #[test]
        fn buffered_records_are_taken_exactly_when_the_watermark_passes_them(
            steps in proptest::collection::vec(
                (proptest::collection::vec(proptest::collection::vec(0u64..5_000, 0..20), 0..4),
                 0u64..6_000),
                1..12),
        ) {
            let mut waiting = WaitingRecords::default();
            let mut list: Vec<Time> = Vec::new();
            let mut ready = Vec::new();
            for (batches, watermark) in steps {
                for times in batches {
                    let mut data: Vec<TableRecord> = times
                        .iter()
                        .map(|&t| crate::features::records::tests::record(t, 0, 0, 0, 0, 0))
                        .collect();
                    waiting.append(&mut data);
                    list.extend(times);
                }
                proptest::prop_assert_eq!(waiting.min(), list.iter().copied().min());
                waiting.take_before(watermark, &mut ready);
                let mut got: Vec<Time> = ready.iter().map(|r| r.time).collect();
                got.sort();
                let mut want: Vec<Time> = list.extract_if(.., |t| *t < watermark).collect();
                want.sort();
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(waiting.min(), list.iter().copied().min());
            }
        }
    }
}
