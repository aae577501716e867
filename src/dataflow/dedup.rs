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
use crate::dataflow::time_queue::TimeQueue;
use crate::event::{stable_hash, Event};
use crate::hash_slots::HashSlots;
use crate::metrics::Metrics;
use crate::sinks::side::{Side, SideSinks};
use crate::time::Time;

/// Routing hash of an event id within its stream.
pub fn id_route(stream: u16, id: &str) -> u64 {
    stable_hash(id.as_bytes()) ^ (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// How many events ahead of its turn an id's slot is fetched into cache.
const AHEAD: usize = 16;

/// The (stream, id)s seen, with the time of their first event: by route hash, and the rare
/// id whose hash another id already holds by value.
struct Seen {
    ids: HashSlots<(u16, CompactString, Time)>,
    collided: HashMap<(u16, CompactString), Time>,
    /// The hashes of `ids` by time, to forget each once the watermark passes it: sweeping
    /// the whole set (rehashing every id kept into a new array) each time it doubled was
    /// 1.5-2 % of a run's samples.
    expiry: TimeQueue<u64>,
    /// Hashes taken from `expiry` in one pass.
    due: Vec<(Time, u64)>,
}

impl Default for Seen {
    fn default() -> Self {
        // Nearly every event brings a new id: a low load keeps its probe short.
        Seen {
            ids: HashSlots::with_max_load(4),
            collided: HashMap::default(),
            expiry: TimeQueue::default(),
            due: Vec::new(),
        }
    }
}

impl Seen {
    /// The first time of an event's (stream, id) if seen before; else remembers it.
    fn first_time(&mut self, hash: u64, ev: &Event) -> Option<Time> {
        match self.ids.get(hash) {
            None => {
                // A collided id outlives the id that held its hash when that one is forgotten.
                let first = self.collided_time(ev);
                if first.is_none() {
                    self.ids.insert(hash, (ev.stream, ev.id.clone(), ev.time));
                    self.expiry.push(ev.time, hash);
                }
                first
            }
            Some((s, id, t)) if *s == ev.stream && *id == ev.id => Some(*t),
            Some(_) => match self.collided.entry((ev.stream, ev.id.clone())) {
                std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(ev.time);
                    None
                }
            },
        }
    }

    fn collided_time(&self, ev: &Event) -> Option<Time> {
        if self.collided.is_empty() {
            return None;
        }
        self.collided.get(&(ev.stream, ev.id.clone())).copied()
    }

    /// Forgets ids first seen before `watermark`.
    fn forget_before(&mut self, watermark: Time) {
        self.expiry.take_before(watermark, &mut self.due);
        // The id a hash was queued for is still the one at that hash: another id with the
        // same hash goes to `collided` while it is kept.
        for (_, hash) in self.due.drain(..) {
            self.ids.remove(hash);
        }
        if !self.collided.is_empty() {
            self.collided.retain(|_, t| *t >= watermark);
        }
    }
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
        let mut seen = Seen::default();
        let mut hashes = Vec::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let mut session = output.session(&cap);
                hashes.clear();
                hashes.extend(data.iter().map(|e| id_route(e.stream, &e.id)));
                for (i, ev) in data.drain(..).enumerate() {
                    // The slot of the id a few events ahead, so their cache misses overlap.
                    if let Some(&h) = hashes.get(i + AHEAD) {
                        seen.ids.prefetch_slot(h);
                    }
                    match seen.first_time(hashes[i], &ev) {
                        Some(first) => {
                            Metrics::add(&metrics.duplicates, 1);
                            let stream = &pipeline.streams[ev.stream as usize];
                            let fields: serde_json::Map<_, _> =
                                stream.fields.iter().zip(&ev.fields).map(|(f, v)| (f.name.clone(), v.to_json())).collect();
                            side.borrow_mut().write(
                                Side::Duplicate,
                                json!({"reason": "duplicate", "stream": stream.name, "id": ev.id.as_str(),
                                    "time": ev.time, "first_time": first, "fields": fields}),
                            );
                        }
                        None => session.give(ev),
                    }
                }
            });
            // Forget ids the watermark has passed.
            let watermark = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            seen.forget_before(watermark);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, time: Time) -> Event {
        Event {
            stream: 0,
            id: id.into(),
            time,
            fields: Default::default(),
        }
    }

    #[test]
    fn ids_sharing_a_hash_are_each_passed_once() {
        let mut seen = Seen::default();
        let (a, b) = (event("a", 1), event("b", 2));
        assert_eq!(seen.first_time(7, &a), None);
        assert_eq!(
            seen.first_time(7, &b),
            None,
            "b is new although a holds its hash"
        );
        assert_eq!(seen.first_time(7, &event("b", 3)), Some(2));
        assert_eq!(seen.first_time(7, &event("a", 4)), Some(1));
        seen.forget_before(2);
        assert_eq!(seen.first_time(7, &event("b", 5)), Some(2), "b outlives a");
        assert_eq!(seen.first_time(7, &event("a", 6)), None, "a was forgotten");
    }

    #[test]
    fn an_id_is_remembered_until_the_watermark_passes_its_time() {
        let mut seen = Seen::default();
        let see =
            |seen: &mut Seen, id: &str, t: Time| seen.first_time(id_route(0, id), &event(id, t));
        for (id, t) in [("e0", 10), ("e1", 20), ("e2", 20), ("e3", 30)] {
            assert_eq!(see(&mut seen, id, t), None);
        }
        seen.forget_before(20);
        assert_eq!(see(&mut seen, "e1", 21), Some(20), "kept at its time");
        assert_eq!(see(&mut seen, "e2", 21), Some(20));
        assert_eq!(see(&mut seen, "e3", 31), Some(30));
        assert_eq!(see(&mut seen, "e0", 11), None, "forgotten before");
        seen.forget_before(Time::MAX);
        for id in ["e0", "e1", "e2", "e3"] {
            assert_eq!(see(&mut seen, id, 40), None, "{id} forgotten");
        }
        assert_eq!(
            (seen.ids.len(), seen.expiry.len()),
            (4, 4),
            "each id kept is queued once"
        );
    }
}
