//! A map from 64-bit hashes to values whose slots can be fetched into cache from the hash
//! alone (open addressing, linear probing, removal by backward shift). One value per hash:
//! callers keep what collides (rare with 64-bit hashes) elsewhere.

use crate::prefetch::prefetch;

/// Where `hash` starts probing in a power-of-two table of `len` slots: Fibonacci hashing,
/// so the high bits decide (the low bits of a routing hash picked the worker, so they are
/// the same for every hash a worker holds).
pub fn home_slot(hash: u64, len: usize) -> usize {
    let bits = len.trailing_zeros();
    (mixed(hash) >> (64 - bits)) as usize
}

/// `hash` mixed as [`home_slot`] mixes it: its high bits are the home slot's.
pub fn mixed(hash: u64) -> u64 {
    hash.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Hash -> value.
pub struct HashSlots<V> {
    /// A power of two long (or empty); `None` = free.
    slots: Vec<(u64, Option<V>)>,
    len: usize,
    /// The slots grow past this load (numerator over 8).
    max_load_eighths: usize,
}

impl<V> Default for HashSlots<V> {
    fn default() -> Self {
        HashSlots::with_max_load(MAX_LOAD_EIGHTHS)
    }
}

/// The default load past which the slots grow (numerator over 8): dense, for maps whose
/// memory counts more than their probes.
const MAX_LOAD_EIGHTHS: usize = 7;

impl<V> HashSlots<V> {
    /// An empty map whose slots grow past a load of `eighths` / 8. Linear probing for an
    /// absent hash scans about (1 + 1 / (1 - load)^2) / 2 slots: 33 at 7/8, 2.5 at 1/2, so
    /// maps that insert new hashes all the time want a low load.
    pub fn with_max_load(eighths: usize) -> Self {
        assert!((1..8).contains(&eighths), "a load under 1");
        HashSlots {
            slots: Vec::new(),
            len: 0,
            max_load_eighths: eighths,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn home(&self, hash: u64) -> usize {
        home_slot(hash, self.slots.len())
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

    /// The value of `hash`.
    pub fn get(&self, hash: u64) -> Option<&V> {
        if self.is_empty() {
            return None;
        }
        let i = self.position(hash).ok()?;
        self.slots[i].1.as_ref()
    }

    /// The value of `hash`, to change or replace.
    pub fn get_mut(&mut self, hash: u64) -> Option<&mut V> {
        if self.is_empty() {
            return None;
        }
        let i = self.position(hash).ok()?;
        self.slots[i].1.as_mut()
    }

    /// Adds the value of a `hash` that has none.
    pub fn insert(&mut self, hash: u64, value: V) -> &mut V {
        if (self.len + 1) * 8 > self.slots.len() * self.max_load_eighths {
            self.grow();
        }
        let i = self.position(hash).expect_err("inserted once");
        self.len += 1;
        self.slots[i] = (hash, Some(value));
        self.slots[i].1.as_mut().expect("just set")
    }

    /// Sets the value of `hash`, replacing any it had.
    pub fn set(&mut self, hash: u64, value: V) {
        if (self.len + 1) * 8 > self.slots.len() * self.max_load_eighths {
            self.grow();
        }
        match self.position(hash) {
            Ok(i) => self.slots[i].1 = Some(value),
            Err(i) => {
                self.len += 1;
                self.slots[i] = (hash, Some(value));
            }
        }
    }

    /// Takes the value of `hash` out.
    pub fn remove(&mut self, hash: u64) -> Option<V> {
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

    /// The value of `hash` if its home slot holds it: no probing, so it reads only the
    /// line [`prefetch_slot`](Self::prefetch_slot) fetched.
    pub fn at_home(&self, hash: u64) -> Option<&V> {
        match self.slots.get(self.home(hash)) {
            Some((h, Some(v))) if *h == hash => Some(v),
            _ => None,
        }
    }

    /// Keeps only the values `keep` accepts; the slots shrink to fit them.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        for slot in &mut self.slots {
            if slot.1.as_ref().is_some_and(|v| !keep(v)) {
                slot.1 = None;
                self.len -= 1;
            }
        }
        let mut size = 16;
        while (self.len + 1) * 8 > size * self.max_load_eighths {
            size *= 2;
        }
        self.resize(size);
    }

    fn grow(&mut self) {
        self.resize((self.slots.len() * 2).max(16));
    }

    /// Places every value again in `size` fresh slots.
    fn resize(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, (0..size).map(|_| (0, None)).collect());
        for (hash, value) in old {
            if value.is_some() {
                let i = self.position(hash).expect_err("one value per hash");
                self.slots[i] = (hash, value);
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
        fn behaves_like_a_map(ops in proptest::collection::vec((0u8..3, 0u64..64), 0..400)) {
            let mut b: HashSlots<Box<[u8]>> = HashSlots::default();
            let mut reference: HashMap<u64, Box<[u8]>> = HashMap::new();
            for (op, k) in ops {
                // Few distinct high bits: many hashes share a home slot.
                let hash = (k % 8) << 61 | k;
                if op == 2 {
                    b.retain(|buf| buf[0] % 3 != k as u8 % 3);
                    reference.retain(|_, buf| buf[0] % 3 != k as u8 % 3);
                } else if op == 1 && !reference.contains_key(&hash) {
                    let buf: Box<[u8]> = k.to_le_bytes().into();
                    b.insert(hash, buf.clone());
                    reference.insert(hash, buf);
                } else {
                    prop_assert_eq!(b.remove(hash), reference.remove(&hash));
                }
                prop_assert_eq!(b.len(), reference.len());
                // Setting a present value replaces it in place.
                if let Some(buf) = reference.get(&hash) {
                    b.set(hash, buf.clone());
                }
                for (h, buf) in &reference {
                    prop_assert_eq!(b.get(*h), Some(buf));
                }
            }
        }
    }
}
