//! Generated input (seeded, skewed users, bounded out-of-orderness) and the sequential reference.

use serde::{Deserialize, Serialize};

/// Event time in milliseconds, also the timely timestamp.
pub type Time = u64;

/// Number of distinct users.
pub const USERS: u64 = 100_000;
/// Largest delay between an impression's time and its arrival: the out-of-orderness bound.
pub const MAX_DELAY_MS: u64 = 30_000;
/// Input time advances once per this much arrival time.
pub const BATCH_MS: u64 = 1_000;

/// One impression, in arrival order.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Imp {
    pub id: u64,
    pub user: u64,
    pub time: Time,
}

/// The generated input: impressions in arrival order, and where each input batch starts.
pub struct Generated {
    pub events: Vec<Imp>,
    /// `(start index, input time)` per batch: every event from `start` on has `time >= input time`
    /// (arrival order; one batch per `BATCH_MS` of arrival time).
    pub batches: Vec<(usize, Time)>,
}

/// splitmix64: seeded generator and hash in one (no dependency, same stream everywhere).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` impressions: ~10 per ms, skewed users, each arriving up to 30 s after its time.
pub fn generate(n: usize, seed: u64) -> Generated {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(1);
        mix(state)
    };
    let mut arriving: Vec<(Time, Imp)> = (0..n as u64)
        .map(|id| {
            let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
            // user = floor(USERS * u^2): user 0 is the heaviest (~0.3% of impressions).
            let user = ((USERS as f64 * u * u) as u64).min(USERS - 1);
            let time = id / 10;
            let arrival = time + next() % MAX_DELAY_MS;
            (arrival, Imp { id, user, time })
        })
        .collect();
    arriving.sort_unstable_by_key(|(arrival, imp)| (*arrival, imp.id));
    let mut batches = Vec::new();
    for (i, (arrival, _)) in arriving.iter().enumerate() {
        let batch = arrival / BATCH_MS;
        if batches.last().is_none_or(|&(_, b)| b != batch) {
            batches.push((i, batch));
        }
    }
    // A batch of arrivals from `b * BATCH_MS` on has times above `b * BATCH_MS - MAX_DELAY_MS`.
    let batches = batches
        .into_iter()
        .map(|(i, b)| (i, (b * BATCH_MS).saturating_sub(MAX_DELAY_MS)))
        .collect();
    let events = arriving.into_iter().map(|(_, imp)| imp).collect();
    Generated { events, batches }
}

/// Sequential reference: per user, sorted by time, count of strictly earlier impressions.
pub fn reference(events: &[Imp]) -> Answers {
    let mut by_user: Vec<(u64, Time, u64)> =
        events.iter().map(|e| (e.user, e.time, e.id)).collect();
    by_user.sort_unstable();
    let mut out = Vec::with_capacity(events.len());
    // First index of the current user, and of the current (user, time).
    let (mut user_start, mut time_start) = (0, 0);
    for (i, &(user, time, id)) in by_user.iter().enumerate() {
        if i == 0 || by_user[i - 1].0 != user {
            (user_start, time_start) = (i, i);
        } else if by_user[i - 1].1 != time {
            time_start = i;
        }
        out.push((id, (time_start - user_start) as u64));
    }
    out
}

/// Order-independent checksum of a multiset of `(id, count)` answers.
pub fn checksum(id: u64, count: u64) -> u64 {
    mix(id.wrapping_mul(0x1000_0000_01B3) ^ mix(count))
}

/// Answers as `(impression id, count)`.
pub type Answers = Vec<(u64, u64)>;
