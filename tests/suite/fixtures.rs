//! The committed, hand-checked contract fixture (fixtures/contract/README.md) gives exactly
//! its expected rows and side records.

use crate::common;

use std::fs;
use std::path::Path;

use common::{files_under, Outcome};
use labeljoin::config::Pipeline;

#[test]
fn contract_fixture_gives_its_hand_checked_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::load(Path::new("fixtures/contract/pipeline.toml")).unwrap();
    for workers in [1, 3] {
        let out = dir.path().join(format!("w{workers}"));
        let summary = common::run_pipeline(p.clone(), &out, workers).summary;
        // Rows of all parts, in (time, id) order, under one header.
        let mut header = String::new();
        let mut rows: Vec<(u64, String, String)> = Vec::new();
        for file in files_under(&out.join("full"), "csv") {
            let body = fs::read_to_string(file).unwrap();
            let mut lines = body.lines();
            header = lines.next().unwrap().to_string();
            for line in lines {
                let mut f = line.split(',');
                let id = f.next().unwrap().to_string();
                rows.push((f.next().unwrap().parse().unwrap(), id, line.to_string()));
            }
        }
        rows.sort();
        let text: String = std::iter::once(header)
            .chain(rows.into_iter().map(|r| r.2))
            .map(|l| l + "\n")
            .collect();
        assert_eq!(
            text,
            fs::read_to_string("fixtures/contract/expected_full.csv").unwrap(),
            "{workers} workers"
        );
        assert_eq!(
            (summary.late, summary.duplicates, summary.malformed),
            (1, 1, 1)
        );
        assert_eq!((summary.orphans, summary.outside_window), (1, 2));
        let o = Outcome { summary, out };
        assert_eq!(o.side("dead_letter")[0]["position"], "line 8");
        assert_eq!(o.side("late")[0]["id"], "kL");
    }
}
