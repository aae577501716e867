//! Examples waiting for their label, in a compact map: 24-byte slots keyed by a hash of
//! the id, each owning one byte buffer `[time][outcomes][used][id][feature segments...]`.
//!
//! An example's bytes arrive in several appends (its event features, then the table values
//! from each table worker). A buffer is created as large as recent examples ended up, so
//! later appends usually fit in place instead of each reallocating.

use compact_str::CompactString;
use rustc_hash::FxHashMap as HashMap;

use crate::event::stable_hash;
use crate::hash_slots::HashSlots;
use crate::prefetch::{lines, prefetch};
use crate::time::Time;

const OUTCOMES: usize = 8;
const USED: usize = 12;
const ID_LEN: usize = 16;
const ID: usize = 17;
/// Finished examples per update of [`WaitingExamples::typical`].
const TYPICAL_EVERY: usize = 1024;
/// Percentile of recent final sizes new buffers get: few examples outgrow it, and one
/// rare long example does not set it. (The median instead saved ~3 B per held example.)
const TYPICAL_PERCENTILE: usize = 99;
/// Finished buffers kept for new examples, at most: a pass's new examples take the
/// buffers its last pass finished, still in cache, instead of cold blocks from the
/// allocator (whose free lists run through the blocks themselves).
const SPARE_MAX: usize = 4096;

/// An example id with its [`stable_hash`], computed once per input however often the
/// map is probed for it.
#[derive(Debug, Clone, Copy)]
pub struct Id<'a> {
    /// The id.
    pub text: &'a str,
    /// Its hash (the label join's exchange hash too).
    pub hash: u64,
}

impl<'a> Id<'a> {
    /// The id and its hash.
    pub fn new(text: &'a str) -> Self {
        Id {
            text,
            hash: stable_hash(text.as_bytes()),
        }
    }
}

/// Where an example's buffer lives. Almost always `Main`; an id whose hash equals another
/// waiting id's (or longer than 255 bytes) is kept by id instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// In the hash-keyed map.
    Main(u64),
    /// In the overflow map.
    Overflow(CompactString),
}

/// The waiting examples of one worker.
#[derive(Default)]
pub struct WaitingExamples {
    main: HashSlots<Box<[u8]>>,
    overflow: HashMap<CompactString, Box<[u8]>>,
    /// Sum of buffer lengths.
    buffer_bytes: usize,
    /// Where an append is written before it is copied into its buffer.
    scratch: Vec<u8>,
    /// The size new buffers get: a percentile ([`TYPICAL_PERCENTILE`]) of the used sizes
    /// of a recent block of [`TYPICAL_EVERY`] finished examples (until one finished, the
    /// largest example so far: with 0, buffers made before the first block regrew at
    /// every append).
    typical: usize,
    /// Used sizes of the block of finished examples being seen.
    block: Vec<u32>,
    /// Whether a block has set [`WaitingExamples::typical`].
    measured: bool,
    /// Finished buffers kept for new examples.
    spare: Spares,
}

/// Finished buffers kept for new examples, the latest last (see [`SPARE_MAX`]).
#[derive(Default)]
struct Spares {
    buffers: Vec<Box<[u8]>>,
    /// Sum of their lengths.
    bytes: usize,
}

impl Spares {
    /// The latest spare, if it fits `size` bytes ([`fits`]). One that does not is dropped:
    /// it was kept before the typical size changed (or the example is unusually long), and
    /// stale spares must not pile up at the top.
    fn take(&mut self, size: usize) -> Option<Box<[u8]>> {
        let buf = self.buffers.pop()?;
        self.bytes -= buf.len();
        fits(&buf, size).then_some(buf)
    }

    /// Keeps `buf` if it fits `typical` bytes and fewer than [`SPARE_MAX`] are kept.
    fn keep(&mut self, buf: Box<[u8]>, typical: usize) {
        if fits(&buf, typical) && self.buffers.len() < SPARE_MAX {
            self.bytes += buf.len();
            self.buffers.push(buf);
        }
    }
}

/// Whether `buf` has room for `size` bytes and no more than an eighth over.
fn fits(buf: &[u8], size: usize) -> bool {
    (size..=size + size / 8).contains(&buf.len())
}

/// Read access to one example's buffer (its used bytes).
pub struct Example<'a>(&'a [u8]);

impl<'a> Example<'a> {
    /// The example held in `buf`.
    pub fn of(buf: &'a [u8]) -> Self {
        Example(&buf[..used(buf)])
    }

    /// Example time; `Time::MAX` until the example itself arrived.
    pub fn time(&self) -> Time {
        Time::from_le_bytes(self.0[..OUTCOMES].try_into().unwrap())
    }
    /// Outcomes counted in its window.
    pub fn outcomes(&self) -> u32 {
        u32::from_le_bytes(self.0[OUTCOMES..USED].try_into().unwrap())
    }
    /// The example id.
    pub fn id(&self) -> &str {
        let bytes = self.id_bytes();
        if bytes.is_ascii() {
            // Safety: ASCII is UTF-8. Checked as whole words: decoding a short id was
            // ~150 instructions a row.
            return unsafe { std::str::from_utf8_unchecked(bytes) };
        }
        std::str::from_utf8(bytes).expect("written from a str")
    }
    fn id_bytes(&self) -> &[u8] {
        &self.0[ID..ID + self.0[ID_LEN] as usize]
    }
    /// The encoded feature segments.
    pub fn segments(&self) -> &[u8] {
        &self.0[ID + self.0[ID_LEN] as usize..]
    }
}

/// Bytes of `buf` in use.
fn used(buf: &[u8]) -> usize {
    u32::from_le_bytes(buf[USED..ID_LEN].try_into().unwrap()) as usize
}

/// A new buffer of `size` bytes or more (a spare of about that size if any): unknown
/// time, no outcomes, the id (empty for overflow entries), then `first`.
fn new_buffer(id: &[u8], first: &[u8], size: usize, spare: &mut Spares) -> Box<[u8]> {
    let used = ID + id.len() + first.len();
    let mut header = [0u8; ID];
    header[..OUTCOMES].copy_from_slice(&Time::MAX.to_le_bytes());
    header[USED..ID_LEN].copy_from_slice(&(used as u32).to_le_bytes());
    header[ID_LEN] = id.len() as u8;
    let parts = [&header[..], id, first];
    match spare.take(size.max(used)) {
        Some(mut buf) => {
            put_parts(&mut buf, &parts);
            buf
        }
        None => with_room(&parts, size),
    }
}

/// Appends `more` to the used bytes of `buf`, in place if it has room, else in a new buffer
/// of `size` bytes or exactly what is needed.
fn append_to(buf: &mut Box<[u8]>, more: &[u8], size: usize) {
    let (start, end) = (used(buf), used(buf) + more.len());
    if end > buf.len() {
        *buf = with_room(&[&buf[..start]], size.max(end));
    }
    buf[start..end].copy_from_slice(more);
    buf[USED..ID_LEN].copy_from_slice(&(end as u32).to_le_bytes());
}

/// `parts` back to back in a buffer of `size` bytes, or of their length if longer.
fn with_room(parts: &[&[u8]], size: usize) -> Box<[u8]> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // Filled, then only the room past the parts zeroed: a zeroed allocation (`vec![0; n]`)
    // cleared the whole block before the parts were copied over it.
    let mut buf = Vec::with_capacity(size.max(len));
    for part in parts {
        buf.extend_from_slice(part);
    }
    buf.resize(size.max(len), 0);
    buf.into_boxed_slice()
}

/// Writes `parts` back to back at the start of `buf`.
fn put_parts(buf: &mut [u8], parts: &[&[u8]]) {
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
}

impl WaitingExamples {
    /// Number of waiting examples.
    pub fn len(&self) -> usize {
        self.main.len() + self.overflow.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held: map slots at their capacity plus buffers (spares included).
    pub fn heap_bytes(&self) -> usize {
        self.main.capacity() * std::mem::size_of::<(u64, Box<[u8]>)>()
            + self.overflow.capacity() * (std::mem::size_of::<(CompactString, Box<[u8]>)>() + 1)
            + self.buffer_bytes
            + self.spare.bytes
    }

    fn locate(&self, id: Id) -> Option<Slot> {
        match self.main.get(id.hash) {
            Some(buf) if Example::of(buf).id_bytes() == id.text.as_bytes() => {
                Some(Slot::Main(id.hash))
            }
            _ => self
                .overflow
                .contains_key(id.text)
                .then(|| Slot::Overflow(id.text.into())),
        }
    }

    fn buffer(&mut self, slot: &Slot) -> &mut Box<[u8]> {
        match slot {
            Slot::Main(h) => self.main.get_mut(*h).expect("located"),
            Slot::Overflow(id) => self.overflow.get_mut(id).expect("located"),
        }
    }

    /// The example, if waiting.
    pub fn get(&self, id: Id) -> Option<Example<'_>> {
        match self.main.get(id.hash) {
            Some(buf) if Example::of(buf).id_bytes() == id.text.as_bytes() => {
                Some(Example::of(buf))
            }
            _ => self.overflow.get(id.text).map(|b| Example::of(b)),
        }
    }

    /// Appends to an example's buffer (creating it if needed) and, when given, sets its
    /// time. Returns where it lives and whether it was created. One hash probe in the
    /// common case.
    pub fn append(
        &mut self,
        id: Id,
        time: Option<Time>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> (Slot, bool) {
        use std::collections::hash_map::Entry;
        let (hash, text) = (id.hash, id.text);
        let main = self
            .main
            .get(hash)
            .map(|buf| Example::of(buf).id_bytes() == text.as_bytes());
        self.scratch.clear();
        write(&mut self.scratch);
        let (first, size) = (&self.scratch[..], self.typical);
        let (slot, buf, created) = match main {
            Some(true) => (
                Slot::Main(hash),
                self.main.get_mut(hash).expect("found"),
                false,
            ),
            None if text.len() <= u8::MAX as usize
                && (self.overflow.is_empty() || !self.overflow.contains_key(text)) =>
            {
                let buf = self.main.insert(
                    hash,
                    new_buffer(text.as_bytes(), first, size, &mut self.spare),
                );
                (Slot::Main(hash), buf, true)
            }
            _ => match self.overflow.entry(text.into()) {
                Entry::Occupied(e) => (Slot::Overflow(text.into()), e.into_mut(), false),
                Entry::Vacant(e) => {
                    let buf = new_buffer(b"", first, size, &mut self.spare);
                    (Slot::Overflow(text.into()), e.insert(buf), true)
                }
            },
        };
        let before = if created { 0 } else { buf.len() };
        if let Some(t) = time {
            buf[..OUTCOMES].copy_from_slice(&t.to_le_bytes());
        }
        // Buffers are boxed slices (a 24-byte slot instead of a vector's 32) with their
        // used size in the header: an append writes aside, then copies in.
        if !created && !first.is_empty() {
            append_to(buf, first, size);
        }
        self.buffer_bytes += buf.len() - before;
        if !self.measured {
            // Until a block of examples has finished, the largest one seen so far.
            self.typical = self.typical.max(used(buf));
        }
        (slot, created)
    }

    /// Fetches the map slot of the example with id hash `hash` into cache.
    pub fn prefetch_slot(&self, hash: u64) {
        self.main.prefetch_slot(hash);
    }

    /// Fetches the buffer of the example with id hash `hash` into cache (its slot should be
    /// cached).
    pub fn prefetch_buffer(&self, hash: u64) {
        if let Some(buf) = self.main.at_home(hash) {
            prefetch(buf.as_ptr(), lines(buf.len()));
        }
    }

    /// Counts one outcome for the example, if waiting.
    pub fn add_outcome(&mut self, id: Id) {
        if let Some(slot) = self.locate(id) {
            let buf = self.buffer(&slot);
            let n = Example(buf).outcomes() + 1;
            buf[OUTCOMES..USED].copy_from_slice(&n.to_le_bytes());
        }
    }

    /// Takes an example out; returns its id and buffer.
    pub fn remove(&mut self, slot: &Slot) -> (CompactString, Box<[u8]>) {
        let (id, buf) = match slot {
            Slot::Main(h) => {
                let buf = self
                    .main
                    .remove(*h)
                    .expect("a deadline per waiting example");
                (CompactString::from(Example::of(&buf).id()), buf)
            }
            Slot::Overflow(id) => (
                id.clone(),
                self.overflow
                    .remove(id)
                    .expect("a deadline per waiting example"),
            ),
        };
        self.buffer_bytes -= buf.len();
        self.block.push(used(&buf) as u32);
        if self.block.len() == TYPICAL_EVERY {
            let at = TYPICAL_EVERY * TYPICAL_PERCENTILE / 100;
            self.typical = *self.block.select_nth_unstable(at).1 as usize;
            self.measured = true;
            self.block.clear();
        }
        (id, buf)
    }

    /// Keeps a finished example's buffer for a new example, if it is about the typical
    /// size and fewer than [`SPARE_MAX`] are kept.
    pub fn recycle(&mut self, buf: Box<[u8]>) {
        self.spare.keep(buf, self.typical);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_time_outcomes_id_and_bytes() {
        let mut w = WaitingExamples::default();
        let (slot, created) = w.append(Id::new("imp-1"), Some(42), |b| b.extend_from_slice(b"abc"));
        assert!(created);
        w.add_outcome(Id::new("imp-1"));
        w.add_outcome(Id::new("imp-1"));
        let (again, created) = w.append(Id::new("imp-1"), None, |b| b.push(b'd'));
        assert!(!created && again == slot);
        let e = w.get(Id::new("imp-1")).unwrap();
        assert_eq!(
            (e.time(), e.outcomes(), e.id(), e.segments()),
            (42, 2, "imp-1", &b"abcd"[..])
        );
        let (id, _) = w.remove(&slot);
        assert_eq!(id, "imp-1");
        assert!(w.is_empty() && w.get(Id::new("imp-1")).is_none());
    }

    #[test]
    fn long_ids_live_in_the_overflow_map() {
        let mut w = WaitingExamples::default();
        let long = "x".repeat(300);
        let (slot, _) = w.append(Id::new(&long), None, |_| {});
        assert_eq!(slot, Slot::Overflow(long.as_str().into()));
        assert_eq!(
            w.get(Id::new(&long)).unwrap().id(),
            "",
            "overflow entries are keyed by id, not by bytes"
        );
        assert_eq!(w.remove(&slot).0, long);
    }

    #[test]
    fn buffers_start_at_the_typical_size_and_grow_past_it_intact() {
        let mut w = WaitingExamples::default();
        // A block of finished examples with 20 segment bytes each sets the typical size.
        for i in 0..TYPICAL_EVERY {
            let id = format!("e{i}");
            let (slot, _) = w.append(Id::new(&id), Some(1), |b| b.extend([7; 20]));
            w.remove(&slot);
        }
        let typical = ID + "e0".len() + 20;
        assert!((typical..typical + 8).contains(&w.typical), "{}", w.typical);
        // A new example gets that size at once; appends fit until they do not.
        let (slot, _) = w.append(Id::new("x"), None, |b| b.extend([1; 5]));
        let capacity = w.main.get(Id::new("x").hash).unwrap().len();
        assert_eq!(capacity, w.typical);
        w.append(Id::new("x"), Some(9), |b| b.extend([2; 5]));
        w.append(Id::new("x"), None, |b| b.extend([3; 40]));
        let e = w.get(Id::new("x")).unwrap();
        let mut want = vec![1; 5];
        want.extend([2; 5]);
        want.extend([3; 40]);
        assert_eq!((e.time(), e.id(), e.segments()), (9, "x", &want[..]));
        w.remove(&slot);
        assert_eq!(w.buffer_bytes, 0, "every byte held is accounted for");
    }

    #[test]
    fn finished_buffers_are_reused_whole_and_counted_while_kept() {
        let mut w = WaitingExamples::default();
        for i in 0..TYPICAL_EVERY {
            let (slot, _) = w.append(Id::new(&format!("e{i}")), Some(1), |b| b.extend([7; 20]));
            w.remove(&slot);
        }
        let (slot, _) = w.append(Id::new("a"), Some(1), |b| b.extend([7; 20]));
        w.add_outcome(Id::new("a"));
        let (_, buf) = w.remove(&slot);
        let (at, held) = (buf.as_ptr(), w.heap_bytes());
        w.recycle(buf);
        assert_eq!(
            w.heap_bytes(),
            held + w.typical,
            "a kept buffer is held memory"
        );
        w.append(Id::new("b"), Some(2), |b| b.extend([9; 5]));
        let e = w.get(Id::new("b")).unwrap();
        assert_eq!(e.0.as_ptr(), at, "the new example took the finished buffer");
        assert_eq!(
            (e.time(), e.outcomes(), e.id(), e.segments()),
            (2, 0, "b", &[9; 5][..]),
            "nothing of the finished example shows through"
        );
        assert_eq!(w.heap_bytes(), held + w.typical);
    }
}
