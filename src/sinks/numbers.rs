//! Numbers as CSV text: the digits Rust's `Display` prints, written straight into the line.
//!
//! A row has ~20 numeric cells; formatting each into a buffer and copying it over cost a
//! call to `memcpy` per cell. Here digits go into the line's own spare room.

/// Writes a number as Rust's `Display` does (`3`, `0.25`), integers through a fast path:
/// most features are counts.
pub fn write_num(n: f64, out: &mut String) {
    // `n as i64 as f64 == n` is the integer test without `f64::fract`, which is a libm
    // call (`trunc`) on x86-64 without SSE4.1.
    let i = n as i64;
    if i as f64 == n && n.abs() < 1e15 && !(n == 0.0 && n.is_sign_negative()) {
        if i < 0 {
            out.push('-');
        }
        push_u64(out, i.unsigned_abs());
    } else if let Some(m) = ten_thousandths(n) {
        // Seconds from milliseconds, scores with few decimals: the digits of `m / 10^4`
        // without trailing zeros are the shortest that read back as `n` (below 1e8 two
        // such decimals are always different numbers), which is what Display prints.
        push_u64(out, m / 10_000);
        let mut frac = m % 10_000;
        let mut digits = 4;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        out.push('.');
        push_digits(out, frac, digits);
    } else if (1e-5..1e7).contains(&n.abs()) {
        // zmij (Ryū's successor, the same shortest digits, ~1.6x faster on ratios here)
        // prints what Display does in this range. (Not above: with 17 significant digits
        // the two can pick different last digits, e.g. 117156579416960.12 against
        // Display's ...60.13.)
        push_shortest(out, n);
    } else {
        use std::fmt::Write;
        write!(out, "{n}").unwrap();
    }
}

/// Appends the decimal digits of `n`.
#[inline]
pub fn push_u64(out: &mut String, n: u64) {
    push_digits(out, n, n.checked_ilog10().map_or(1, |l| l as usize + 1));
}

/// Two-digit pairs "00" to "99".
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends the last `len` decimal digits of `n`, zero-padded (`len` <= 20).
#[inline]
fn push_digits(out: &mut String, mut n: u64, len: usize) {
    debug_assert!(len <= 20);
    // SAFETY: only ASCII digits are written, so the string stays UTF-8; the `len` bytes
    // written lie in the room `reserve` made, and are all written before `set_len`.
    unsafe {
        let v = out.as_mut_vec();
        v.reserve(20);
        let start = v.as_mut_ptr().add(v.len());
        let mut i = len;
        while i >= 2 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            i -= 2;
            std::ptr::copy_nonoverlapping(PAIRS.as_ptr().add(pair), start.add(i), 2);
        }
        if i == 1 {
            *start = b'0' + (n % 10) as u8;
        }
        v.set_len(v.len() + len);
    }
}

/// Appends zmij's shortest digits of a finite `n`, copying its whole buffer at once (a
/// fixed-size copy is two moves; a copy of the digits' length is a call).
#[inline]
fn push_shortest(out: &mut String, n: f64) {
    const SIZE: usize = std::mem::size_of::<zmij::Buffer>();
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(n);
    let (at, len) = (text.as_ptr(), text.len());
    let base = (&raw const buffer).cast::<u8>();
    if at != base || len > SIZE {
        // zmij writes from the buffer's start today; anything else takes the plain copy.
        let mut buffer = zmij::Buffer::new();
        return out.push_str(buffer.format_finite(n));
    }
    // SAFETY: `buffer` is `SIZE` bytes and its first `len` hold the digits (checked above),
    // which are ASCII; the bytes past them may be uninitialized, which a raw copy allows.
    unsafe { push_fixed::<SIZE>(out, base, len) }
}

/// Appends the first `len` of the `N` bytes at `src` by one fixed-size copy of all `N`
/// into spare room (a copy of `len` bytes is a call to `memcpy`; `N` is a few moves).
///
/// # Safety
/// `src` is valid for reads of `N` bytes, and its first `len <= N` are UTF-8 (the rest
/// may be anything, even uninitialized: they never become part of `out`).
#[inline]
pub unsafe fn push_fixed<const N: usize>(out: &mut String, src: *const u8, len: usize) {
    debug_assert!(len <= N);
    // SAFETY: `reserve` makes room for the `N` bytes written; only the first `len`, UTF-8
    // by the caller's promise, are taken into the string.
    unsafe {
        let v = out.as_mut_vec();
        v.reserve(N);
        std::ptr::copy_nonoverlapping(src, v.as_mut_ptr().add(v.len()), N);
        v.set_len(v.len() + len);
    }
}

/// `m` if a positive, non-integer `n` below 1e8 is exactly the double nearest `m / 10^4`.
fn ten_thousandths(n: f64) -> Option<u64> {
    if !(n > 0.0 && n < 1e8) {
        return None;
    }
    let m = (n * 10_000.0 + 0.5) as u64;
    (!m.is_multiple_of(10_000) && m as f64 / 10_000.0 == n).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_print_every_digit() {
        for n in [0, 7, 10, 99, 100, 12_345, 1_000_000, u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn numbers_print_as_display_does() {
        for n in [
            0.0,
            3.0,
            -7.0,
            0.1,
            0.06060606060606061,
            567.267,
            1e-5,
            1.5e-5,
            123456.789,
            -0.25,
            1e-7,
            2e20,
            f64::NAN,
            0.0414,
            0.0001,
            0.001,
            99_999_999.999_9,
            12.05,
            1.0001,
        ] {
            let mut s = String::new();
            write_num(n, &mut s);
            assert_eq!(s, format!("{n}"), "{n:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn few_decimal_numbers_print_as_display_does(m in 0u64..2_000_000_000_000, k in 0u32..6) {
            let n = m as f64 / 10f64.powi(k as i32);
            let mut s = String::new();
            write_num(n, &mut s);
            proptest::prop_assert_eq!(s, format!("{n}"));
        }

        #[test]
        fn numbers_of_feature_size_print_as_display_does(n in 1e-6f64..2e7) {
            let mut s = String::new();
            write_num(n, &mut s);
            proptest::prop_assert_eq!(s, format!("{n}"));
        }

        #[test]
        fn any_number_prints_as_display_does(n in proptest::num::f64::ANY) {
            let mut s = String::new();
            write_num(n, &mut s);
            proptest::prop_assert_eq!(s, format!("{n}"));
        }
    }
}
