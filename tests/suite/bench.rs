//! `labeljoin bench` (docs/PERFORMANCE.md): each run's figures, and their medians.

use std::process::Command;

#[test]
fn bench_reports_each_run_and_the_medians_of_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_labeljoin"))
        .args(["bench", "--impressions", "3000", "--runs", "3", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let reports: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 4, "three runs and their medians: {text}");
    let medians = text
        .lines()
        .filter(|l| l.starts_with("median of 3 runs: events "));
    assert_eq!(medians.count(), 1, "{text}");
    for r in &reports {
        assert!(r["events"].as_u64().unwrap() > 3_000, "{r}");
        assert!(r["rows"].as_u64().unwrap() > 0, "{r}");
        assert!(r["cpu_seconds"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0, "{r}");
    }
    for key in [
        "seconds",
        "events_per_second",
        "cpu_seconds",
        "peak_rss_mib",
    ] {
        let mut runs: Vec<f64> = reports[..3]
            .iter()
            .map(|r| r[key].as_f64().unwrap())
            .collect();
        runs.sort_by(f64::total_cmp);
        assert_eq!(reports[3][key].as_f64().unwrap(), runs[1], "{key}: {text}");
    }
}
