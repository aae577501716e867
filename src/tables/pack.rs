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

/// Packs `versions` `(key, time, row)` by key, keys in stored order (`keys`: length, then
/// bytes), each key's versions by time (of two at the same time the later one given
/// wins), and calls `write(key, oldest time, pack)` for each.
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
    let mut scratch = Scratch::default();
    by_number(
        numbered.into_iter(),
        |id| keys[id as usize],
        &mut scratch,
        write,
    )
}

/// [`by_key`] for versions that name their key by a number (`key(number)` gives its
/// bytes): the job's pending versions carry the entry number of their key's state, which
/// costs 4 bytes a version instead of a copy of the key.
///
/// Versions are grouped by `(number, position)` with their time and row, then only the
/// distinct keys are compared: a hot key has thousands of versions per write, and a
/// comparison sort of every version by key was 15 % of the job's instructions.
pub fn by_number<'v, 'k, E>(
    versions: impl ExactSizeIterator<Item = (u32, Time, &'v [u8])> + Clone,
    key: impl Fn(u32) -> &'k [u8],
    scratch: &mut Scratch,
    mut write: impl FnMut(&[u8], Time, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut items = recycle(std::mem::take(&mut scratch.items));
    grouped(versions, &mut scratch.next, &mut items);
    let number = |v: &(u64, Time, &[u8])| (v.0 >> 32) as u32;
    // Distinct keys (the first 16 bytes as a number end most comparisons before a
    // `memcmp`) with their range of `items`, in stored order.
    let mut groups: Vec<(usize, u128, &[u8], u32, u32)> =
        recycle(std::mem::take(&mut scratch.groups));
    let mut start = 0;
    for same in items.chunk_by(|a, b| number(a) == number(b)) {
        let (k, end) = (key(number(&same[0])), start + same.len());
        groups.push((k.len(), head(k), k, start as u32, end as u32));
        start = end;
    }
    groups.sort_unstable();
    let mut one: Vec<(Time, &[u8])> = recycle(std::mem::take(&mut scratch.one));
    for (g, &(_, _, k, start, end)) in groups.iter().enumerate() {
        // Groups come in key order, far apart in `items`: fetch ahead.
        if let Some(ahead) = groups.get(g + AHEAD) {
            prefetch(&items[ahead.3 as usize], 1);
            prefetch(ahead.2.as_ptr(), lines(ahead.2.len()));
        }
        if let Some(ahead) = groups.get(g + AHEAD / 2) {
            let row = items[ahead.3 as usize].2;
            prefetch(row.as_ptr(), lines(row.len()));
        }
        one.clear();
        one.extend(
            items[start as usize..end as usize]
                .iter()
                .map(|v| (v.1, v.2)),
        );
        // Stable and linear when already in time order (the job writes them so).
        one.sort_by_key(|v| v.0);
        one.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                *earlier = *later;
            }
            same
        });
        scratch.value.clear();
        let oldest = encode(one.iter().copied(), &mut scratch.value);
        write(k, oldest, &scratch.value)?;
    }
    scratch.items = recycle(items);
    scratch.groups = recycle(groups);
    scratch.one = recycle(one);
    Ok(())
}

/// Buffers [`by_number`] keeps from one call to the next (their room, never their
/// contents): a replay's write groups millions of versions per table, and arrays
/// allocated afresh for each table had the kernel zero their pages again (1.6 % of the
/// workers' samples).
#[derive(Default)]
pub struct Scratch {
    items: Vec<(u64, Time, &'static [u8])>,
    groups: Vec<(usize, u128, &'static [u8], u32, u32)>,
    next: Vec<u32>,
    one: Vec<(Time, &'static [u8])>,
    value: Vec<u8>,
}

/// An empty vector in `v`'s allocation, for elements of the same layout (here: the same
/// tuple borrowing for another lifetime). An in-place collect: no element is ever moved.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// Puts versions `(number, time, row)` into `items` in `(number, position)` order, each
/// tagged `number << 32 | position`. The job's numbers are entry numbers, dense below
/// the number of keys: a counting sort (`next`: where each number's next version goes)
/// places each version with two passes. Sparse numbers (a short write among many keys)
/// are sorted instead (a quicksort scans memory in order; sorting positions alone left a
/// cache miss per version to gather them).
fn grouped<'v>(
    versions: impl ExactSizeIterator<Item = (u32, Time, &'v [u8])> + Clone,
    next: &mut Vec<u32>,
    items: &mut Vec<(u64, Time, &'v [u8])>,
) {
    let tagged = |(i, (number, time, row)): (usize, (u32, Time, &'v [u8]))| {
        (u64::from(number) << 32 | i as u64, time, row)
    };
    let n = versions.len();
    let numbers = versions
        .clone()
        .map(|v| v.0 as usize)
        .max()
        .map_or(0, |m| m + 1);
    items.clear();
    if numbers > 4 * n + 1024 {
        items.extend(versions.enumerate().map(tagged));
        items.sort_unstable_by_key(|v| v.0);
        return;
    }
    next.clear();
    next.resize(numbers, 0);
    for (number, _, _) in versions.clone() {
        next[number as usize] += 1;
    }
    let mut start = 0;
    for slot in next.iter_mut() {
        (*slot, start) = (start, start + *slot);
    }
    items.resize(n, (0, 0, &[]));
    for v in versions.enumerate().map(tagged) {
        let slot = &mut next[(v.0 >> 32) as usize];
        items[*slot as usize] = v;
        *slot += 1;
    }
}

/// How many keys ahead [`by_number`] fetches a key and its versions (its rows half as far).
const AHEAD: usize = 16;

/// The first 16 bytes of a key as a big-endian number (zero-padded): orders as the bytes do.
fn head(key: &[u8]) -> u128 {
    let mut bytes = [0; 16];
    for (b, k) in bytes.iter_mut().zip(key) {
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
            let rows: Vec<[u8; 1]> = (0..numbers.len()).map(|i| [i as u8]).collect();
            let versions: Vec<(u32, Time, &[u8])> = numbers
                .iter()
                .zip(&rows)
                .enumerate()
                .map(|(i, (&n, row))| (n, i as Time, &row[..]))
                .collect();
            let mut expected: Vec<(u64, Time, &[u8])> = versions
                .iter()
                .enumerate()
                .map(|(i, &(n, t, r))| (u64::from(n) << 32 | i as u64, t, r))
                .collect();
            expected.sort_by_key(|v| v.0);
            // Twice with the same buffers: nothing of the first call is left behind.
            let (mut next, mut items) = (vec![7; 3], vec![(1, 1, &b"x"[..])]);
            for _ in 0..2 {
                grouped(versions.iter().copied(), &mut next, &mut items);
                proptest::prop_assert_eq!(&items, &expected);
            }
        }
    }

    #[test]
    fn recycled_buffers_keep_their_room() {
        let v: Vec<(u64, Time, &[u8])> = Vec::with_capacity(1000);
        let back: Vec<(u64, Time, &'static [u8])> = recycle(v);
        assert!(back.is_empty() && back.capacity() >= 1000);
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
