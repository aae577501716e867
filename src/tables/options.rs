//! RocksDB options of the table store: the table-file format, compaction, and reads.

use rocksdb::Options;

use super::keys;

/// Block cache shared by every table.
const BLOCK_CACHE_BYTES: usize = 256 << 20;

/// Table-file block size (RocksDB's default is 4 KiB).
const BLOCK_BYTES: usize = 16 << 10;

/// Read options of an iterator over the versions of one key (uses the prefix filters).
pub(super) fn one_key() -> rocksdb::ReadOptions {
    let mut r = rocksdb::ReadOptions::default();
    r.set_prefix_same_as_start(true);
    r
}

/// Read options of an iterator over a whole table, across keys.
pub fn all_keys() -> rocksdb::ReadOptions {
    let mut r = rocksdb::ReadOptions::default();
    r.set_total_order_seek(true);
    r
}

/// Options of the table files [`TableStore::put_versions`](super::TableStore::put_versions)
/// writes: the tables' own format.
pub(super) fn sst_options() -> &'static Options {
    static OPTIONS: std::sync::OnceLock<Options> = std::sync::OnceLock::new();
    OPTIONS.get_or_init(db_options)
}

/// Options of the database and of each table's column family.
pub(super) fn db_options() -> Options {
    static CACHE: std::sync::OnceLock<rocksdb::Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES));
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    // Bloom filters on the key without its time: a read skips every file that has no
    // version of its key (reads seek, so whole-key filters would never be consulted).
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(false);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // 16 KiB blocks instead of 4: a quarter of the index entries and block trailers to
    // build, merge and checksum (compactions' CPU -10 %, replays with the state 0.92-0.97
    // of the wall time, API reads on a bench state no slower; docs/PERFORMANCE-HISTORY.md).
    table.set_block_size(BLOCK_BYTES);
    let mut opts = Options::default();
    opts.set_prefix_extractor(rocksdb::SliceTransform::create(
        "labeljoin-key-without-time",
        keys::without_time,
        Some(keys::has_time),
    ));
    opts.set_block_based_table_factory(&table);
    // Versions arrive as ingested files (memtables stay empty), only ever added
    // (retention aside): universal compaction rewrites each byte fewer times than leveled
    // compaction, which matters on a job's spare cores.
    opts.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
    // No compression. LZ4 on the oldest sorted run saved 30 % of the disk (624 against
    // 893 MB after the bench) but was a quarter of the compactions' CPU, and universal
    // compaction's size-amplification check, which compares the newer runs' raw bytes
    // with that run's compressed ones, merged the whole table more often. Without it
    // replays with the state take 0.87-0.93 of the wall time and reads decompress nothing
    // (docs/PERFORMANCE-HISTORY.md). States written with LZ4 by earlier versions stay readable
    // (the codec is still built in).
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    // Files a compaction or an ingestion made obsolete are deleted by a background thread,
    // not by the worker whose ingestion found them (on a file system mounted with
    // `discard`, each deletion waits for the device).
    opts.set_avoid_unnecessary_blocking_io(true);
    opts
}
