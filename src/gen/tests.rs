//! Tests of the generator: determinism, counts, formats, arrival order.
use super::*;
use std::collections::HashMap;

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos());
    let pid = std::process::id();
    std::env::temp_dir().join(format!("labeljoin-gen-{pid}-{name}-{nanos}"))
}

/// A small config with the given duplicate, late and malformed fractions and files per stream.
fn small(dup: f64, late: f64, malformed: f64, files: u32) -> GenConfig {
    let mut c = GenConfig::default();
    (c.impressions, c.ctr, c.prediction_every) = (2_000, 0.2, 5);
    (c.duplicate_fraction, c.late_fraction, c.malformed_fraction) = (dup, late, malformed);
    c.files_per_stream = files;
    c
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    text.lines().map(str::to_string).collect()
}

/// Impression id -> (ts, user_id).
fn impressions(events: &[GenEvent]) -> HashMap<&str, (u64, &str)> {
    events
        .iter()
        .filter_map(|e| match e {
            GenEvent::Impression {
                id, ts, user_id, ..
            } => Some((id.as_str(), (*ts, user_id.as_str()))),
            _ => None,
        })
        .collect()
}

/// (ts, impression_id, user_id) of every click.
fn clicks(events: &[GenEvent]) -> Vec<(u64, &str, &str)> {
    events
        .iter()
        .filter_map(|e| match e {
            GenEvent::Click {
                ts,
                impression_id: i,
                user_id: u,
                ..
            } => Some((*ts, i.as_str(), u.as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn same_seed_same_bytes() {
    let cfg = GenConfig {
        epoch_ms_times: false,
        ..small(0.1, 0.05, 0.05, 2)
    };
    let (a, b) = (temp_dir("det-a"), temp_dir("det-b"));
    let (sa, sb) = (
        write_files(&cfg, &a).unwrap(),
        write_files(&cfg, &b).unwrap(),
    );
    assert_eq!(sa.files.len(), 6);
    assert_eq!(sa.lines, sb.lines);
    for (fa, fb) in sa.files.iter().zip(&sb.files) {
        assert_eq!(fa.file_name(), fb.file_name());
        assert_eq!(fs::read(fa).unwrap(), fs::read(fb).unwrap());
    }
    let other = GenConfig {
        seed: 7,
        ..cfg.clone()
    };
    assert_ne!(generate_events(&other), generate_events(&cfg));
    fs::remove_dir_all(&a).ok();
    fs::remove_dir_all(&b).ok();
}

#[test]
fn counts_match_lines_and_clicks_have_impressions() {
    let cfg = small(0.05, 0.01, 0.02, 3);
    let dir = temp_dir("counts");
    let s = write_files(&cfg, &dir).unwrap();
    let lines: Vec<String> = s.files.iter().flat_map(|f| read_lines(f)).collect();
    let parsed = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let valid = parsed
        .filter(|v| v.get("id").is_some() && v["ts"].is_u64())
        .count() as u64;
    assert_eq!(lines.len() as u64, s.lines);
    assert_eq!(
        valid,
        s.impressions + s.clicks + s.predictions + s.duplicates
    );
    assert_eq!(s.lines, valid + s.malformed);
    assert!(s.malformed > 0 && s.duplicates > 0 && s.late > 0);

    let events = generate_events(&cfg);
    let preds = events
        .iter()
        .filter(|e| e.stream() == "predictions")
        .count() as u64;
    assert_eq!((s.impressions, s.predictions), (cfg.impressions, preds));
    let (imps, clicks) = (impressions(&events), clicks(&events));
    assert_eq!(s.clicks, clicks.len() as u64);
    for (ts, imp, user) in clicks {
        assert!(ts >= imps[imp].0 && user == imps[imp].1);
    }
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn click_delays_within_window_without_beyond() {
    let mut cfg = small(0.0, 0.0, 0.0, 1);
    (cfg.beyond_window_fraction, cfg.click_delay_mean_s) = (0.0, 10.0);
    let events = generate_events(&cfg);
    let (imps, clicks) = (impressions(&events), clicks(&events));
    assert!(clicks.len() > 100);
    for (ts, imp, _) in clicks {
        assert!(ts - imps[imp].0 <= cfg.window_ms);
    }
}

#[test]
fn clean_files_are_arrival_sorted_permutations() {
    let cfg = small(0.0, 0.0, 0.0, 2);
    let dir = temp_dir("perm");
    let s = write_files(&cfg, &dir).unwrap();
    assert_eq!(s.lines, s.impressions + s.clicks + s.predictions);
    let (planned, events) = (plan(&cfg), generate_events(&cfg));
    for stream in ["impressions", "clicks", "predictions"] {
        // Arrival key = (arrival ms, position in the plan).
        let mut by_arrival: Vec<(u64, usize, String)> = planned
            .iter()
            .enumerate()
            .filter(|(_, p)| p.event.stream() == stream)
            .map(|(i, p)| (p.arrival_ms, i, p.event.to_json_line(true)))
            .collect();
        by_arrival.sort();
        let mut written = Vec::new();
        for f in 0..2 {
            let lines = read_lines(&dir.join(format!("{stream}-{f:03}.jsonl")));
            let want = by_arrival.iter().skip(f).step_by(2).map(|e| &e.2);
            assert!(lines.iter().eq(want));
            written.extend(lines);
        }
        let mut reference: Vec<String> = events
            .iter()
            .filter(|e| e.stream() == stream)
            .map(|e| e.to_json_line(true))
            .collect();
        written.sort();
        reference.sort();
        assert_eq!(written, reference);
    }
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn early_clicks_arrive_before_their_impression() {
    let mut cfg = small(0.0, 0.0, 0.0, 1);
    cfg.early_click_fraction = 1.0;
    let planned = plan(&cfg);
    let arrival: HashMap<&str, u64> = planned
        .iter()
        .filter_map(|p| match &p.event {
            GenEvent::Impression { id, .. } => Some((id.as_str(), p.arrival_ms)),
            _ => None,
        })
        .collect();
    for p in &planned {
        if let GenEvent::Click { impression_id, .. } = &p.event {
            assert!(p.arrival_ms < arrival[impression_id.as_str()]);
        }
    }
}

#[test]
fn file_names_and_no_predictions_file() {
    let mut cfg = small(0.0, 0.0, 0.0, 1);
    (cfg.impressions, cfg.prediction_every) = (100, 0);
    let dir = temp_dir("names");
    let s = write_files(&cfg, &dir).unwrap();
    let names: Vec<_> = s.files.iter().map(|f| f.file_name().unwrap()).collect();
    assert_eq!(names, ["impressions.jsonl", "clicks.jsonl"]);
    assert!(s.files.iter().all(|f| f.starts_with(&dir) && f.exists()));
    assert_eq!(s.predictions, 0);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn line_formats() {
    let rfc = crate::time::display;
    assert_eq!(rfc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    assert_eq!(rfc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    let (id, user_id, ts) = (
        "pred-0000000001".to_string(),
        "u17".to_string(),
        1_700_000_000_123,
    );
    let p = GenEvent::Prediction {
        id,
        ts,
        user_id,
        score: 0.0342,
    };
    let want = r#"{"id":"pred-0000000001","ts":1700000000123,"user_id":"u17","score":0.0342}"#;
    assert_eq!(p.to_json_line(true), want);
    let want = want.replace("1700000000123", r#""2023-11-14T22:13:20.123Z""#);
    assert_eq!(p.to_json_line(false), want);
    let first = generate_events(&small(0.0, 0.0, 0.0, 1))[0].clone();
    let line = first.to_json_line(true);
    assert!(line.starts_with(r#"{"id":"imp-0000000001","ts":1700000000000,"user_id":"u"#));
    assert!(line.contains(r#","domain":"site"#) && line.ends_with("\"}"));
    for kind in 0..4 {
        let bad = malformed_line(kind, &first, &line, true);
        let v: Result<serde_json::Value, _> = serde_json::from_str(&bad);
        let valid = v.is_ok_and(|v| v.get("id").is_some() && v["ts"].is_u64());
        assert!(!valid, "{bad}");
    }
}
