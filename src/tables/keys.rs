//! Byte layout of versioned entries: `varint(len) || key || big-endian(u64::MAX - time)`.
//!
//! Versions of one key sort together, newest first, so a seek to `(key, as_of)` lands on
//! the newest version at or before `as_of`.

use crate::time::Time;

/// The stored key of `key` at `time`.
pub fn encode(key: &[u8], time: Time, out: &mut Vec<u8>) {
    out.clear();
    prefix(key, out);
    out.extend_from_slice(&(u64::MAX - time).to_be_bytes());
}

/// The bytes every version of `key` starts with.
pub fn prefix(key: &[u8], out: &mut Vec<u8>) {
    crate::varint::put(out, key.len() as u64);
    out.extend_from_slice(key);
}

/// A stored key without its time: the prefix every version of one key shares.
pub fn without_time(stored: &[u8]) -> &[u8] {
    &stored[..stored.len().saturating_sub(8)]
}

/// Whether `stored` is long enough to carry a time (the prefix extractor's domain).
pub fn has_time(stored: &[u8]) -> bool {
    stored.len() > 8
}

/// Splits a stored key into (key, time); `None` if it is not one.
pub fn decode(stored: &[u8]) -> Option<(&[u8], Time)> {
    let mut pos = 0;
    let len = crate::varint::get(stored, &mut pos)?;
    let end = pos.checked_add(len as usize)?;
    let key = stored.get(pos..end)?;
    let time: [u8; 8] = stored.get(end..)?.try_into().ok()?;
    Some((key, u64::MAX - u64::from_be_bytes(time)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_key_then_newest_first() {
        let mut entries: Vec<Vec<u8>> = [
            (&b"u1"[..], 5u64),
            (b"u1", 9),
            (b"u10", 1),
            (b"u1", 0),
            (b"u", 7),
        ]
        .iter()
        .map(|(k, t)| {
            let mut v = Vec::new();
            encode(k, *t, &mut v);
            v
        })
        .collect();
        entries.sort();
        let decoded: Vec<(&[u8], Time)> = entries.iter().map(|e| decode(e).unwrap()).collect();
        assert_eq!(
            decoded,
            vec![
                (&b"u"[..], 7),
                (b"u1", 9),
                (b"u1", 5),
                (b"u1", 0),
                (b"u10", 1)
            ]
        );
    }
}
