//! Cache prefetch hints: random-access state fetched ahead of use, so misses overlap.

/// Asks the CPU to fetch the `lines` cache lines from `p` into cache. A hint only: it never
/// faults and changes no result (a no-op where no prefetch instruction is wired up).
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in 0..lines {
        let line = (p as *const u8).wrapping_add(64 * i) as *const i8;
        // SAFETY: a prefetch does not access memory architecturally; any address is allowed.
        unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(line) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, lines);
}

/// Cache lines that `bytes` bytes may span from any start (none for none).
pub const fn lines(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes + 62) / 64 + 1
    }
}
