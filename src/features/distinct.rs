//! Lifetime distinct-count sets: each feature's values numbered densely on a worker, and
//! each key's set a bitmap of those numbers (a hash set when the bitmap would be sparse).
//!
//! A user who saw 60 of 500 campaigns holds 64 bytes, one cache line that the table
//! operator fetches ahead, instead of a hash set of 64-bit hashes probed at a random slot.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::prefetch::{lines, prefetch};

/// Dense numbers for one feature's distinct values (their hashes) on one worker, in the
/// order they are first seen. Only set sizes are ever read, so the numbering may differ
/// between workers and runs without changing a result.
#[derive(Debug, Default)]
pub struct DistinctIds {
    ids: FxHashMap<u64, u32>,
}

impl DistinctIds {
    /// The number of the value with hash `hash` (a new one if first seen).
    pub fn id(&mut self, hash: u64) -> u32 {
        let next = u32::try_from(self.ids.len()).expect("under 2^32 distinct values");
        *self.ids.entry(hash).or_insert(next)
    }

    /// Rough heap bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity() * 13
    }
}

/// The value numbers (see [`DistinctIds`]) one key has seen.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DistinctSet {
    len: u32,
    members: Members,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Members {
    /// Bit `n % 64` of word `n / 64` set: number `n` is a member. Kept while the bitmap is
    /// at most [`DENSE_WORDS`] words or one word per member.
    Bits(Vec<u64>),
    /// Sparse sets (numbers far apart): hashed.
    Hashed(FxHashSet<u32>),
}

impl Default for Members {
    fn default() -> Self {
        Members::Bits(Vec::new())
    }
}

/// A bitmap may always grow to this many words (one cache line).
const DENSE_WORDS: usize = 8;

impl DistinctSet {
    /// Adds number `id`.
    pub fn insert(&mut self, id: u32) {
        match &mut self.members {
            Members::Bits(words) => {
                let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
                if word >= words.len() {
                    if word + 1 > DENSE_WORDS.max(self.len as usize + 1) {
                        let mut set: FxHashSet<u32> = bits(words).collect();
                        set.insert(id);
                        self.len = set.len() as u32;
                        self.members = Members::Hashed(set);
                        return;
                    }
                    words.resize(word + 1, 0);
                }
                self.len += u32::from(words[word] & bit == 0);
                words[word] |= bit;
            }
            Members::Hashed(set) => self.len += u32::from(set.insert(id)),
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no value was seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Asks the CPU to fetch a bitmap into cache (hashed sets are probed at random).
    pub fn prefetch(&self) {
        if let Members::Bits(words) = &self.members {
            prefetch(words.as_ptr(), lines(words.len() * 8));
        }
    }

    /// Rough heap bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + match &self.members {
                Members::Bits(words) => words.capacity() * 8,
                Members::Hashed(set) => set.capacity() * 5,
            }
    }
}

/// The numbers whose bits are set in `words`.
fn bits(words: &[u64]) -> impl Iterator<Item = u32> + '_ {
    words.iter().enumerate().flat_map(|(w, &word)| {
        (0..64)
            .filter(move |b| word >> b & 1 == 1)
            .map(move |b| (w * 64 + b) as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn sparse_numbers_move_the_set_to_hashing() {
        let mut set = DistinctSet::default();
        set.insert(3);
        set.insert(500);
        assert!(matches!(set.members, Members::Bits(_)));
        set.insert(1_000_000);
        assert!(matches!(set.members, Members::Hashed(_)));
        set.insert(3);
        assert_eq!(set.len(), 3);
    }

    proptest::proptest! {
        /// A set counts the distinct numbers inserted, dense or sparse, in any order.
        #[test]
        fn distinct_set_counts_what_a_btree_set_counts(
            ids in proptest::collection::vec(
                proptest::prop_oneof![0u32..700, 0u32..5_000_000], 0..300),
        ) {
            let mut set = DistinctSet::default();
            let mut reference = BTreeSet::new();
            for id in ids {
                set.insert(id);
                reference.insert(id);
                proptest::prop_assert_eq!(set.len(), reference.len());
            }
        }

        /// Numbering is a bijection on the hashes seen: equal hashes, equal numbers.
        #[test]
        fn distinct_ids_number_each_hash_once(hashes in proptest::collection::vec(0u64..50, 0..100)) {
            let mut ids = DistinctIds::default();
            let numbers: Vec<u32> = hashes.iter().map(|&h| ids.id(h)).collect();
            for (a, na) in hashes.iter().zip(&numbers) {
                for (b, nb) in hashes.iter().zip(&numbers) {
                    proptest::prop_assert_eq!(a == b, na == nb);
                }
            }
        }
    }
}
