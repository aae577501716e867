//! LEB128 variable-length unsigned integers, the small-number encoding of every stored byte
//! layout (held examples, table keys, version packs).

/// Appends `v` in 7-bit groups, low first.
#[inline]
pub fn put(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 1 << 56 {
        let (bytes, len) = groups(v);
        store(out, bytes, len);
    } else {
        slow(out, v);
    }
}

/// Appends the byte `tag`, then `v` as [`put`] does: the tagged numbers of held examples and
/// table rows, written with one store for values below 2^49 (counts and millisecond times).
#[inline(always)]
pub fn put_tagged(out: &mut Vec<u8>, tag: u8, v: u64) {
    if v < 1 << 49 {
        let (bytes, len) = groups(v);
        store(out, bytes << 8 | tag as u64, len + 1);
    } else {
        out.push(tag);
        put(out, v);
    }
}

/// The groups of `v` (below 2^56) as the little-endian bytes of one number, and their count.
#[inline(always)]
fn groups(mut v: u64) -> (u64, usize) {
    let (mut bytes, mut len) = (0, 0);
    while v >= 0x80 {
        bytes |= (v & 0x7f | 0x80) << (8 * len);
        v >>= 7;
        len += 1;
    }
    (bytes | v << (8 * len), len + 1)
}

/// Appends the low `len` (at most 8) bytes of `bytes`, little-endian, with one 8-byte store:
/// a push per byte was a capacity check and a length update each (~1.7x the time).
#[inline(always)]
fn store(out: &mut Vec<u8>, bytes: u64, len: usize) {
    debug_assert!(len <= 8);
    out.reserve(8);
    let end = out.len();
    // SAFETY: `reserve(8)` leaves at least 8 bytes of capacity after `end`; the first `len`
    // of them are written here, so the new length covers initialized bytes only.
    unsafe {
        std::ptr::write_unaligned(out.as_mut_ptr().add(end).cast::<u64>(), bytes.to_le());
        out.set_len(end + len);
    }
}

#[cold]
fn slow(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one integer at `*pos` and moves past it; `None` if the bytes end inside it.
pub fn get(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0u32);
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64).checked_shl(shift)?;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// The plain encoding, byte by byte.
    fn reference(mut v: u64) -> Vec<u8> {
        let mut b = Vec::new();
        while v >= 0x80 {
            b.push((v as u8) | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
        b
    }

    proptest! {
        #[test]
        fn fast_writes_equal_the_plain_encoding(
            prefix in proptest::collection::vec(any::<u8>(), 0..20),
            shift in 0u32..64,
            v in any::<u64>(),
            tag in any::<u8>(),
        ) {
            let v = v >> shift;
            let mut b = prefix.clone();
            super::put(&mut b, v);
            let mut want = prefix.clone();
            want.extend(reference(v));
            prop_assert_eq!(&b, &want);
            let mut b = prefix.clone();
            super::put_tagged(&mut b, tag, v);
            let mut want = prefix;
            want.push(tag);
            want.extend(reference(v));
            prop_assert_eq!(b, want);
        }
    }

    #[test]
    fn round_trips_and_rejects_truncation() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            super::put(&mut b, v);
            let mut pos = 0;
            assert_eq!(super::get(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
            let mut pos = 0;
            assert_eq!(super::get(&b[..b.len() - 1], &mut pos), None);
        }
    }
}
