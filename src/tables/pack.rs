//! A stored entry's value: the versions of one key from one write, newest first.
//!
//! A write packs all versions of a key into one RocksDB entry stored under the *oldest*
//! one's time (see [`super::keys`]). Hot keys (a country, a campaign) change with nearly
//! every event; one entry per write instead of one per version keeps the memtable, the
//! write-ahead log and compactions proportional to keys written, not to events.
//!
//! Layout: `varint(n)`, then per version, newest first, `varint(time - oldest)`,
//! `varint(len)`, `len` row bytes.
//!
//! A key's entries never interleave in time (the job writes each key's versions in
//! event-time order): the entry found by a seek to `(key, as_of)` (the newest one whose
//! oldest version is `<= as_of`) holds the newest version `<= as_of`. A rewrite of
//! versions at the same times (a replay into the same state) overwrites or shadows them.

use rustc_hash::FxHashMap;

use crate::prefetch::{lines, prefetch};
use crate::time::Time;
use crate::varint;

/// Appends the pack of `versions` (`(time, row)`, oldest first, times ascending) and
/// returns the oldest time, the entry's key time.
pub fn encode<'a>(
    versions: impl DoubleEndedIterator<Item = (Time, &'a [u8])> + ExactSizeIterator + Clone,
    out: &mut Vec<u8>,
) -> Time {
    let oldest = versions.clone().next().map_or(0, |v| v.0);
    varint::put(out, versions.len() as u64);
    // A hot key's rows lie far apart in the job's pending buffer: fetch them ahead.
    let mut ahead = versions.clone().rev().skip(AHEAD);
    for (time, row) in versions.rev() {
        if let Some((_, row)) = ahead.next() {
            prefetch(row.as_ptr(), lines(row.len()));
        }
        varint::put(out, time - oldest);
        varint::put(out, row.len() as u64);
        out.extend_from_slice(row);
    }
    oldest
}

/// Versions to pack, by position: each names its key by a number (see [`by_number`]).
pub trait Numbered {
    /// Number of versions.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The key number of version `i`.
    fn number(&self, i: usize) -> u32;
    /// Time of version `i` and a handle of its row for [`Numbered::row`] (read once
    /// per version).
    fn entry(&self, i: usize) -> (Time, u64);
    /// The row of a handle.
    fn row(&self, handle: u64) -> &[u8];
    /// Fetches what [`Numbered::entry`] reads for version `i`.
    fn prefetch_entry(&self, _i: usize) {}
    /// Fetches the row of a handle.
    fn prefetch_row(&self, _handle: u64) {}
    /// The key of a number.
    fn key(&self, number: u32) -> &[u8];
    /// Fetches the key of a number (where it is stored; not through it).
    fn prefetch_key(&self, _number: u32) {}
}

/// Versions `(key number, time, row)` and the keys by number.
struct Listed<'a> {
    versions: Vec<(u32, Time, &'a [u8])>,
    keys: Vec<&'a [u8]>,
}

impl Numbered for Listed<'_> {
    fn len(&self) -> usize {
        self.versions.len()
    }

    fn number(&self, i: usize) -> u32 {
        self.versions[i].0
    }

    fn entry(&self, i: usize) -> (Time, u64) {
        (self.versions[i].1, i as u64)
    }

    fn row(&self, handle: u64) -> &[u8] {
        self.versions[handle as usize].2
    }

    fn key(&self, number: u32) -> &[u8] {
        self.keys[number as usize]
    }
}

/// Packs `versions` `(key, time, row)` by key, keys in stored order (see
/// [`super::keys::encode`]), each key's versions by time (of two at the same time the later
/// one given wins), and calls `write(key, oldest time, pack)` for each.
pub fn by_key<E>(
    versions: &[(&[u8], Time, &[u8])],
    write: impl FnMut(&[u8], Time, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
    let mut keys: Vec<&[u8]> = Vec::new();
    let numbered: Vec<(u32, Time, &[u8])> = versions
        .iter()
        .map(|&(key, time, row)| {
            let id = *ids.entry(key).or_insert_with(|| {
                keys.push(key);
                keys.len() as u32 - 1
            });
            (id, time, row)
        })
        .collect();
    let listed = Listed {
        versions: numbered,
        keys,
    };
    by_number(&listed, &mut Scratch::default(), write)
}

/// [`by_key`] for versions that name their key by a number ([`Numbered::key`] gives its
/// bytes): the job's pending versions carry the entry number of their key's state, which
/// costs 4 bytes a version instead of a copy of the key.
///
/// Versions are grouped by number as (time, row handle), 16 bytes each, then only the
/// distinct keys are sorted: a hot key has thousands of versions per write, and a
/// comparison sort of every version by key was 15 % of the job's instructions.
pub fn by_number<V: Numbered + ?Sized, E>(
    versions: &V,
    scratch: &mut Scratch,
    mut write: impl FnMut(&[u8], Time, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let Scratch {
        order,
        groups,
        next,
        tags,
        value,
    } = scratch;
    grouped(versions, next, tags, order, groups);
    // Distinct keys in stored order: the first 16 bytes of the stored key as one number
    // end most comparisons before a `memcmp`.
    let key = |number| versions.key(number);
    let mut stored = Vec::new();
    for i in 0..groups.len() {
        if let Some(ahead) = groups.get(i + AHEAD) {
            versions.prefetch_key(ahead.number);
        }
        let g = &mut groups[i];
        let k = key(g.number);
        g.head = stored_head(k, &mut stored);
    }
    groups.sort_unstable_by(|a, b| {
        a.head
            .cmp(&b.head)
            .then_with(|| key(a.number).cmp(key(b.number)))
    });
    let mut one: Vec<(Time, &[u8])> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        // Groups come in key order, far apart in `order`: fetch ahead (the positions, then
        // the first version's entry, then its row).
        if let Some(ahead) = groups.get(i + AHEAD) {
            prefetch(&order[ahead.start as usize], 1);
            versions.prefetch_key(ahead.number);
        }
        if let Some(ahead) = groups.get(i + AHEAD * 3 / 4) {
            versions.prefetch_entry(order[ahead.start as usize] as usize);
        }
        if let Some(ahead) = groups.get(i + AHEAD / 2) {
            versions.prefetch_row(versions.entry(order[ahead.start as usize] as usize).1);
        }
        one.clear();
        // A hot key's versions lie far apart too: fetch their entries ahead.
        let positions = &order[g.start as usize..g.end as usize];
        one.extend(positions.iter().enumerate().map(|(j, &i)| {
            if let Some(&ahead) = positions.get(j + AHEAD) {
                versions.prefetch_entry(ahead as usize);
            }
            let (time, row) = versions.entry(i as usize);
            (time, versions.row(row))
        }));
        // Stable and linear when already in time order (the job writes them so).
        one.sort_by_key(|v| v.0);
        one.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                *earlier = *later;
            }
            same
        });
        value.clear();
        let oldest = encode(one.iter().copied(), value);
        write(key(g.number), oldest, value)?;
    }
    Ok(())
}

/// The versions of one key number: `order[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Group {
    head: u128,
    number: u32,
    start: u32,
    end: u32,
}

/// Buffers [`by_number`] keeps from one call to the next (their room, never their
/// contents): a replay's write groups millions of versions per table, and arrays
/// allocated afresh for each table had the kernel zero their pages again.
#[derive(Default)]
pub struct Scratch {
    /// Positions of the versions, grouped by number (4 bytes a version: a write of
    /// millions of versions held their (time, row handle) pairs at 16 bytes each).
    order: Vec<u32>,
    groups: Vec<Group>,
    next: Vec<u32>,
    tags: Vec<u64>,
    value: Vec<u8>,
}

/// Puts the positions of `versions` into `order` grouped by number (ascending within a
/// group), and each number's range of `order` into `groups` (numbers
/// ascending). The job's numbers are entry numbers, dense below the number of keys: a
/// counting sort (`next`: where each number's next version goes) places each position
/// with two passes. Sparse numbers (a short write among many keys) are sorted instead,
/// as `number << 32 | position` (sequential memory, no lookups while sorting).
fn grouped<V: Numbered + ?Sized>(
    versions: &V,
    next: &mut Vec<u32>,
    tags: &mut Vec<u64>,
    order: &mut Vec<u32>,
    groups: &mut Vec<Group>,
) {
    let n = versions.len();
    let numbers = (0..n)
        .map(|i| versions.number(i) as usize)
        .max()
        .map_or(0, |m| m + 1);
    order.clear();
    groups.clear();
    let group = |number, start, end| Group {
        head: 0,
        number,
        start: start as u32,
        end: end as u32,
    };
    if numbers > 4 * n + 1024 {
        tags.clear();
        tags.extend((0..n).map(|i| u64::from(versions.number(i)) << 32 | i as u64));
        tags.sort_unstable();
        order.extend(tags.iter().map(|&t| t as u32));
        let mut start = 0;
        for same in tags.chunk_by(|a, b| a >> 32 == b >> 32) {
            groups.push(group((same[0] >> 32) as u32, start, start + same.len()));
            start += same.len();
        }
        return;
    }
    next.clear();
    next.resize(numbers, 0);
    let mut distinct = 0;
    for i in 0..n {
        let count = &mut next[versions.number(i) as usize];
        distinct += usize::from(*count == 0);
        *count += 1;
    }
    // Room for every group at once: grown by doubling, a write of millions of keys copied
    // its groups into fresh pages at each step.
    groups.reserve_exact(distinct);
    let mut start = 0;
    for (number, slot) in next.iter_mut().enumerate() {
        let count = *slot as usize;
        if count > 0 {
            groups.push(group(number as u32, start, start + count));
        }
        (*slot, start) = (start as u32, start + count);
    }
    order.resize(n, 0);
    for i in 0..n {
        let slot = &mut next[versions.number(i) as usize];
        order[*slot as usize] = i as u32;
        *slot += 1;
    }
}

/// How many keys ahead [`by_number`] fetches a key and its versions (its rows half as far).
const AHEAD: usize = 16;

/// The first 16 bytes of `key`'s stored form (its varint length, then its bytes; see
/// [`super::keys::prefix`]) as a big-endian number, zero-padded: orders as stored keys do.
/// Keys with equal heads have equal lengths (a varint is at most 10 bytes and prefix-free),
/// so their bytes decide.
fn stored_head(key: &[u8], buf: &mut Vec<u8>) -> u128 {
    buf.clear();
    super::keys::prefix(key, buf);
    let mut bytes = [0; 16];
    for (b, k) in bytes.iter_mut().zip(buf.iter()) {
        *b = *k;
    }
    u128::from_be_bytes(bytes)
}

/// The versions of a pack stored under `oldest`, newest first; stops at malformed bytes.
pub fn versions(value: &[u8], oldest: Time) -> impl Iterator<Item = (Time, &[u8])> {
    let mut pos = 0;
    let n = varint::get(value, &mut pos).unwrap_or(0);
    (0..n).map_while(move |_| {
        let delta = varint::get(value, &mut pos)?;
        let len = varint::get(value, &mut pos)? as usize;
        let row = value.get(pos..pos.checked_add(len)?)?;
        pos += len;
        Some((oldest.checked_add(delta)?, row))
    })
}

/// Appends a pack holding the `keep` newest versions of `value` (stored under the same
/// time, so their bytes are copied as they are); returns how many versions it dropped.
pub fn keep_newest(value: &[u8], keep: usize, out: &mut Vec<u8>) -> u64 {
    let mut pos = 0;
    let n = varint::get(value, &mut pos).unwrap_or(0);
    let start = pos;
    for _ in 0..keep.min(n as usize) {
        let (Some(_), Some(len)) = (varint::get(value, &mut pos), varint::get(value, &mut pos))
        else {
            break;
        };
        pos = pos.saturating_add(len as usize).min(value.len());
    }
    let kept = keep.min(n as usize) as u64;
    varint::put(out, kept);
    out.extend_from_slice(&value[start..pos]);
    n - kept
}

/// The newest version of a pack at or before `as_of`.
pub fn at(value: &[u8], oldest: Time, as_of: Time) -> Option<(Time, &[u8])> {
    versions(value, oldest).find(|(t, _)| *t <= as_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_come_back_newest_first_and_reads_pick_the_newest_at_or_before() {
        let rows: [(Time, &[u8]); 3] = [(10, b"a"), (12, b""), (500, b"ccc")];
        let mut value = Vec::new();
        assert_eq!(encode(rows.iter().copied(), &mut value), 10);
        let back: Vec<_> = versions(&value, 10).collect();
        assert_eq!(back, vec![(500, &b"ccc"[..]), (12, b""), (10, b"a")]);
        assert_eq!(at(&value, 10, 9), None);
        assert_eq!(at(&value, 10, 11), Some((10, &b"a"[..])));
        assert_eq!(at(&value, 10, 499), Some((12, &b""[..])));
        assert_eq!(at(&value, 10, Time::MAX), Some((500, &b"ccc"[..])));
        assert_eq!(versions(&value[..value.len() - 1], 10).count(), 2);
        let mut two = Vec::new();
        assert_eq!(keep_newest(&value, 2, &mut two), 1);
        let back: Vec<_> = versions(&two, 10).collect();
        assert_eq!(back, vec![(500, &b"ccc"[..]), (12, b"")]);
    }

    proptest::proptest! {
        /// Dense numbers (counted) and sparse ones (sorted) come out the same way: by
        /// number, then position.
        #[test]
        fn versions_are_grouped_by_number_then_position(
            numbers in proptest::collection::vec(proptest::prop_oneof![0u32..8, 0u32..u32::MAX], 0..200),
        ) {
            let versions = Listed {
                versions: numbers.iter().enumerate().map(|(i, &n)| (n, i as Time, &b""[..])).collect(),
                keys: Vec::new(),
            };
            let mut expected: Vec<(u32, u32)> =
                numbers.iter().enumerate().map(|(i, &n)| (n, i as u32)).collect();
            expected.sort_unstable();
            // Twice with the same buffers: nothing of the first call is left behind.
            let mut s = Scratch { next: vec![7; 3], order: vec![5], ..Scratch::default() };
            for _ in 0..2 {
                grouped(&versions, &mut s.next, &mut s.tags, &mut s.order, &mut s.groups);
                let got: Vec<(u32, u32)> =
                    s.order.iter().map(|&i| (numbers[i as usize], i)).collect();
                proptest::prop_assert_eq!(&got, &expected);
                let mut covered = 0;
                for g in &s.groups {
                    proptest::prop_assert_eq!(g.start, covered);
                    for &i in &s.order[g.start as usize..g.end as usize] {
                        proptest::prop_assert_eq!(numbers[i as usize], g.number);
                    }
                    covered = g.end;
                }
                proptest::prop_assert_eq!(covered as usize, numbers.len());
            }
        }

        /// Packs come out in the order of their stored keys, long keys (a two-byte
        /// length prefix) included, as a table file requires.
        #[test]
        fn packs_come_in_stored_key_order(
            keys in proptest::collection::vec(
                proptest::prop_oneof![1usize..20, 120usize..300].prop_flat_map(|n|
                    proptest::collection::vec(proptest::prop_oneof![Just(b'a'), Just(b'b')], n)),
                1..40,
            ),
        ) {
            let versions: Vec<(&[u8], Time, &[u8])> =
                keys.iter().map(|k| (&k[..], 1, &b"r"[..])).collect();
            let mut stored = Vec::new();
            by_key::<()>(&versions, |key, oldest, _| {
                let mut s = Vec::new();
                crate::tables::keys::encode(key, oldest, &mut s);
                stored.push(s);
                Ok(())
            })
            .unwrap();
            let mut sorted = stored.clone();
            sorted.sort();
            sorted.dedup();
            proptest::prop_assert_eq!(stored, sorted);
        }
    }

    #[test]
    fn by_key_packs_each_key_once_in_stored_order_and_the_later_of_equal_times_wins() {
        let given: [(&[u8], Time, &[u8]); 6] = [
            (b"bb", 7, b"1"),
            (b"a", 9, b"2"),
            (b"bb", 3, b"3"),
            (b"ab", 1, b"4"),
            (b"bb", 7, b"5"),
            (b"a", 2, b"6"),
        ];
        let mut packs = Vec::new();
        by_key::<()>(&given, |key, oldest, value| {
            let back: Vec<(Time, Vec<u8>)> = versions(value, oldest)
                .map(|(t, row)| (t, row.to_vec()))
                .collect();
            packs.push((key.to_vec(), oldest, back));
            Ok(())
        })
        .unwrap();
        let row = |t: Time, r: &[u8]| (t, r.to_vec());
        assert_eq!(
            packs,
            vec![
                (b"a".to_vec(), 2, vec![row(9, b"2"), row(2, b"6")]),
                (b"ab".to_vec(), 1, vec![row(1, b"4")]),
                (b"bb".to_vec(), 3, vec![row(7, b"5"), row(3, b"3")]),
            ]
        );
    }
}
