//! Point-in-time keyed count on timely 0.32: differential-dataflow 0.26 vs a custom operator.
//!
//! For every impression `(user, time_ms)`, both approaches answer the number of impressions
//! of the same user with a strictly smaller time. See README.md for how to run it.

mod half_join;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::CountTotal;
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Inspect;
use timely::dataflow::operators::{Capability, InputCapability, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, StreamVec};

/// Event time in milliseconds, also the timely timestamp.
type Time = u64;

/// Number of distinct users.
const USERS: u64 = 100_000;
/// Largest delay between an impression's time and its arrival: the out-of-orderness bound.
const MAX_DELAY_MS: u64 = 30_000;
/// Input time advances once per this much arrival time.
const BATCH_MS: u64 = 1_000;
/// Events in the correctness check, unless `--events` is given.
const CHECK_EVENTS: usize = 100_000;

/// One impression, in arrival order.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Imp {
    id: u64,
    user: u64,
    time: Time,
}

/// The generated input: impressions in arrival order, and where each input batch starts.
struct Input1 {
    events: Vec<Imp>,
    /// `(start index, input time)` per batch: every event from `start` on has `time >= input time`.
    batches: Vec<(usize, Time)>,
}

/// splitmix64: seeded generator and hash in one (no dependency, same stream everywhere).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` impressions: ~10 per ms, skewed users, each arriving up to 30 s after its time.
fn generate(n: usize, seed: u64) -> Input1 {
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
    Input1 { events, batches }
}

/// Sequential reference: per user, sorted by time, count of strictly earlier impressions.
fn reference(events: &[Imp]) -> Answers {
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
fn checksum(id: u64, count: u64) -> u64 {
    mix(id.wrapping_mul(0x1000_0000_01B3) ^ mix(count))
}

/// Answers as `(impression id, count)`.
type Answers = Vec<(u64, u64)>;

/// Where a run's answers go: a count and checksum always, the answers themselves if asked.
#[derive(Clone, Default)]
struct Sink {
    count: Arc<AtomicU64>,
    sum: Arc<AtomicU64>,
    all: Option<Arc<Mutex<Answers>>>,
}

impl Sink {
    fn collecting() -> Self {
        Sink {
            all: Some(Arc::default()),
            ..Sink::default()
        }
    }
}

/// Per-worker accumulation, added to the shared sink once at the end (no contention).
#[derive(Default)]
struct Local {
    count: u64,
    sum: u64,
    all: Answers,
}

impl Local {
    fn add(&mut self, id: u64, count: u64, keep: bool) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(checksum(id, count));
        if keep {
            self.all.push((id, count));
        }
    }

    fn flush(&mut self, sink: &Sink) {
        sink.count.fetch_add(self.count, Ordering::Relaxed);
        sink.sum.fetch_add(self.sum, Ordering::Relaxed);
        if let Some(all) = &sink.all {
            all.lock().unwrap().append(&mut self.all);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Approach {
    Differential,
    Custom,
}

/// An input both approaches are fed through.
trait Feed {
    fn send(&mut self, imp: &Imp);
    /// Advances the input time to at least `epoch`, flushes, and returns the input time.
    fn advance(&mut self, epoch: Time) -> Time;
}

impl Feed for InputSession<Time, (u64, u64), isize> {
    fn send(&mut self, imp: &Imp) {
        self.update_at((imp.user, imp.id), imp.time, 1);
    }
    fn advance(&mut self, epoch: Time) -> Time {
        self.advance_to(epoch.max(*self.time()));
        self.flush();
        *self.time()
    }
}

impl Feed for InputHandleVec<Time, Imp> {
    fn send(&mut self, imp: &Imp) {
        InputHandleVec::send(self, *imp);
    }
    fn advance(&mut self, epoch: Time) -> Time {
        let t = epoch.max(*self.time());
        self.advance_to(t);
        self.flush();
        t
    }
}

/// Feeds this worker's share of `input` (every `peers`-th event), advancing the input time
/// once per batch and stepping the worker while the probe lags behind it.
fn feed(
    worker: &mut timely::worker::Worker,
    input: &Input1,
    probe: &ProbeHandle<Time>,
    handle: &mut impl Feed,
) {
    let (index, peers) = (worker.index(), worker.peers());
    for (b, &(start, epoch)) in input.batches.iter().enumerate() {
        let end = input.batches.get(b + 1).map_or(input.events.len(), |x| x.0);
        let now = handle.advance(epoch);
        for imp in &input.events[start..end] {
            if imp.id as usize % peers == index {
                handle.send(imp);
            }
        }
        while probe.less_than(&now) {
            worker.step();
        }
    }
}

/// Runs one approach over `input` with `workers` workers; returns the wall seconds of feeding
/// and running to completion.
fn run(approach: Approach, input: Arc<Input1>, workers: usize, sink: Sink) -> f64 {
    let start = Instant::now();
    let keep = sink.all.is_some();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let local = Arc::new(Mutex::new(Local::default()));
        match approach {
            Approach::Differential => {
                let out = local.clone();
                let mut session = worker.dataflow::<Time, _, _>(|scope| {
                    let (session, impressions) = scope.new_collection::<(u64, u64), isize>();
                    differential(impressions)
                        .inspect(move |(((id, count), _), _, diff)| {
                            assert_eq!(*diff, 1, "one final answer per impression");
                            out.lock().unwrap().add(*id, *count, keep);
                        })
                        .probe_with(&probe);
                    session
                });
                feed(worker, &input, &probe, &mut session);
                drop(session);
            }
            Approach::Custom => {
                let out = local.clone();
                let mut handle = InputHandleVec::<Time, Imp>::new();
                worker.dataflow::<Time, _, _>(|scope| {
                    custom(handle.to_stream(scope))
                        .inspect(move |(id, count)| out.lock().unwrap().add(*id, *count, keep))
                        .probe_with(&probe);
                });
                feed(worker, &input, &probe, &mut handle);
                drop(handle);
            }
        }
        while !probe.done() {
            worker.step();
        }
        local.lock().unwrap().flush(&sink);
    })
    .expect("timely runs");
    start.elapsed().as_secs_f64()
}

/// (a) Differential: `count_total` over impressions delayed by 1 ms, arranged by user, and
/// each impression half-joined against it at its own time (as-of lookup). The count at time
/// `t` then covers impressions at `<= t - 1`; a user with none gets 0 (left-outer half join).
fn differential<'scope>(
    impressions: differential_dataflow::VecCollection<'scope, Time, (u64, u64), isize>,
) -> differential_dataflow::VecCollection<'scope, Time, ((u64, u64), Time), isize> {
    let counts = impressions
        .clone()
        .map(|(user, _id)| user)
        .delay(|t| t + 1)
        .count_total()
        .arrange_by_key();
    let lookups = impressions
        .inner
        .map(|((user, id), t, r)| ((user, id, t), t, r))
        .as_collection();
    half_join::half_join(
        lookups,
        counts,
        |t, frontier| {
            frontier.insert(*t);
        },
        |t2, initial| t2 <= initial,
        |_user, id, count: Option<&isize>| (*id, count.map_or(0, |c| *c as u64)),
    )
}

/// A capability held at the earliest time an operator may still send at (as the project's
/// `dataflow::hold::Held`): one capability, not one per time.
#[derive(Default)]
struct Held(Option<Capability<Time>>);

impl Held {
    fn hold(&mut self, cap: &InputCapability<Time>, port: usize) {
        if let Some(&t) = cap.least() {
            if self.0.as_ref().is_none_or(|h| *h.time() > t) {
                self.0 = cap.retain_least(port);
            }
        }
    }

    fn settle(&mut self, next_pending: Option<Time>) {
        match (next_pending, self.0.as_mut()) {
            (Some(t), Some(cap)) => {
                let t = t.max(*cap.time());
                cap.downgrade(&t);
            }
            _ => self.0 = None,
        }
    }
}

/// (b) Custom: exchange by user, buffer until the frontier passes an impression's time, then
/// per (time, user) in order: answer the lookups from the count of earlier impressions, then
/// apply the updates (the shape of the project's `table_operator`).
fn custom<'scope>(
    impressions: StreamVec<'scope, Time, Imp>,
) -> StreamVec<'scope, Time, (u64, u64)> {
    let pact = Exchange::new(|r: &Imp| mix(r.user));
    impressions.unary_frontier(pact, "PitCount", |_cap, _info| {
        let mut counts: HashMap<u64, u64> = HashMap::new();
        let mut held = Held::default();
        let mut buffer: Vec<Imp> = Vec::new();
        let mut done_below = 0;
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|cap, data| {
                held.hold(&cap, port);
                buffer.append(data);
            });
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            if watermark == done_below {
                return;
            }
            done_below = watermark;
            let mut ready: Vec<Imp> = buffer.extract_if(.., |r| r.time < watermark).collect();
            ready.sort_unstable_by_key(|r| (r.time, r.user));
            let mut answers = Vec::with_capacity(ready.len());
            for run in ready.chunk_by(|a, b| (a.time, a.user) == (b.time, b.user)) {
                // Lookups first: same-ms impressions do not see each other.
                let count = counts.entry(run[0].user).or_insert(0);
                answers.extend(run.iter().map(|r| (r.id, *count)));
                *count += run.len() as u64;
            }
            if let Some(cap) = held.0.as_ref() {
                if !answers.is_empty() {
                    output.session(cap).give_iterator(answers.into_iter());
                }
            }
            held.settle(buffer.iter().map(|r| r.time).min());
        }
    })
}

/// Peak resident set size of this process so far, in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs both approaches and the reference on a small input; panics unless all three agree.
fn check(events: usize, workers: usize, seed: u64) {
    let input = Arc::new(generate(events, seed));
    let mut expected = reference(&input.events);
    expected.sort_unstable();
    for approach in [Approach::Differential, Approach::Custom] {
        let sink = Sink::collecting();
        run(approach, input.clone(), workers, sink.clone());
        let mut got = std::mem::take(&mut *sink.all.as_ref().unwrap().lock().unwrap());
        got.sort_unstable();
        assert_eq!(
            got.len(),
            expected.len(),
            "{approach:?}: one answer per impression"
        );
        assert!(
            got == expected,
            "{approach:?}: answers differ from the reference"
        );
    }
    // Impressions sharing their (user, ms) with another: the tie rule is exercised.
    let mut keys: Vec<(u64, Time)> = input.events.iter().map(|e| (e.user, e.time)).collect();
    keys.sort_unstable();
    let ties = keys.windows(2).filter(|w| w[0] == w[1]).count();
    println!(
        "check: differential and custom matched each other and the sequential reference \
         on {events} events, workers={workers} ({ties} same-user same-ms pairs)"
    );
}

fn main() {
    let mut approach = None;
    let mut events = None;
    let mut workers = 2usize;
    let mut seed = 42u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--approach" => approach = Some(value()),
            "--events" => events = Some(value().parse().expect("--events N")),
            "--workers" => workers = value().parse().expect("--workers W"),
            "--seed" => seed = value().parse().expect("--seed S"),
            _ => panic!("usage: pit-bench --approach differential|custom|check [--events N] [--workers W] [--seed S]"),
        }
    }
    let approach = match approach.as_deref() {
        Some("differential") => Approach::Differential,
        Some("custom") => Approach::Custom,
        Some("check") => return check(events.unwrap_or(CHECK_EVENTS), workers, seed),
        _ => panic!("--approach differential|custom|check"),
    };

    let events = events.unwrap_or(2_000_000);
    let input = Arc::new(generate(events, seed));
    let sink = Sink::default();
    let seconds = run(approach, input.clone(), workers, sink.clone());
    // Read before the reference below allocates, so the peak is the run's own.
    let peak = peak_rss_mib();

    // Validate every timed run too, by multiset checksum against the sequential reference.
    let expected = reference(&input.events)
        .iter()
        .fold(0u64, |s, &(id, c)| s.wrapping_add(checksum(id, c)));
    assert_eq!(
        sink.count.load(Ordering::Relaxed),
        events as u64,
        "one answer per impression"
    );
    assert_eq!(
        sink.sum.load(Ordering::Relaxed),
        expected,
        "answers match the reference"
    );
    let name = match approach {
        Approach::Differential => "differential",
        Approach::Custom => "custom",
    };
    println!(
        "approach={name} workers={workers} events={events} seconds={seconds:.3} events_per_s={:.0} peak_rss_mib={peak:.1}",
        events as f64 / seconds
    );
}
