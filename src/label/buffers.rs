//! A map from 64-bit id hashes to byte buffers, whose slots can be fetched into cache from a
//! hash alone (open addressing, linear probing, removal by backward shift).

use crate::prefetch::{lines, prefetch};

/// Hash -> boxed byte buffer.
#[derive(Default)]
pub struct Buffers {
    /// A power of two long (or empty); `None` = free.
    slots: Vec<(u64, Option<Box<[u8]>>)>,
    len: usize,
}

/// The index grows past this load (numerator over 8).
const MAX_LOAD_EIGHTHS: usize = 7;

impl Buffers {
    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no buffer is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Home slot of a hash: Fibonacci hashing of the high bits (the low bits picked the worker).
    fn home(&self, hash: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    /// The slot holding `hash` (`Ok`), or the free slot ending its probe sequence (`Err`).
    fn position(&self, hash: u64) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            match &self.slots[i] {
                (_, None) => return Err(i),
                (h, Some(_)) if *h == hash => return Ok(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The buffer of `hash`.
    pub fn get(&self, hash: u64) -> Option<&[u8]> {
        if self.is_empty() {
            return None;
        }
        let i = self.position(hash).ok()?;
        self.slots[i].1.as_deref()
    }

    /// The buffer of `hash`, to change or replace.
    pub fn get_mut(&mut self, hash: u64) -> Option<&mut Box<[u8]>> {
        if self.is_empty() {
            return None;
        }
        let i = self.position(hash).ok()?;
        self.slots[i].1.as_mut()
    }

    /// Adds the buffer of a `hash` that has none.
    pub fn insert(&mut self, hash: u64, buf: Box<[u8]>) -> &mut Box<[u8]> {
        if (self.len + 1) * 8 > self.slots.len() * MAX_LOAD_EIGHTHS {
            self.grow();
        }
        let i = self.position(hash).expect_err("inserted once");
        self.len += 1;
        self.slots[i] = (hash, Some(buf));
        self.slots[i].1.as_mut().expect("just set")
    }

    /// Takes the buffer of `hash` out.
    pub fn remove(&mut self, hash: u64) -> Option<Box<[u8]>> {
        if self.is_empty() {
            return None;
        }
        let mut free = self.position(hash).ok()?;
        let taken = self.slots[free].1.take();
        self.len -= 1;
        // Backward shift: move later entries of the run into the hole when their probe
        // sequence passes it, so lookups never meet a hole before their entry.
        let mask = self.slots.len() - 1;
        let mut j = free;
        loop {
            j = (j + 1) & mask;
            if self.slots[j].1.is_none() {
                return taken;
            }
            let home = self.home(self.slots[j].0);
            let stays = if free <= j {
                free < home && home <= j
            } else {
                free < home || home <= j
            };
            if !stays {
                self.slots.swap(free, j);
                free = j;
            }
        }
    }

    /// Fetches the slot where `hash` starts probing.
    pub fn prefetch_slot(&self, hash: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[self.home(hash)], 1);
        }
    }

    /// Fetches the buffer of `hash`, if its home slot (which should be cached) holds it.
    pub fn prefetch_buffer(&self, hash: u64) {
        if let Some((h, Some(buf))) = self.slots.get(self.home(hash)) {
            if *h == hash {
                prefetch(buf.as_ptr(), lines(buf.len()));
            }
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, (0..size).map(|_| (0, None)).collect());
        for (hash, buf) in old {
            if buf.is_some() {
                let i = self.position(hash).expect_err("distinct hashes");
                self.slots[i] = (hash, buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Any sequence of inserts and removals (hashes crowded into few home slots, so
        /// runs wrap and shift) leaves the same contents as a std map.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..64), 0..400)) {
            let mut b = Buffers::default();
            let mut reference: HashMap<u64, Box<[u8]>> = HashMap::new();
            for (insert, k) in ops {
                // Few distinct high bits: many hashes share a home slot.
                let hash = (k % 8) << 61 | k;
                if insert && !reference.contains_key(&hash) {
                    let buf: Box<[u8]> = k.to_le_bytes().into();
                    b.insert(hash, buf.clone());
                    reference.insert(hash, buf);
                } else {
                    prop_assert_eq!(b.remove(hash), reference.remove(&hash));
                }
                prop_assert_eq!(b.len(), reference.len());
                for (h, buf) in &reference {
                    prop_assert_eq!(b.get(*h), Some(&buf[..]));
                }
            }
        }
    }
}
