//! Seeded generator of impressions, clicks and predictions (JSON lines) with knobs for every contract clause.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};

const COUNTRIES: [&str; 20] = [
    "US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "AU", "ES", "IT", "NL", "MX", "KR", "SE", "PL",
    "TR", "ID", "ZA", "AR",
];
const DOMAINS: u64 = 20;
const USER_AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
];
const BOT_AGENTS: [&str; 2] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
];
const BOT_FRACTION: f64 = 0.02;
/// A prediction precedes its impression by U(0, this) ms.
const PREDICTION_LEAD_MS: u64 = 60_000;
/// Extra arrival delay of late events on top of the out-of-orderness bound.
const LATE_EXTRA_MS: u64 = 60_000;
/// Salt for the second RNG that decides duplicates and malformed lines.
const WRITE_SEED_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// Knobs of the generator. All fractions are in [0, 1].
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Seed of the RNG; the same config always yields byte-identical output.
    pub seed: u64,
    /// Number of impressions to generate.
    pub impressions: u64,
    /// Number of distinct users (drawn with a skew so some users are heavy).
    pub users: u64,
    /// Number of distinct campaigns.
    pub campaigns: u64,
    /// Number of countries, at most 20; drawn from a fixed list of ISO codes.
    pub countries: u64,
    /// Event time of the first impression (epoch ms).
    pub start_ms: u64,
    /// Impressions per second of event time (exponential inter-arrival).
    pub rate_per_s: f64,
    /// Probability that an impression gets a click.
    pub ctr: f64,
    /// Mean of the exponential click delay (seconds).
    pub click_delay_mean_s: f64,
    /// Fraction of clicks whose delay is forced into (window, 3*window].
    pub beyond_window_fraction: f64,
    /// Label window (ms), used only for `beyond_window_fraction`.
    pub window_ms: u64,
    /// One prediction per this many impressions (0 = none); a prediction is for the
    /// impression's user, at the impression time minus U(0, 60 s).
    pub prediction_every: u64,
    /// Each event's arrival (file order) is its event time plus U(0, ooo) jitter.
    pub out_of_orderness_ms: u64,
    /// Fraction of clicked impressions whose impression arrival is delayed by ooo while the
    /// click has delay U(0, ooo/2), so the click arrives before its impression (if ooo > 0).
    pub early_click_fraction: f64,
    /// Fraction of events written twice (identical line; copy arrival = arrival + U(0, ooo)).
    pub duplicate_fraction: f64,
    /// Fraction of events whose arrival = event time + ooo + U(5*ooo, 10*ooo) + 60 s.
    pub late_fraction: f64,
    /// Fraction of lines (per file) preceded by an extra malformed line.
    pub malformed_fraction: f64,
    /// Each stream is split round-robin by arrival rank into this many files (>= 1).
    pub files_per_stream: u32,
    /// true: `"ts"` is a JSON number (epoch ms); false: an RFC 3339 string with millis and 'Z'.
    pub epoch_ms_times: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 42,
            impressions: 10_000,
            users: 1_000,
            campaigns: 50,
            countries: 10,
            start_ms: 1_700_000_000_000,
            rate_per_s: 50.0,
            ctr: 0.05,
            click_delay_mean_s: 120.0,
            beyond_window_fraction: 0.05,
            window_ms: 900_000,
            prediction_every: 10,
            out_of_orderness_ms: 5_000,
            early_click_fraction: 0.02,
            duplicate_fraction: 0.01,
            late_fraction: 0.001,
            malformed_fraction: 0.001,
            files_per_stream: 1,
            epoch_ms_times: true,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenSummary {
    /// Unique impressions written.
    pub impressions: u64,
    /// Unique clicks written.
    pub clicks: u64,
    /// Unique predictions written.
    pub predictions: u64,
    /// Extra duplicate lines written.
    pub duplicates: u64,
    /// Events that arrive late (counted once per event).
    pub late: u64,
    /// Extra malformed lines written.
    pub malformed: u64,
    /// Total lines written over all files.
    pub lines: u64,
    /// Files written, in stream order (impressions, clicks, predictions).
    pub files: Vec<PathBuf>,
}

/// One generated event before serialization (exposed so tests can build reference answers).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // fields are the JSON keys
pub enum GenEvent {
    /// An ad impression.
    Impression {
        id: String,
        ts: u64,
        user_id: String,
        campaign_id: String,
        domain: String,
        country: String,
        user_agent: String,
    },
    /// A click on an impression (same user, campaign and country).
    Click {
        id: String,
        ts: u64,
        impression_id: String,
        user_id: String,
        campaign_id: String,
        country: String,
    },
    /// A model prediction for a user.
    Prediction {
        id: String,
        ts: u64,
        user_id: String,
        score: f64,
    },
}

impl GenEvent {
    /// Event time (epoch ms).
    pub fn ts(&self) -> u64 {
        match self {
            GenEvent::Impression { ts, .. }
            | GenEvent::Click { ts, .. }
            | GenEvent::Prediction { ts, .. } => *ts,
        }
    }

    /// Stream name: `"impressions"`, `"clicks"` or `"predictions"`.
    pub fn stream(&self) -> &'static str {
        match self {
            GenEvent::Impression { .. } => "impressions",
            GenEvent::Click { .. } => "clicks",
            GenEvent::Prediction { .. } => "predictions",
        }
    }

    /// The JSON line of this event (no trailing newline).
    pub fn to_json_line(&self, epoch_ms_times: bool) -> String {
        self.render(&self.ts_json(epoch_ms_times), true)
    }

    /// The raw JSON value of `ts`: a number of epoch ms or an RFC 3339 string.
    fn ts_json(&self, epoch_ms_times: bool) -> String {
        if epoch_ms_times {
            self.ts().to_string()
        } else {
            format!("\"{}\"", crate::time::display(self.ts()))
        }
    }

    /// Renders the object with the given raw JSON for `ts`, optionally without `id`.
    fn render(&self, ts: &str, with_id: bool) -> String {
        let mut fields: Vec<(&str, String)> = match self {
            GenEvent::Impression {
                id,
                user_id,
                campaign_id,
                domain,
                country,
                user_agent,
                ..
            } => vec![
                ("id", quote(id)),
                ("ts", ts.to_string()),
                ("user_id", quote(user_id)),
                ("campaign_id", quote(campaign_id)),
                ("domain", quote(domain)),
                ("country", quote(country)),
                ("user_agent", quote(user_agent)),
            ],
            GenEvent::Click {
                id,
                impression_id,
                user_id,
                campaign_id,
                country,
                ..
            } => vec![
                ("id", quote(id)),
                ("ts", ts.to_string()),
                ("impression_id", quote(impression_id)),
                ("user_id", quote(user_id)),
                ("campaign_id", quote(campaign_id)),
                ("country", quote(country)),
            ],
            GenEvent::Prediction {
                id, user_id, score, ..
            } => vec![
                ("id", quote(id)),
                ("ts", ts.to_string()),
                ("user_id", quote(user_id)),
                ("score", format!("{score:.4}")),
            ],
        };
        if !with_id {
            fields.retain(|(k, _)| *k != "id");
        }
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

/// An event with its arrival time (the file position key before the tie-breaker).
struct Planned {
    event: GenEvent,
    arrival_ms: u64,
    late: bool,
}

/// Wraps an event with its arrival, which a `late_fraction` of events trade for a late one.
fn planned(rng: &mut StdRng, cfg: &GenConfig, event: GenEvent, arrival_ms: u64) -> Planned {
    let ooo = cfg.out_of_orderness_ms;
    let late = rng.random::<f64>() < cfg.late_fraction;
    let arrival_ms = if late {
        event.ts() + ooo + rng.random_range(5 * ooo..=10 * ooo) + LATE_EXTRA_MS
    } else {
        arrival_ms
    };
    Planned {
        event,
        arrival_ms,
        late,
    }
}

/// Draws every event and its arrival time; the single source of truth for both API functions.
/// Order: impressions, then clicks, then predictions, each in event-time order.
fn plan(cfg: &GenConfig) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let ooo = cfg.out_of_orderness_ms;
    let w = cfg.window_ms;
    let gap_s = Exp::new(cfg.rate_per_s.max(1e-9)).expect("positive rate");
    let delay_s = Exp::new(1.0 / cfg.click_delay_mean_s.max(1e-9)).expect("positive rate");
    let users = cfg.users.max(1);
    let campaigns = cfg.campaigns.max(1);
    let countries = cfg.countries.clamp(1, COUNTRIES.len() as u64) as usize;

    let mut out = Vec::new();
    let mut clicks: Vec<(GenEvent, bool)> = Vec::new(); // (click without id, early)
    let mut preds: Vec<GenEvent> = Vec::new(); // without id
    let mut offset_ms = 0.0f64;
    for i in 0..cfg.impressions {
        if i > 0 {
            offset_ms += gap_s.sample(&mut rng) * 1000.0;
        }
        let ts = cfg.start_ms + offset_ms.round() as u64;
        let u: f64 = rng.random();
        let user_id = format!("u{}", ((users as f64 * u * u) as u64).min(users - 1));
        // Campaign sizes are skewed too: a few large campaigns, a long tail.
        let c: f64 = rng.random();
        let campaign_id = format!(
            "c{}",
            ((campaigns as f64 * c * c) as u64).min(campaigns - 1)
        );
        let country = COUNTRIES[rng.random_range(0..countries)].to_string();
        let domain = format!("site{}.example", rng.random_range(0..DOMAINS));
        let user_agent = if rng.random::<f64>() < BOT_FRACTION {
            BOT_AGENTS[rng.random_range(0..BOT_AGENTS.len())]
        } else {
            USER_AGENTS[rng.random_range(0..USER_AGENTS.len())]
        };
        let id = format!("imp-{:010}", i + 1);
        let mut arrival_ms = ts + rng.random_range(0..=ooo);

        if rng.random::<f64>() < cfg.ctr {
            let r: f64 = rng.random();
            let early = r < cfg.early_click_fraction;
            let delay_ms = if early {
                arrival_ms = ts + ooo; // the impression waits; its click comes first
                rng.random_range(0..=ooo / 2)
            } else if r < cfg.early_click_fraction + cfg.beyond_window_fraction {
                rng.random_range(w + 1..=(3 * w).max(w + 1))
            } else {
                (delay_s.sample(&mut rng) * 1000.0).round() as u64
            };
            let click = GenEvent::Click {
                id: String::new(),
                ts: ts + delay_ms,
                impression_id: id.clone(),
                user_id: user_id.clone(),
                campaign_id: campaign_id.clone(),
                country: country.clone(),
            };
            clicks.push((click, early));
        }
        if cfg.prediction_every > 0 && i % cfg.prediction_every == 0 {
            let ts = ts.saturating_sub(rng.random_range(0..=PREDICTION_LEAD_MS));
            let raw = rng.random::<f64>().powi(3);
            let score = ((raw * 10_000.0).round() / 10_000.0).clamp(0.0001, 0.9999);
            let (id, user_id) = (String::new(), user_id.clone());
            preds.push(GenEvent::Prediction {
                id,
                ts,
                user_id,
                score,
            });
        }
        let user_agent = user_agent.to_string();
        let event = GenEvent::Impression {
            id,
            ts,
            user_id,
            campaign_id,
            domain,
            country,
            user_agent,
        };
        out.push(planned(&mut rng, cfg, event, arrival_ms));
    }

    // Stable sorts: ties keep impression order. Ids follow event-time order.
    clicks.sort_by_key(|c| c.0.ts());
    for (n, (mut event, early)) in clicks.into_iter().enumerate() {
        if let GenEvent::Click { id, .. } = &mut event {
            *id = format!("clk-{:010}", n + 1);
        }
        // An early click arrives without jitter, before its impression (at ts + ooo).
        let jitter = if early { 0 } else { rng.random_range(0..=ooo) };
        let arrival_ms = event.ts() + jitter;
        out.push(planned(&mut rng, cfg, event, arrival_ms));
    }
    preds.sort_by_key(GenEvent::ts);
    for (n, mut event) in preds.into_iter().enumerate() {
        if let GenEvent::Prediction { id, .. } = &mut event {
            *id = format!("pred-{:010}", n + 1);
        }
        let arrival_ms = event.ts() + rng.random_range(0..=ooo);
        out.push(planned(&mut rng, cfg, event, arrival_ms));
    }
    out
}

/// Generates the events (unique, each once), in event-time order per stream, deterministic for the seed.
/// The result holds all impressions, then all clicks, then all predictions.
pub fn generate_events(cfg: &GenConfig) -> Vec<GenEvent> {
    plan(cfg).into_iter().map(|p| p.event).collect()
}

/// A malformed line; the kind cycles with `n`: truncated JSON, bad ts, missing id, garbage.
fn malformed_line(n: u64, event: &GenEvent, line: &str, epoch_ms_times: bool) -> String {
    match n % 4 {
        0 => {
            let mut cut = line.len() / 2;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line[..cut].to_string()
        }
        1 => event.render("\"not-a-time\"", true),
        2 => event.render(&event.ts_json(epoch_ms_times), false),
        _ => "garbage,not json".to_string(),
    }
}

/// Writes `impressions[-K].jsonl`, `clicks[-K].jsonl`, `predictions[-K].jsonl` into `dir` (created if missing),
/// lines in arrival order, with duplicates, late events and malformed lines mixed in as configured.
/// File names: with files_per_stream == 1 `impressions.jsonl`; otherwise `impressions-000.jsonl`, `impressions-001.jsonl`, ...
/// No predictions file when prediction_every == 0.
pub fn write_files(cfg: &GenConfig, dir: &Path) -> anyhow::Result<GenSummary> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let planned = plan(cfg);
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ WRITE_SEED_SALT);
    let ooo = cfg.out_of_orderness_ms;
    let k = cfg.files_per_stream.max(1) as usize;
    let mut streams = vec!["impressions", "clicks"];
    if cfg.prediction_every > 0 {
        streams.push("predictions");
    }

    let mut summary = GenSummary::default();
    let mut seq = 0u64;
    for stream in streams {
        // (arrival ms, tie-breaker, event)
        let mut lines: Vec<(u64, u64, &GenEvent)> = Vec::new();
        for p in planned.iter().filter(|p| p.event.stream() == stream) {
            match p.event {
                GenEvent::Impression { .. } => summary.impressions += 1,
                GenEvent::Click { .. } => summary.clicks += 1,
                GenEvent::Prediction { .. } => summary.predictions += 1,
            }
            summary.late += u64::from(p.late);
            lines.push((p.arrival_ms, seq, &p.event));
            seq += 1;
            if rng.random::<f64>() < cfg.duplicate_fraction {
                lines.push((p.arrival_ms + rng.random_range(0..=ooo), seq, &p.event));
                seq += 1;
                summary.duplicates += 1;
            }
        }
        lines.sort_by_key(|&(arrival, tie, _)| (arrival, tie));

        for f in 0..k {
            let name = if k == 1 {
                format!("{stream}.jsonl")
            } else {
                format!("{stream}-{f:03}.jsonl")
            };
            let path = dir.join(name);
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let mut w = BufWriter::new(file);
            for &(_, _, event) in lines.iter().skip(f).step_by(k) {
                let line = event.to_json_line(cfg.epoch_ms_times);
                if rng.random::<f64>() < cfg.malformed_fraction {
                    let bad = malformed_line(summary.malformed, event, &line, cfg.epoch_ms_times);
                    writeln!(w, "{bad}")?;
                    summary.malformed += 1;
                    summary.lines += 1;
                }
                writeln!(w, "{line}")?;
                summary.lines += 1;
            }
            w.flush()
                .with_context(|| format!("writing {}", path.display()))?;
            summary.files.push(path);
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
