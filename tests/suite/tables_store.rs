//! The versioned RocksDB store (DESIGN.md "Lookup tables"): time travel against a reference
//! model, retention keeps the newest version, and the named errors.

use std::collections::BTreeMap;

use labeljoin::tables::{StoreError, TableStore};
use proptest::prelude::*;

type Model = BTreeMap<(Vec<u8>, u64), Vec<u8>>;

fn model_get(m: &Model, key: &[u8], as_of: u64) -> Option<(u64, Vec<u8>)> {
    m.range((key.to_vec(), 0)..=(key.to_vec(), as_of))
        .next_back()
        .map(|((_, t), v)| (*t, v.clone()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn time_travel_reads_match_a_reference_model(
        puts in prop::collection::vec((0u8..4, 0u64..60, prop::collection::vec(any::<u8>(), 0..4)), 0..60),
        queries in prop::collection::vec((0u8..5, 0u64..70, 0u64..70), 1..30),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::open(dir.path(), &["user"], &[]).unwrap();
        let mut model = Model::new();
        // The job writes each key's versions in event-time order (see `tables::pack`);
        // equal times across and within writes are rewrites, the last one wins.
        let mut puts = puts;
        puts.sort_by_key(|p| p.1);
        for chunk in puts.chunks(7) {
            let rows: Vec<(Vec<u8>, u64, Vec<u8>)> = chunk.iter().map(|(k, t, v)| (vec![b'k', *k], *t, v.clone())).collect();
            store.put_versions("user", rows.iter().map(|(k, t, v)| (k.as_slice(), *t, v.as_slice()))).unwrap();
            for (k, t, v) in rows {
                model.insert((k, t), v);
            }
        }
        for (k, a, b) in queries {
            let key = vec![b'k', k];
            prop_assert_eq!(store.get("user", &key, a).unwrap(), model_get(&model, &key, a));
            let (from, to) = (a.min(b), a.max(b));
            // Several times through one iterator (stepping or seeking) read as one at a time.
            let times = [to, from, from / 2, to];
            let one_by_one: Vec<_> = times.iter().map(|t| model_get(&model, &key, *t)).collect();
            prop_assert_eq!(store.get_at("user", &key, &times).unwrap(), one_by_one);
            let want: Vec<(u64, Vec<u8>)> =
                model.range((key.clone(), from)..=(key.clone(), to)).map(|((_, t), v)| (*t, v.clone())).collect();
            prop_assert_eq!(&store.history("user", &key, from, to).unwrap(), &want);
            let limit = (a % 4 + 1) as usize;
            let newest = want[want.len().saturating_sub(limit)..].to_vec();
            prop_assert_eq!(store.newest_versions("user", &key, from, to, limit).unwrap(), newest);
        }
    }

    /// Retention runs inside RocksDB compactions over files written at different times:
    /// whatever the cutoffs and the flushes between writes, reads as of the highest
    /// cutoff or later stay equal to the model.
    #[test]
    fn retention_never_changes_a_read_at_or_after_the_cutoff(
        puts in prop::collection::vec((0u8..4, 0u64..60, any::<u8>()), 1..80),
        cutoffs in prop::collection::vec(0u64..70, 1..4),
        queries in prop::collection::vec((0u8..4, 0u64..70), 1..30),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::open(dir.path(), &["user"], &["user"]).unwrap();
        let mut model = Model::new();
        let mut puts = puts;
        puts.sort_by_key(|p| p.1);
        for (i, chunk) in puts.chunks(9).enumerate() {
            let rows: Vec<(Vec<u8>, u64, Vec<u8>)> = chunk.iter().map(|(k, t, v)| (vec![b'k', *k], *t, vec![*v])).collect();
            store.put_versions("user", rows.iter().map(|(k, t, v)| (k.as_slice(), *t, v.as_slice()))).unwrap();
            for (k, t, v) in rows {
                model.insert((k, t), v);
            }
            store.flush().unwrap();
            if let Some(c) = cutoffs.get(i) {
                store.apply_retention("user", *c).unwrap();
            }
        }
        let highest = *cutoffs.iter().max().unwrap();
        store.apply_retention("user", highest).unwrap();
        for (k, a) in queries {
            let key = vec![b'k', k];
            let as_of = a.max(highest);
            prop_assert_eq!(store.get("user", &key, as_of).unwrap(), model_get(&model, &key, as_of));
        }
    }
}

#[test]
fn retention_drops_old_versions_but_keeps_the_newest_one_reads_need() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::open(dir.path(), &["user"], &["user"]).unwrap();
    // One write per version, as passes of the job far apart in event time write them
    // (the versions of one key in one write share an entry and are kept or go together).
    let versions: Vec<(&[u8], u64, &[u8])> = vec![
        (b"b", 5, b"x"),
        (b"a", 10, b"1"),
        (b"a", 20, b"2"),
        (b"a", 30, b"3"),
        (b"a", 40, b"4"),
    ];
    for v in versions {
        store.put_versions("user", [v]).unwrap();
    }
    let removed = store.apply_retention("user", 35).unwrap();
    assert_eq!(
        removed, 2,
        "a@10 and a@20 go; a@30 (newest before the cutoff) and b@5 stay"
    );
    assert_eq!(
        store.get("user", b"a", 35).unwrap(),
        Some((30, b"3".to_vec()))
    );
    assert_eq!(
        store.get("user", b"a", 100).unwrap(),
        Some((40, b"4".to_vec()))
    );
    assert_eq!(
        store.get("user", b"b", 100).unwrap(),
        Some((5, b"x".to_vec())),
        "the only version always stays"
    );
    assert_eq!(
        store.get("user", b"a", 25).unwrap(),
        None,
        "history before the cutoff is gone"
    );
}

#[test]
fn a_locked_state_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let _first = TableStore::open(dir.path(), &["user"], &[]).unwrap();
    match TableStore::open(dir.path(), &["user"], &[]) {
        Err(e @ StoreError::Locked(_)) => assert!(e.to_string().contains("locked"), "{e}"),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second writer must not open the same state directory"),
    }
    // Readers are fine while the writer runs.
    TableStore::open_read_only(dir.path()).unwrap();
}

#[test]
fn an_incompatible_state_directory_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("FORMAT"), "labeljoin-tables 0\n").unwrap();
    match TableStore::open(dir.path(), &["user"], &[]) {
        Err(e @ StoreError::Incompatible { .. }) => {
            assert!(e.to_string().contains("labeljoin-tables 0"), "{e}")
        }
        Err(e) => panic!("expected Incompatible, got {e}"),
        Ok(_) => panic!("an incompatible directory must not be opened"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
        "labeljoin-tables 0\n"
    );
}

#[test]
fn unknown_tables_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::open(dir.path(), &["user"], &[]).unwrap();
    let e = store.get("campaign", b"c1", 0).unwrap_err();
    assert!(e.to_string().contains("campaign"), "{e}");
    assert_eq!(store.tables(), vec!["user".to_string()]);
}

#[test]
fn retention_on_a_table_opened_without_it_is_refused_naming_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::open(dir.path(), &["user", "campaign"], &["user"]).unwrap();
    store.set_retention_cutoff("user", 10).unwrap();
    match store.apply_retention("campaign", 10) {
        Err(e @ StoreError::NoRetention(_)) => {
            let e = e.to_string();
            assert!(e.contains("\"campaign\"") && e.contains("retention"), "{e}");
        }
        other => panic!("expected NoRetention, got {other:?}"),
    }
    assert!(matches!(
        store.set_retention_cutoff("country", 10),
        Err(StoreError::UnknownTable(_))
    ));
}

#[test]
fn a_restored_snapshot_answers_every_read_as_the_original_did_at_that_version() {
    use labeljoin::tables::snapshot;
    let state = tempfile::tempdir().unwrap();
    let store = TableStore::open(state.path(), &["user", "campaign"], &[]).unwrap();
    let before: Vec<(&[u8], u64, &[u8])> =
        vec![(b"u1", 10, b"a"), (b"u1", 20, b"b"), (b"u2", 15, b"c")];
    store.put_versions("user", before).unwrap();
    store
        .put_versions("campaign", vec![(&b"c1"[..], 12, &b"z"[..])])
        .unwrap();
    let manifest = snapshot::create(&store, state.path(), 1, 20).unwrap();
    assert_eq!(
        manifest.tables,
        vec!["user".to_string(), "campaign".to_string()]
    );
    store
        .put_versions("user", vec![(&b"u1"[..], 30, &b"later"[..])])
        .unwrap();

    assert_eq!(
        snapshot::list(state.path())
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>(),
        vec![1]
    );
    let target = state.path().join("restored");
    snapshot::restore(state.path(), 1, &target).unwrap();
    let restored = TableStore::open_read_only(&target).unwrap();
    for key in [&b"u1"[..], b"u2", b"u3"] {
        for as_of in [0, 10, 14, 15, 19, 20, 25, 30, 99] {
            let original = store.get("user", key, as_of.min(20)).unwrap();
            assert_eq!(
                restored.get("user", key, as_of).unwrap(),
                original,
                "{key:?} as of {as_of}"
            );
        }
    }
    assert_eq!(
        restored.get("campaign", b"c1", 99).unwrap(),
        Some((12, b"z".to_vec()))
    );
}

#[test]
fn a_corrupted_snapshot_is_named_and_nothing_is_restored() {
    use labeljoin::tables::snapshot;
    let state = tempfile::tempdir().unwrap();
    let store = TableStore::open(state.path(), &["user"], &[]).unwrap();
    store
        .put_versions("user", vec![(&b"u1"[..], 10, &b"a"[..])])
        .unwrap();
    let manifest = snapshot::create(&store, state.path(), 7, 10).unwrap();
    let dir = snapshot::snapshot_dir(state.path(), 7);
    let (victim, _) = manifest
        .files
        .iter()
        .find(|(n, size)| n.ends_with(".sst") && *size > 0)
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(dir.join(&victim)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(dir.join(&victim), bytes).unwrap();
    let target = state.path().join("restored");
    match snapshot::restore(state.path(), 7, &target) {
        Err(e @ StoreError::Corrupt { .. }) => assert!(e.to_string().contains("corrupted"), "{e}"),
        other => panic!(
            "expected Corrupt, got {other:?}",
            other = other.map(|m| m.version)
        ),
    }
    assert!(
        !target.exists(),
        "nothing restored from a corrupted snapshot"
    );
}
