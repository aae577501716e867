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
    for (time, row) in versions.rev() {
        varint::put(out, time - oldest);
        varint::put(out, row.len() as u64);
        out.extend_from_slice(row);
    }
    oldest
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
}
