//! One table's states on a worker: key -> a row of aggregate states, in flat arrays that a
//! batch of lookups can fetch into cache ahead of use.
//!
//! The index is open addressing with linear probing over 8-byte slots (a 32-bit hash tag
//! and an entry number), so a key's home slot is known from its hash alone and can be
//! prefetched; keys and rows of states lie back to back in chunks that never move (see
//! [`ChunkedRows`]). Keys are never removed.
//! Callers pass each key's [`stable_hash`](crate::event::stable_hash). A slot's tag also
//! gives its home slot, so a growing index moves slots without reading keys.

use compact_str::CompactString;

use super::agg::AggState;
use crate::chunked::ChunkedRows;
use crate::hash_slots::mixed;
use crate::prefetch::{lines, prefetch};

/// Key -> row of `stride` states.
pub struct KeyedStates {
    /// Slots: 0 = empty, else `tag << 32 | (entry + 1)`; a power of two long.
    index: Vec<u64>,
    /// Per entry: its key (24 bytes inline for keys up to 24 bytes).
    keys: ChunkedRows<CompactString>,
    /// Per entry: its `stride` states.
    states: ChunkedRows<AggState>,
}

/// Where a key may be, found from cached index slots without reading its key: the entry
/// whose tag matches (to be checked against the key), or none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate(Option<u32>);

impl Candidate {
    /// No candidate: [`KeyedStates::find`] probes the index.
    pub const NONE: Candidate = Candidate(None);
}

/// The index grows past this load (numerator over 8). Near 7/8 a probe for an absent key
/// scans more slots (the label join's maps grow at 1/2 for that), but here the slots hold
/// tags and the walls measured no worse, while 6/8 doubled the bench's largest index at
/// 3.1 M keys a worker for ~110 MiB more peak RSS (docs/PERFORMANCE-HISTORY.md).
const MAX_LOAD_EIGHTHS: usize = 7;

/// The tag of a hash: the high 32 bits of the hash mixed as
/// [`home_slot`](crate::hash_slots::home_slot) mixes it, which are also the bits that pick
/// its home slot in any index of up to 2^32 slots.
fn tag(hash: u64) -> u64 {
    mixed(hash) >> 32
}

impl KeyedStates {
    /// An empty table whose rows hold `stride` states.
    pub fn new(stride: usize) -> Self {
        KeyedStates {
            index: vec![0; 16],
            keys: ChunkedRows::new(1),
            states: ChunkedRows::new(stride),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key has a row.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn home(&self, hash: u64) -> usize {
        self.home_of_tag(tag(hash))
    }

    /// Home slot of a tag: its high bits, as many as the index length has.
    fn home_of_tag(&self, tag: u64) -> usize {
        (tag >> (32 - self.index.len().trailing_zeros())) as usize
    }

    /// Fetches the index slots where `hash` starts probing.
    pub fn prefetch_slot(&self, hash: u64) {
        prefetch(&self.index[self.home(hash)], 1);
    }

    /// The first entry on `hash`'s probe sequence whose tag matches, reading index slots
    /// only; `None` if the key is absent.
    pub fn candidate(&self, hash: u64) -> Candidate {
        let mask = self.index.len() - 1;
        let mut slot = self.home(hash);
        loop {
            match self.index[slot] {
                0 => return Candidate(None),
                s if s >> 32 == tag(hash) => return Candidate(Some((s as u32) - 1)),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// The states of a candidate (none for no candidate).
    fn candidate_row(&self, c: Candidate) -> &[AggState] {
        c.0.map_or(&[], |e| self.states.row(e as usize))
    }

    /// Fetches a candidate's key and states.
    pub fn prefetch_entry(&self, c: Candidate) {
        if let Some(e) = c.0 {
            prefetch(self.key(e as usize), 1);
        }
        let row = self.candidate_row(c);
        prefetch(row.as_ptr(), lines(std::mem::size_of_val(row)));
    }

    /// Fetches the sets and windows of a candidate's states (its row should be cached).
    pub fn prefetch_heap(&self, c: Candidate) {
        self.candidate_row(c)
            .iter()
            .for_each(AggState::prefetch_heap);
    }

    /// Fetches the buffers behind a candidate's windows (its windows should be cached).
    pub fn prefetch_buffers(&self, c: Candidate) {
        self.candidate_row(c)
            .iter()
            .for_each(AggState::prefetch_buffers);
    }

    /// The entry of `key`, checking a candidate first; `None` if absent.
    pub fn find(&self, hash: u64, key: &str, c: Candidate) -> Option<usize> {
        if let Some(e) = c.0 {
            if self.key(e as usize) == key {
                return Some(e as usize);
            }
        }
        let mask = self.index.len() - 1;
        let mut slot = self.home(hash);
        loop {
            match self.index[slot] {
                0 => return None,
                s if s >> 32 == tag(hash) => {
                    let e = (s as u32 - 1) as usize;
                    if self.key(e) == key {
                        return Some(e);
                    }
                }
                _ => {}
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The entry of `key`, added with the states `init` pushes if absent.
    pub fn find_or_insert(
        &mut self,
        hash: u64,
        key: &CompactString,
        c: Candidate,
        init: impl FnOnce(&mut Vec<AggState>),
    ) -> usize {
        if let Some(e) = self.find(hash, key, c) {
            return e;
        }
        if (self.keys.len() + 1) * 8 > self.index.len() * MAX_LOAD_EIGHTHS {
            self.grow();
        }
        let e = self.keys.len();
        self.keys.push_row(|k| k.push(key.clone()));
        self.states.push_row(init);
        self.place(hash, e);
        e
    }

    /// The key of an entry.
    pub fn key(&self, e: usize) -> &CompactString {
        &self.keys.row(e)[0]
    }

    /// The states of an entry.
    pub fn row(&mut self, e: usize) -> &mut [AggState] {
        self.states.row_mut(e)
    }

    /// Writes entry `e` into the first empty slot of its probe sequence.
    fn place(&mut self, hash: u64, e: usize) {
        self.place_slot(tag(hash) << 32 | (e as u64 + 1));
    }

    /// Writes a slot into the first empty slot of its tag's probe sequence.
    fn place_slot(&mut self, s: u64) {
        let mask = self.index.len() - 1;
        let mut slot = self.home_of_tag(s >> 32);
        while self.index[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.index[slot] = s;
    }

    /// Doubles the index and moves every slot (entry numbers do not change). Slots are
    /// placed from their tags alone, in about the order of their new homes: no key is
    /// read or hashed again, and writes to the new index are nearly sequential.
    fn grow(&mut self) {
        assert!(self.index.len() < 1 << 32, "tags place up to 2^32 slots");
        let bigger = vec![0; self.index.len() * 2];
        let old = std::mem::replace(&mut self.index, bigger);
        old.into_iter()
            .filter(|&s| s != 0)
            .for_each(|s| self.place_slot(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::stable_hash;

    fn key(i: usize) -> CompactString {
        CompactString::from(format!("u{i}|c{}", i % 7))
    }

    #[test]
    fn every_key_keeps_its_own_row_across_growth() {
        let mut t = KeyedStates::new(2);
        for i in 0..10_000 {
            let k = key(i);
            let h = stable_hash(k.as_bytes());
            let c = t.candidate(h);
            let e = t.find_or_insert(h, &k, c, |s| {
                s.extend([AggState::Count(0), AggState::Count(0)])
            });
            t.row(e)[1] = AggState::Count(i as u64);
        }
        assert_eq!(t.len(), 10_000);
        for i in 0..10_000 {
            let k = key(i);
            let h = stable_hash(k.as_bytes());
            let e = t.find(h, &k, t.candidate(h)).expect("inserted");
            assert_eq!(t.row(e)[1], AggState::Count(i as u64));
        }
        let absent = CompactString::from("nobody");
        let h = stable_hash(absent.as_bytes());
        assert_eq!(t.find(h, &absent, t.candidate(h)), None);
    }

    #[test]
    fn keys_with_equal_tags_are_told_apart() {
        // The same hash (so the same tag and home slot): only the key tells them apart.
        let mut t = KeyedStates::new(1);
        let h = 0xABCD_EF01_0000_0001;
        let (a, b) = (CompactString::from("a"), CompactString::from("b"));
        let ea = t.find_or_insert(h, &a, t.candidate(h), |s| s.push(AggState::Count(1)));
        let c = t.candidate(h);
        assert_eq!(c, Candidate(Some(ea as u32)), "the tag matches a's entry");
        let eb = t.find_or_insert(h, &b, c, |s| s.push(AggState::Count(2)));
        assert_ne!(ea, eb);
        assert_eq!(t.find(h, &a, t.candidate(h)), Some(ea));
        assert_eq!(t.find(h, &b, t.candidate(h)), Some(eb));
        assert_eq!(t.row(eb)[0], AggState::Count(2));
    }
}
