//! Long text that repeats in a field (user agents, page URLs) shared by every event that
//! carries it, instead of copied into an allocation per event.
//!
//! A reader asks for each field's text by field. Text longer than a `CompactString` holds
//! inline is looked up in its thread's set of shared texts; a text not there yet is added
//! (leaked: it lives as long as the process) while the process-wide budget lasts. A field
//! whose texts rarely repeat (ids, timestamps as text) stops being looked up after its
//! first [`TRIAL`] long texts, so unique text costs one allocation as before.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use compact_str::CompactString;
use rustc_hash::FxHashSet;

/// Text up to this long lives inline in a `CompactString` (no allocation to save).
const INLINE: usize = std::mem::size_of::<CompactString>();

/// Long texts a field is looked up with before it is judged.
const TRIAL: u32 = 1_024;

/// Bytes of text the process may share (leak) in all.
const BUDGET: usize = 8 << 20;

static LEFT: AtomicUsize = AtomicUsize::new(BUDGET);

thread_local! {
    static SHARED: RefCell<FxHashSet<&'static str>> = RefCell::default();
}

/// Per field of a reader: whether its long texts are looked up, and how that went.
#[derive(Debug, Clone)]
struct Field {
    sharing: bool,
    looked_up: u32,
    found: u32,
}

/// The fields of one reader (in its field order).
#[derive(Debug, Clone)]
pub struct Texts {
    fields: Vec<Field>,
}

impl Texts {
    /// `n` fields, each tried for sharing.
    pub fn new(n: usize) -> Self {
        let field = Field {
            sharing: true,
            looked_up: 0,
            found: 0,
        };
        Texts {
            fields: vec![field; n],
        }
    }

    /// The text `s` of field `i`: shared if it is long and repeats, else a copy.
    pub fn text(&mut self, i: usize, s: &str) -> CompactString {
        let field = &mut self.fields[i];
        if s.len() <= INLINE || !field.sharing {
            return CompactString::from(s);
        }
        let shared = SHARED.with_borrow_mut(|set| match set.get(s) {
            Some(&t) => Some((t, true)),
            None => reserve(s.len()).then(|| {
                let t: &'static str = Box::leak(Box::from(s));
                set.insert(t);
                (t, false)
            }),
        });
        field.looked_up += 1;
        field.found += u32::from(shared.is_some_and(|(_, found)| found));
        if field.looked_up == TRIAL && field.found < TRIAL / 2 {
            field.sharing = false;
        }
        match shared {
            Some((t, _)) => CompactString::const_new(t),
            None => CompactString::from(s),
        }
    }
}

/// Takes `n` bytes of the budget, if that many are left.
fn reserve(n: usize) -> bool {
    LEFT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
        left.checked_sub(n)
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)";

    #[test]
    fn repeated_long_text_is_shared_and_reads_the_same() {
        let mut texts = Texts::new(2);
        let a = texts.text(0, AGENT);
        let b = texts.text(0, AGENT);
        assert_eq!((a.as_str(), b.as_str()), (AGENT, AGENT));
        assert!(!a.is_heap_allocated() && !b.is_heap_allocated());
        assert_eq!(a.as_ptr(), b.as_ptr(), "one shared text");
        let short = texts.text(1, "u25618");
        assert_eq!(short, "u25618");
    }

    #[test]
    fn a_field_of_unique_text_stops_being_looked_up() {
        let mut texts = Texts::new(1);
        for n in 0..TRIAL + 10 {
            let id = format!("0f8fad5b-d9cb-469f-a165-{n:012}");
            assert_eq!(texts.text(0, &id), id.as_str());
        }
        assert!(!texts.fields[0].sharing);
        let later = texts.text(0, "0f8fad5b-d9cb-469f-a165-70867c5d1a00");
        assert!(later.is_heap_allocated(), "copied, not looked up");
    }
}
