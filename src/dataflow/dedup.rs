//! Drops repeated event ids (at-least-once sources), keyed by (stream, id).

use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use compact_str::CompactString;
use serde_json::json;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::config::Pipeline;
use crate::event::{stable_hash, Event};
use crate::metrics::Metrics;
use crate::sinks::side::{Side, SideSinks};
use crate::time::Time;

/// Routing hash of an event id within its stream.
pub fn id_route(stream: u16, id: &str) -> u64 {
    stable_hash(id.as_bytes()) ^ (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Passes each (stream, id) once; later copies go to the duplicates side file.
///
/// An id is remembered until the watermark passes its time: after that every copy is late at
/// its source (see `source_op`), so it is counted there and never reaches this operator.
pub fn dedup<'scope>(
    events: StreamVec<'scope, Time, Event>,
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    side: Rc<RefCell<SideSinks>>,
) -> StreamVec<'scope, Time, Event> {
    let pact = Exchange::new(|e: &Event| id_route(e.stream, &e.id));
    events.unary_frontier(pact, "Dedup", move |_cap, _info| {
        let mut seen: HashMap<(u16, CompactString), Time> = HashMap::default();
        let mut last_sweep = 0usize;
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let mut session = output.session(&cap);
                for ev in data.drain(..) {
                    match seen.entry((ev.stream, ev.id.clone())) {
                        std::collections::hash_map::Entry::Occupied(first) => {
                            Metrics::add(&metrics.duplicates, 1);
                            let stream = &pipeline.streams[ev.stream as usize];
                            let fields: serde_json::Map<_, _> =
                                stream.fields.iter().zip(&ev.fields).map(|(f, v)| (f.name.clone(), v.to_json())).collect();
                            side.borrow_mut().write(
                                Side::Duplicate,
                                json!({"reason": "duplicate", "stream": stream.name, "id": ev.id.as_str(),
                                    "time": ev.time, "first_time": first.get(), "fields": fields}),
                            );
                        }
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(ev.time);
                            session.give(ev);
                        }
                    }
                }
            });
            // Forget ids the watermark has passed; sweep when the set doubled, to stay amortized.
            if seen.len() > 2 * last_sweep.max(1024) {
                let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
                seen.retain(|_, t| *t >= watermark);
                last_sweep = seen.len();
            }
        }
    })
}
