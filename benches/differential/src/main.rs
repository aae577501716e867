//! Point-in-time keyed count on timely 0.32: differential-dataflow 0.26 vs a custom operator.
//!
//! For every impression `(user, time_ms)`, both approaches answer the number of impressions
//! of the same user with a strictly smaller time. See README.md for how to run it.

mod custom;
mod half_join;
mod input;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::CountTotal;
use differential_dataflow::AsCollection;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

use input::{checksum, generate, reference, Answers, Generated, Imp, Time};

/// Events in the correctness check, unless `--events` is given.
const CHECK_EVENTS: usize = 100_000;

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
    input: &Generated,
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
fn run(approach: Approach, input: Arc<Generated>, workers: usize, sink: Sink) -> f64 {
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
                    custom::custom(handle.to_stream(scope))
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

/// A `kB` field of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets `VmHWM` to the current RSS (Linux >= 4.0), so the peak excludes input generation.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset peak RSS ({e}): peak_rss_mib includes input generation");
    }
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
    // The generated input stays resident (input_rss_mib); the peak is taken from here on.
    reset_peak_rss();
    let input_rss = status_mib("VmRSS:");
    let seconds = run(approach, input.clone(), workers, sink.clone());
    // Read before the reference below allocates, so the peak is the run's own.
    let peak = status_mib("VmHWM:");

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
        "approach={name} workers={workers} events={events} seconds={seconds:.3} events_per_s={:.0} peak_rss_mib={peak:.1} input_rss_mib={input_rss:.1}",
        events as f64 / seconds
    );
}
