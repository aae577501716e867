//! A stable radix sort for the hot paths' small integer keys (times within a pass, hash
//! groups), where a comparison sort made ~log2(n) compares and moves per element.

/// Sorts `v` stably by `key(x)`, which must be below `1 << (8 * digits)` (`digits` <= 8):
/// a least-significant-digit radix sort, a pass of a byte each, skipping bytes that all
/// keys share. Below 256 elements, `sort_by_key` (stable too).
pub fn sort_by_small_key<T: Copy>(v: &mut Vec<T>, digits: usize, key: impl Fn(&T) -> u64) {
    assert!(digits <= 8, "a u64 key has 8 digits");
    if v.len() < 256 {
        return v.sort_by_key(|x| key(x));
    }
    let mut counts = vec![[0u32; 256]; digits];
    for x in v.iter() {
        let k = key(x);
        for (byte, count) in counts.iter_mut().enumerate() {
            count[(k >> (8 * byte)) as usize & 0xff] += 1;
        }
    }
    let n = v.len() as u32;
    let mut from = std::mem::take(v);
    let mut to = from.clone();
    for (byte, count) in counts.iter().enumerate() {
        if count.contains(&n) {
            continue; // every key has the same digit here
        }
        let mut at = [0u32; 256];
        let mut sum = 0;
        for (at, &c) in at.iter_mut().zip(count) {
            (*at, sum) = (sum, sum + c);
        }
        for x in &from {
            let digit = (key(x) >> (8 * byte)) as usize & 0xff;
            to[at[digit] as usize] = *x;
            at[digit] += 1;
        }
        std::mem::swap(&mut from, &mut to);
    }
    *v = from;
}

/// Sorts `v` stably by `key(x)` (times, say): by its offset from the smallest key, in as
/// many bytes as the spread of the keys needs.
pub fn sort_by_offset<T: Copy>(v: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    let Some((first, last)) = v.iter().map(&key).fold(None, |span, k| match span {
        None => Some((k, k)),
        Some((lo, hi)) => Some((k.min(lo), k.max(hi))),
    }) else {
        return;
    };
    sort_by_small_key(v, digits_for(last - first), |x| key(x) - first);
}

/// The bytes a key up to `max` needs (0 for 0).
pub fn digits_for(max: u64) -> usize {
    (64 - max.leading_zeros() as usize).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Equal to the standard library's stable sort by the same key, for any spread
        /// of keys (shared digits skipped or not) and lengths on both sides of 256.
        #[test]
        fn sorts_as_the_stable_sort_by_key(
            keys in proptest::collection::vec(0u64..u64::MAX, 0..1_200),
            shift in 0u32..64,
        ) {
            let v: Vec<(u64, usize)> =
                keys.iter().enumerate().map(|(i, k)| (k >> shift, i)).collect();
            let max = v.iter().map(|p| p.0).max().unwrap_or(0);
            let mut got = v.clone();
            sort_by_small_key(&mut got, digits_for(max), |p| p.0);
            let mut want = v;
            want.sort_by_key(|p| p.0);
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn digits_cover_the_key() {
        assert_eq!(digits_for(0), 0);
        assert_eq!(digits_for(255), 1);
        assert_eq!(digits_for(256), 2);
        assert_eq!(digits_for(u64::MAX), 8);
    }
}
