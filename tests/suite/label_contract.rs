//! DESIGN.md clauses 2-6 on small hand-checked streams, one test per clause.

use crate::common;

use common::*;

const T0: u64 = 1_700_000_000_000;
const W: u64 = 900_000;

fn no_predictions(s: &Scratch) {
    s.write("predictions.jsonl", &[]);
}

#[test]
fn label_window_bounds_are_inclusive() {
    let s = Scratch::new();
    s.write(
        "impressions.jsonl",
        &[
            impression("i1", T0, "u1", "c1"),
            impression("i2", T0, "u2", "c1"),
            impression("i3", T0, "u3", "c1"),
            impression("i4", T0, "u4", "c1"),
        ],
    );
    s.write(
        "clicks.jsonl",
        &[
            click("k4", T0 - 1, "i4", "u4", "c1"), // before the impression: outside
            click("k1", T0, "i1", "u1", "c1"),     // at t: counts
            click("k2", T0 + W, "i2", "u2", "c1"), // at t + window: counts
            click("k3", T0 + W + 1, "i3", "u3", "c1"), // 1 ms after: outside
        ],
    );
    no_predictions(&s);
    let o = s.run(&ad_pipeline("30s", false), 1, "a");
    let rows = o.rows();
    assert_eq!(rows["i1"]["label"], "1");
    assert_eq!(rows["i2"]["label"], "1");
    assert_eq!(rows["i3"]["label"], "0");
    assert_eq!(rows["i4"]["label"], "0");
    assert_eq!(o.summary.outside_window, 2);
    let reasons: Vec<_> = o
        .side("unmatched")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(reasons.contains(&"k3".to_string()) && reasons.contains(&"k4".to_string()));
}

#[test]
fn click_arriving_before_its_impression_counts() {
    let s = Scratch::new();
    // Clicks are declared (and so read) first: k1 arrives before i1 does.
    s.write("clicks.jsonl", &[click("k1", T0 + 5_000, "i1", "u1", "c1")]);
    s.write("impressions.jsonl", &[impression("i1", T0, "u1", "c1")]);
    no_predictions(&s);
    let o = s.run(&ad_pipeline("30s", true), 1, "a");
    assert_eq!(o.rows()["i1"]["label"], "1");
    assert_eq!(o.rows()["i1"]["outcome_count"], "1");
    assert_eq!(o.summary.orphans, 0);
}

#[test]
fn late_click_changes_no_emitted_row_and_is_recorded() {
    let s = Scratch::new();
    s.write(
        "impressions.jsonl",
        &[
            impression("i1", T0, "u1", "c1"),
            impression("i2", T0 + 3_600_000, "u2", "c1"),
        ],
    );
    s.write(
        "clicks.jsonl",
        &[
            click("k2", T0 + 3_601_000, "i2", "u2", "c1"),
            click("k1", T0 + 60_000, "i1", "u1", "c1"), // arrives after the watermark passed it
        ],
    );
    no_predictions(&s);
    let o = s.run(&ad_pipeline("1s", false), 1, "a");
    let rows = o.rows();
    assert_eq!(
        rows["i1"]["label"], "0",
        "a late click must not change the row"
    );
    assert_eq!(rows["i2"]["label"], "1");
    assert_eq!(o.summary.late, 1);
    let late = o.side("late");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["id"], "k1");
    assert_eq!(late[0]["reason"], "late");
    assert!(
        late[0]["record"]
            .as_str()
            .unwrap()
            .contains("\"impression_id\":\"i1\""),
        "the late record is kept whole"
    );
}

#[test]
fn orphan_clicks_are_counted_and_kept() {
    let s = Scratch::new();
    s.write("impressions.jsonl", &[impression("i1", T0, "u1", "c1")]);
    s.write(
        "clicks.jsonl",
        &[click("k9", T0 + 1_000, "never-shown", "u1", "c1")],
    );
    no_predictions(&s);
    let o = s.run(&ad_pipeline("30s", false), 1, "a");
    assert_eq!(o.summary.orphans, 1);
    let unmatched = o.side("unmatched");
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0]["reason"], "orphan");
    assert_eq!(unmatched[0]["id"], "k9");
    assert_eq!(o.rows()["i1"]["label"], "0");
}

#[test]
fn duplicates_are_dropped_once_and_counted() {
    let s = Scratch::new();
    let i1 = impression("i1", T0, "u1", "c1");
    let k1 = click("k1", T0 + 1_000, "i1", "u1", "c1");
    s.write(
        "impressions.jsonl",
        &[i1.clone(), i1, impression("i2", T0 + 2_000, "u1", "c1")],
    );
    s.write("clicks.jsonl", &[k1.clone(), k1]);
    no_predictions(&s);
    let o = s.run(&ad_pipeline("30s", false), 1, "a");
    let rows = o.rows();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows["i1"]["outcome_count"], "1");
    assert_eq!(
        rows["i2"]["user_impressions"], "1",
        "the copy must not count as a second impression"
    );
    assert_eq!(rows["i2"]["user_clicks"], "1");
    assert_eq!(o.summary.duplicates, 2);
    assert_eq!(o.side("duplicates").len(), 2);
}

#[test]
fn malformed_lines_go_to_dead_letter_with_position_and_the_job_continues() {
    let s = Scratch::new();
    s.write(
        "impressions.jsonl",
        &[
            impression("i1", T0, "u1", "c1"),
            "garbage,not json".to_string(),
            r#"{"id":"i3","ts":"not-a-time","user_id":"u1","campaign_id":"c1"}"#.to_string(),
            r#"{"id":"i4","ts":1700000000500,"campaign_id":"c1"}"#.to_string(),
            impression("i5", T0 + 1_000, "u1", "c1"),
        ],
    );
    s.write("clicks.jsonl", &[]);
    no_predictions(&s);
    let o = s.run(&ad_pipeline("30s", false), 1, "a");
    assert_eq!(o.rows().len(), 2);
    assert_eq!(o.summary.malformed, 3);
    let dead = o.side("dead_letter");
    let positions: Vec<_> = dead
        .iter()
        .map(|r| r["position"].as_str().unwrap())
        .collect();
    assert_eq!(positions, ["line 2", "line 3", "line 4"]);
    assert!(dead[0]["error"].as_str().unwrap().contains("invalid JSON"));
    assert!(
        dead[1]["error"].as_str().unwrap().contains("\"ts\""),
        "names the time field"
    );
    assert!(
        dead[2]["error"].as_str().unwrap().contains("\"user_id\""),
        "names the missing key field"
    );
    assert_eq!(dead[0]["record"], "garbage,not json");
    assert_eq!(dead[0]["source"], "impressions");
}

#[test]
fn features_use_only_events_strictly_before_the_example() {
    let s = Scratch::new();
    let t = T0 + 10_000;
    s.write(
        "impressions.jsonl",
        &[
            impression("a", T0, "u1", "c1"),
            impression("b", t, "u1", "c2"),
            impression("c", t, "u1", "c3"),
            impression("d", t + 1, "u1", "c1"),
        ],
    );
    s.write("clicks.jsonl", &[click("k", t, "a", "u1", "c1")]);
    no_predictions(&s);
    let rows = s.run(&ad_pipeline("30s", false), 1, "a").rows();
    for same_time in ["b", "c"] {
        let r = &rows[same_time];
        assert_eq!(
            r["user_impressions"], "1",
            "{same_time}: neither itself nor its same-ms twin"
        );
        assert_eq!(
            r["user_clicks"], "0",
            "{same_time}: a click stamped exactly t is not before t"
        );
        assert_eq!(r["user_distinct_campaigns"], "1");
        assert_eq!(r["user_secs_since_impression"], "10");
    }
    assert_eq!(rows["d"]["user_impressions"], "3");
    assert_eq!(rows["d"]["user_clicks"], "1");
    assert_eq!(rows["d"]["user_distinct_campaigns"], "3");
    assert_eq!(rows["d"]["user_secs_since_impression"], "0.001");
    assert_eq!(rows["a"]["user_impressions"], "0");
    assert_eq!(
        rows["a"]["user_secs_since_impression"], "",
        "no earlier impression: missing"
    );
    assert_eq!(rows["a"]["campaign_impressions"], "0");
}

#[test]
fn sliding_windows_expire() {
    let s = Scratch::new();
    let m = 60_000;
    s.write(
        "impressions.jsonl",
        &[
            impression("a", T0, "u1", "c1"),
            impression("b", T0 + 30 * m, "u1", "c1"),
            impression("c", T0 + 60 * m, "u1", "c1"),
            impression("d", T0 + 90 * m + 1, "u1", "c1"),
        ],
    );
    s.write("clicks.jsonl", &[]);
    no_predictions(&s);
    let rows = s.run(&ad_pipeline("30s", false), 1, "a").rows();
    let count = |id: &str| rows[id]["user_impressions_1h"].clone();
    assert_eq!(count("a"), "0");
    assert_eq!(count("b"), "1");
    assert_eq!(
        count("c"),
        "2",
        "an event exactly 1 h before is inside [t - 1h, t)"
    );
    assert_eq!(count("d"), "1", "a and b have expired");
    assert_eq!(
        rows["d"]["user_impressions"], "3",
        "lifetime does not expire"
    );
}

#[test]
fn asof_prediction_is_the_latest_score_strictly_before() {
    let s = Scratch::new();
    s.write(
        "impressions.jsonl",
        &[
            impression("i1", T0, "u1", "c1"),
            impression("i2", T0 + 5_001, "u1", "c1"),
            impression("i3", T0, "u2", "c1"),
        ],
    );
    s.write("clicks.jsonl", &[]);
    s.write(
        "predictions.jsonl",
        &[
            prediction("p1", T0 - 10_000, "u1", 0.1),
            prediction("p2", T0, "u1", 0.2),
            prediction("p3", T0 + 5_000, "u1", 0.3),
        ],
    );
    let rows = s.run(&ad_pipeline("30s", false), 1, "a").rows();
    assert_eq!(
        rows["i1"]["user_model_score"], "0.1",
        "the score stamped exactly t is not used"
    );
    assert_eq!(rows["i2"]["user_model_score"], "0.3");
    assert_eq!(rows["i3"]["user_model_score"], "", "no score for u2 yet");
}
