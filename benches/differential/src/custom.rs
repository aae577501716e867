//! (b) The custom timely operator, in the shape of the project's `table_operator`.

use std::collections::HashMap;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::dataflow::StreamVec;

use crate::input::{mix, Imp, Time};

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
pub fn custom<'scope>(
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
