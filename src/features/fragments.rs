//! Table values of examples on their way to the label join, batched per label-join worker.
//!
//! A table worker answers many lookups per pass. Each answer is a few dozen encoded bytes
//! (see [`crate::label::pending`]); sending each as its own record cost an allocation, a
//! free on the other worker and an exchange push per example. Instead each pass fills one
//! batch per label-join worker, and the exchange routes the batch whole.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::event::stable_hash;

/// The label-join worker of an example whose id hashes to `hash`, among `peers`. The label
/// join routes every input by this number, which is below `peers`, so the exchange sends
/// it to that worker (timely takes the number modulo the worker count).
pub fn label_worker(hash: u64, peers: usize) -> u64 {
    hash % peers as u64
}

/// Encoded table values of examples, all bound for one label-join worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fragments {
    /// The label-join worker ([`label_worker`]).
    pub worker: u64,
    /// Per example: its id, the [`stable_hash`] of the id, and the end of its segments
    /// in `bytes` (they start where the previous example's end).
    pub examples: Vec<(CompactString, u64, usize)>,
    /// Every example's segments, back to back.
    pub bytes: Vec<u8>,
}

impl Fragments {
    /// Each example's id, id hash and segments.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64, &[u8])> {
        let starts = std::iter::once(0).chain(self.examples.iter().map(|e| e.2));
        self.examples
            .iter()
            .zip(starts)
            .map(|((id, hash, end), start)| (id.as_str(), *hash, &self.bytes[start..*end]))
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether no example has values here.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
}

/// The batches of one pass of a table worker, one per label-join worker.
pub struct FragmentsBuilder {
    batches: Vec<Fragments>,
    /// The batch the last example went to: an example's lookups written next to each
    /// other share one entry (a pass answers lookups key by key, so those of one example
    /// in several tables are usually apart).
    last: Option<usize>,
}

impl FragmentsBuilder {
    /// Empty batches for `peers` label-join workers, with room for `room[w]` (examples,
    /// bytes) in worker `w`'s and half as much again: the caller passes the previous
    /// pass's [`FragmentsBuilder::sizes`]. Grown from empty, a pass's batches were
    /// reallocated and copied once per doubling; with exactly the last pass's room, every
    /// larger pass still copied its batch once. Room that goes unused is never touched.
    pub fn new(peers: usize, room: &[(usize, usize)]) -> Self {
        let headroom = |n: usize| n + n / 2;
        FragmentsBuilder {
            batches: (0..peers)
                .map(|w| {
                    let (examples, bytes) = room.get(w).copied().unwrap_or_default();
                    Fragments {
                        worker: w as u64,
                        examples: Vec::with_capacity(headroom(examples)),
                        bytes: Vec::with_capacity(headroom(bytes)),
                    }
                })
                .collect(),
            last: None,
        }
    }

    /// Per label-join worker: the examples and bytes of its batch so far.
    pub fn sizes(&self) -> Vec<(usize, usize)> {
        self.batches
            .iter()
            .map(|b| (b.examples.len(), b.bytes.len()))
            .collect()
    }

    /// The bytes to append example `id`'s next segment to; call [`FragmentsBuilder::end`]
    /// after writing it.
    pub fn segment_of(&mut self, id: &CompactString) -> &mut Vec<u8> {
        let same = self
            .last
            .is_some_and(|b| self.batches[b].examples.last().is_some_and(|e| e.0 == *id));
        if !same {
            let hash = stable_hash(id.as_bytes());
            let b = label_worker(hash, self.batches.len()) as usize;
            let batch = &mut self.batches[b];
            batch.examples.push((id.clone(), hash, batch.bytes.len()));
            self.last = Some(b);
        }
        &mut self.batches[self.last.expect("set above")].bytes
    }

    /// Records the end of the segment just written.
    pub fn end(&mut self) {
        let batch = &mut self.batches[self.last.expect("a segment was started")];
        batch.examples.last_mut().expect("a segment was started").2 = batch.bytes.len();
    }

    /// The non-empty batches.
    pub fn finish(self) -> impl Iterator<Item = Fragments> {
        self.batches.into_iter().filter(|b| !b.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_examples_segments_from_several_tables_share_one_entry() {
        let mut b = FragmentsBuilder::new(3, &[(1, 8)]);
        for (id, segment) in [("a", &[1u8, 2][..]), ("a", &[3]), ("b", &[4]), ("a", &[5])] {
            b.segment_of(&id.into()).extend_from_slice(segment);
            b.end();
        }
        let mut seen: Vec<(String, Vec<u8>, u64)> = Vec::new();
        for batch in b.finish() {
            for (id, hash, bytes) in batch.iter() {
                assert_eq!(hash, stable_hash(id.as_bytes()));
                assert_eq!(batch.worker, label_worker(hash, 3));
                seen.push((id.to_owned(), bytes.to_vec(), batch.worker));
            }
        }
        seen.sort();
        let (a, b) = (
            label_worker(stable_hash(b"a"), 3),
            label_worker(stable_hash(b"b"), 3),
        );
        let mut want = vec![
            ("a".to_owned(), vec![1, 2, 3], a),
            ("a".to_owned(), vec![5], a),
            ("b".to_owned(), vec![4], b),
        ];
        want.sort();
        assert_eq!(seen, want);
    }
}
