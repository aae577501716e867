//! Retention: a compaction filter that drops versions older than a table's cutoff, always
//! keeping each key's newest version before it, so reads as of the cutoff or later are
//! unchanged.
//!
//! Compactions see a key's versions newest first (see [`super::keys`]). Once a version
//! below the cutoff has been kept, every older one of the same key is shadowed for all
//! reads at or after the cutoff, and is removed; so are the older versions inside the
//! entry that holds it. A key whose versions straddle two compactions keeps one extra
//! version: never too few.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};

use super::{keys, pack};
use crate::time::Time;

/// One table's retention cutoff and a count of removed versions, shared with the store.
#[derive(Debug, Default)]
pub struct Cutoff {
    /// Versions older than this may be removed (0 = keep all).
    pub time: AtomicU64,
    /// Versions removed so far by compactions.
    pub removed: AtomicU64,
}

/// Makes one [`RetentionFilter`] per compaction, reading the cutoff at that moment.
pub struct RetentionFilterFactory {
    cutoff: Arc<Cutoff>,
    name: CString,
}

impl RetentionFilterFactory {
    /// A factory for the table whose cutoff is `cutoff`.
    pub fn new(table: &str, cutoff: Arc<Cutoff>) -> Self {
        let name = CString::new(format!("labeljoin-retention-{table}"))
            .unwrap_or_else(|_| c"labeljoin-retention".to_owned());
        RetentionFilterFactory { cutoff, name }
    }
}

impl CompactionFilterFactory for RetentionFilterFactory {
    type Filter = RetentionFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> RetentionFilter {
        RetentionFilter {
            cutoff: self.cutoff.time.load(Relaxed),
            shared: self.cutoff.clone(),
            key: Vec::new(),
            kept_old: false,
            value: Vec::new(),
            name: self.name.clone(),
        }
    }

    fn name(&self) -> &CStr {
        &self.name
    }
}

/// The filter of one compaction: remembers the current key and whether its newest
/// version below the cutoff has been kept.
pub struct RetentionFilter {
    cutoff: Time,
    shared: Arc<Cutoff>,
    key: Vec<u8>,
    kept_old: bool,
    /// The last changed value (see `filter`).
    value: Vec<u8>,
    name: CString,
}

impl CompactionFilter for RetentionFilter {
    fn filter(&mut self, _level: u32, stored: &[u8], value: &[u8]) -> Decision {
        if self.cutoff == 0 {
            return Decision::Keep; // no retention (yet): keep everything, cheaply
        }
        // `time` is the entry's oldest version (see `pack`): an entry older than the one
        // kept holds only versions older than it.
        let Some((key, time)) = keys::decode(stored) else {
            return Decision::Keep;
        };
        if key != self.key.as_slice() {
            self.key.clear();
            self.key.extend_from_slice(key);
            self.kept_old = false;
        }
        if time >= self.cutoff {
            return Decision::Keep;
        }
        if self.kept_old {
            let versions = pack::versions(value, time).count() as u64;
            self.shared.removed.fetch_add(versions, Relaxed);
            return Decision::Remove;
        }
        self.kept_old = true;
        // This entry holds the key's newest version before the cutoff. A pack can span
        // a long stretch of event time (a replay writes a second of processing at once):
        // keep its versions at or after the cutoff and that one, drop the older ones.
        let keep = pack::versions(value, time)
            .position(|(t, _)| t < self.cutoff)
            .map_or(usize::MAX, |i| i + 1);
        self.value.clear();
        let removed = pack::keep_newest(value, keep, &mut self.value);
        if removed == 0 {
            return Decision::Keep;
        }
        self.shared.removed.fetch_add(removed, Relaxed);
        // SAFETY: RocksDB copies the new value before the next call into this filter,
        // the only thing that changes `self.value`.
        Decision::Change(unsafe { std::mem::transmute::<&[u8], &'static [u8]>(&self.value) })
    }

    fn name(&self) -> &CStr {
        &self.name
    }
}
