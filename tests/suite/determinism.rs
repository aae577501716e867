//! DESIGN.md clause 7: random streams, shuffled within the out-of-orderness bound, on 1 and 4
//! workers, give exactly the rows of a plain reference implementation of the definitions.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;
const W: u64 = 900_000;
const OOO: u64 = 30_000;

#[derive(Debug, Clone)]
struct Imp {
    id: String,
    t: u64,
    user: String,
    campaign: String,
}
#[derive(Debug, Clone)]
struct Click {
    id: String,
    t: u64,
    imp: String,
    user: String,
    campaign: String,
}
#[derive(Debug, Clone)]
struct Pred {
    id: String,
    t: u64,
    user: String,
    score: f64,
}

#[derive(Debug, Clone)]
struct Streams {
    imps: Vec<Imp>,
    clicks: Vec<Click>,
    preds: Vec<Pred>,
    /// Arrival jitter per line, in [0, OOO].
    jitter: Vec<u64>,
    /// Which lines are written twice.
    dup: Vec<bool>,
}

/// Times on a coarse grid so that many events share a millisecond.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..240).prop_map(|k| T0 + k * 30_000),
        (0u64..7_200_000).prop_map(|d| T0 + d)
    ]
}

fn streams() -> impl Strategy<Value = Streams> {
    let imp = (time(), 0u8..4, 0u8..3);
    let click = (
        0usize..1000,
        0u64..1_200_000,
        prop::bool::weighted(0.1),
        0u8..4,
    );
    let pred = (time(), 0u8..4, 0u32..1000);
    (
        prop::collection::vec(imp, 1..50),
        prop::collection::vec(click, 0..25),
        prop::collection::vec(pred, 0..10),
    )
        .prop_flat_map(|(imps, clicks, preds)| {
            let n = imps.len() + clicks.len() + preds.len();
            (
                Just((imps, clicks, preds)),
                prop::collection::vec(0..=OOO, n),
                prop::collection::vec(prop::bool::weighted(0.1), n),
            )
        })
        .prop_map(|((imps, clicks, preds), jitter, dup)| {
            let imps: Vec<Imp> = imps
                .into_iter()
                .enumerate()
                .map(|(i, (t, u, c))| Imp {
                    id: format!("i{i}"),
                    t,
                    user: format!("u{u}"),
                    campaign: format!("c{c}"),
                })
                .collect();
            let clicks = clicks
                .into_iter()
                .enumerate()
                .map(|(k, (which, delay, orphan, u))| {
                    let imp = &imps[which % imps.len()];
                    if orphan {
                        Click {
                            id: format!("k{k}"),
                            t: imp.t + delay,
                            imp: format!("none{k}"),
                            user: format!("u{u}"),
                            campaign: "c0".into(),
                        }
                    } else {
                        Click {
                            id: format!("k{k}"),
                            t: imp.t + delay,
                            imp: imp.id.clone(),
                            user: imp.user.clone(),
                            campaign: imp.campaign.clone(),
                        }
                    }
                })
                .collect();
            let preds = preds
                .into_iter()
                .enumerate()
                .map(|(p, (t, u, s))| Pred {
                    id: format!("p{p:03}"),
                    t,
                    user: format!("u{u}"),
                    score: s as f64 / 1000.0,
                })
                .collect();
            Streams {
                imps,
                clicks,
                preds,
                jitter,
                dup,
            }
        })
}

/// Writes each stream in arrival order (time + jitter), split over two files.
fn write(s: &Scratch, st: &Streams) {
    let mut lines: Vec<(&str, u64, String)> = Vec::new();
    lines.extend(st.imps.iter().map(|i| {
        (
            "impressions",
            i.t,
            impression(&i.id, i.t, &i.user, &i.campaign),
        )
    }));
    lines.extend(st.clicks.iter().map(|c| {
        (
            "clicks",
            c.t,
            click(&c.id, c.t, &c.imp, &c.user, &c.campaign),
        )
    }));
    lines.extend(
        st.preds
            .iter()
            .map(|p| ("predictions", p.t, prediction(&p.id, p.t, &p.user, p.score))),
    );
    let mut arrivals: Vec<(u64, usize, &str, String)> = Vec::new();
    for (n, (stream, t, line)) in lines.into_iter().enumerate() {
        let at = t + st.jitter[n];
        if st.dup[n] {
            arrivals.push((at, n, stream, line.clone())); // an identical redelivery, arriving together
        }
        arrivals.push((at, n, stream, line));
    }
    arrivals.sort_by_key(|a| (a.0, a.1));
    for stream in ["impressions", "clicks", "predictions"] {
        for part in 0..2 {
            let mine: Vec<String> = arrivals
                .iter()
                .filter(|a| a.2 == stream && a.1 % 2 == part)
                .map(|a| a.3.clone())
                .collect();
            s.write(&format!("{stream}-{part}.jsonl"), &mine);
        }
    }
}

fn num(x: f64) -> String {
    format!("{x}")
}

/// The definitions, computed naively.
fn reference(st: &Streams) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for i in &st.imps {
        let before = |t: u64| t < i.t;
        let clicks_in = st
            .clicks
            .iter()
            .filter(|c| c.imp == i.id && i.t <= c.t && c.t <= i.t + W)
            .count();
        let user_imps: Vec<&Imp> = st
            .imps
            .iter()
            .filter(|j| j.user == i.user && before(j.t))
            .collect();
        let last_imp = user_imps.iter().map(|j| j.t).max();
        let score = st
            .preds
            .iter()
            .filter(|p| p.user == i.user && before(p.t))
            .max_by(|a, b| (a.t, &a.id).cmp(&(b.t, &b.id)))
            .map(|p| num(p.score));
        let mut r = Row::new();
        r.insert("example_id".into(), i.id.clone());
        r.insert("event_time".into(), i.t.to_string());
        r.insert("label".into(), u32::from(clicks_in > 0).to_string());
        r.insert("outcome_count".into(), clicks_in.to_string());
        r.insert("campaign".into(), i.campaign.clone());
        r.insert("user_impressions".into(), user_imps.len().to_string());
        let user_clicks = st
            .clicks
            .iter()
            .filter(|c| c.user == i.user && before(c.t))
            .count();
        r.insert("user_clicks".into(), user_clicks.to_string());
        let in_hour = user_imps.iter().filter(|j| j.t + 3_600_000 >= i.t).count();
        r.insert("user_impressions_1h".into(), in_hour.to_string());
        let campaigns: BTreeSet<&str> = user_imps.iter().map(|j| j.campaign.as_str()).collect();
        r.insert(
            "user_distinct_campaigns".into(),
            campaigns.len().to_string(),
        );
        r.insert(
            "user_secs_since_impression".into(),
            last_imp
                .map(|t| num((i.t - t) as f64 / 1000.0))
                .unwrap_or_default(),
        );
        r.insert("user_model_score".into(), score.unwrap_or_default());
        let camp = st
            .imps
            .iter()
            .filter(|j| j.campaign == i.campaign && before(j.t))
            .count();
        r.insert("campaign_impressions".into(), camp.to_string());
        let camp_clicks = st
            .clicks
            .iter()
            .filter(|c| c.campaign == i.campaign && before(c.t))
            .count();
        r.insert("campaign_clicks".into(), camp_clicks.to_string());
        rows.insert(i.id.clone(), r);
    }
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn same_rows_for_any_arrival_order_and_worker_count_as_the_reference(st in streams()) {
        let s = Scratch::new();
        write(&s, &st);
        let pipeline = ad_pipeline("30s", false);
        let one = s.run(&pipeline, 1, "w1");
        let four = s.run(&pipeline, 4, "w4");
        prop_assert_eq!(one.summary.late, 0, "arrivals within the bound are never late");
        let expected = reference(&st);
        let rows = one.rows();
        for (id, want) in &expected {
            prop_assert_eq!(rows.get(id), Some(want), "example {}", id);
        }
        prop_assert_eq!(rows.len(), expected.len());
        prop_assert_eq!(four.rows(), rows);
        prop_assert_eq!(four.summary.duplicates, one.summary.duplicates);
        prop_assert_eq!(four.summary.orphans, one.summary.orphans);
    }
}
