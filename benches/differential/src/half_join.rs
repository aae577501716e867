//! `half_join` from differential-dogs3 0.25.1 (MIT, TimelyDataflow), ported to differential 0.26.
//!
//! dogs3 has no release for timely 0.32 / differential 0.26 (0.25.1 pins timely 0.31), so
//! this is its `half_join` + `half_join_internal_unsafe`, cut to what the bench uses. Changes:
//! - totally ordered times only (timely 0.32 capabilities carry stamps; `retain_least` keeps
//!   the dogs3 shape of one capability per stash entry);
//! - no yield function (dogs3's `half_join` passes `|_, _| false` anyway);
//! - the trace is read through `batches_through` + `cursor_list` (0.26 has no
//!   `TraceReader::cursor`);
//! - left-outer: a lookup whose key accumulates to nothing at its time calls the output
//!   function once with `None`. `count_total` never materializes a zero count, so without this
//!   an impression of a user with no earlier impressions would get no answer at all.

use std::collections::HashMap;
use std::ops::Mul;

use differential_dataflow::consolidation::{consolidate, consolidate_updates};
use differential_dataflow::difference::{Monoid, Semigroup};
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::implementations::BatchContainer;
use differential_dataflow::trace::{
    BatchCursor, BatchDiff, BatchTimeGat, BatchVal, Cursor, Navigable, TraceReader,
};
use differential_dataflow::{AsCollection, ExchangeData, Hashable, VecCollection};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Capability, Operator};
use timely::order::TotalOrder;
use timely::progress::Antichain;

/// Output of [`half_join`]: `((output, lub(time1, time2)), initial_time, diff1 * diff2)`.
type Out<'scope, Tr, DOut, R> = VecCollection<
    'scope,
    <Tr as TraceReader>::Time,
    (DOut, <Tr as TraceReader>::Time),
    <R as Mul<BatchDiff<Tr>>>::Output,
>;

/// A binary equijoin that responds to updates on only its first input.
///
/// For each `((key, val1, time1), initial, diff1)` of `stream` it produces
/// `((output_func(key, val1, Some(val2)), lub(time1, time2)), initial, diff1 * diff2)` for each
/// `(key, val2)` whose updates at times `time2` with `comparison(time2, initial)` accumulate to
/// non-zero, once the arrangement is complete through `initial`; and, when there is none,
/// `((output_func(key, val1, None), time1), initial, diff1)`.
// Capabilities key the stash, as in dogs3: their `Rc` internals are not part of `Hash`/`Eq`.
#[allow(clippy::mutable_key_type)]
pub fn half_join<'scope, K, V, R, Tr, FF, CF, DOut, S>(
    stream: VecCollection<'scope, Tr::Time, (K, V, Tr::Time), R>,
    arrangement: Arranged<'scope, Tr>,
    frontier_func: FF,
    comparison: CF,
    mut output_func: S,
) -> Out<'scope, Tr, DOut, R>
where
    K: Hashable<Output = u64> + ExchangeData,
    V: ExchangeData,
    R: ExchangeData + Monoid + Mul<BatchDiff<Tr>, Output: Semigroup + From<R>>,
    Tr: TraceReader<Batch: Navigable, Time: std::hash::Hash + TotalOrder> + Clone + 'static,
    BatchCursor<Tr>: Cursor<Time = Tr::Time>,
    <BatchCursor<Tr> as Cursor>::KeyContainer: BatchContainer<Owned = K>,
    FF: Fn(&Tr::Time, &mut Antichain<Tr::Time>) + 'static,
    CF: Fn(BatchTimeGat<'_, Tr>, &Tr::Time) -> bool + 'static,
    DOut: Clone + 'static,
    S: FnMut(&K, &V, Option<BatchVal<'_, Tr>>) -> DOut + 'static,
{
    let mut arrangement_trace = Some(arrangement.trace);
    // No need to block physical merging for this operator: it reads the whole trace.
    if let Some(trace) = arrangement_trace.as_mut() {
        trace.set_physical_compaction(Antichain::new().borrow());
    }

    // Pending lookups, per capability (no later than any of their `initial` times).
    type Stash<K, V, T, R> = HashMap<Capability<T>, Vec<((K, V, T), T, R)>>;
    let mut stash: Stash<K, V, Tr::Time, R> = HashMap::new();
    // (time, diff) accumulation for one (key, val2).
    let mut output_buffer: Vec<(Tr::Time, BatchDiff<Tr>)> = Vec::new();

    // Same routing as the arrangement (differential's `arrange` exchanges by `key.hashed()`).
    let exchange =
        Exchange::new(move |update: &((K, V, Tr::Time), Tr::Time, R)| (update.0).0.hashed());

    type OutVec<T, D, R> = Vec<((D, T), T, R)>;
    let stream = stream
        .inner
        .binary_frontier::<_, timely::container::CapacityContainerBuilder<
            OutVec<Tr::Time, DOut, <R as Mul<BatchDiff<Tr>>>::Output>,
        >, _, _, _, _>(
            arrangement.stream,
            exchange,
            Pipeline,
            "HalfJoin",
            move |_, _| {
                move |(input1, frontier1), (input2, frontier2), output| {
                    let port = output.output_index();
                    // Stash lookups under their message's capability.
                    input1.for_each(|capability, data| {
                        if let Some(cap) = capability.retain_least(port) {
                            stash.entry(cap).or_insert_with(Vec::new).append(data);
                        }
                    });
                    // Arranged batches are read from the trace; the stream only drives the frontier.
                    input2.for_each(|_, _| {});

                    let mut stash_additions: Stash<K, V, Tr::Time, R> = HashMap::new();
                    if let Some(trace) = arrangement_trace.as_mut() {
                        for (capability, proposals) in stash.iter_mut() {
                            if frontier2.less_equal(capability.time()) {
                                continue;
                            }
                            let mut session = output.session(capability);
                            // Sort requests by key for in-order cursor traversal.
                            consolidate_updates(proposals);
                            let batches = trace
                                .batches_through(Antichain::new().borrow())
                                .expect("trace readable");
                            let (mut cursor, storage) = cursor_list(batches);
                            let mut key_con =
                                <BatchCursor<Tr> as Cursor>::KeyContainer::with_capacity(1);
                            let mut time_con =
                                <BatchCursor<Tr> as Cursor>::TimeContainer::with_capacity(1);
                            for time in frontier2.frontier().iter() {
                                time_con.push_own(time);
                            }
                            for ((key, val1, time), initial, diff1) in proposals.iter_mut() {
                                // Only lookups whose `initial` the arrangement has completed.
                                if (0..time_con.len())
                                    .any(|i| comparison(time_con.index(i), initial))
                                {
                                    continue;
                                }
                                let mut matched = false;
                                key_con.clear();
                                key_con.push_own(key);
                                cursor.seek_key(&storage, key_con.index(0));
                                if cursor.get_key(&storage) == key_con.get(0) {
                                    while let Some(val2) = cursor.get_val(&storage) {
                                        cursor.map_times(&storage, |t, d| {
                                            if comparison(t, initial) {
                                                let mut t =
                                                    <BatchCursor<Tr> as Cursor>::owned_time(t);
                                                t.join_assign(time);
                                                output_buffer.push((
                                                    t,
                                                    <BatchCursor<Tr> as Cursor>::owned_diff(d),
                                                ));
                                            }
                                        });
                                        consolidate(&mut output_buffer);
                                        for (t, diff2) in output_buffer.drain(..) {
                                            matched = true;
                                            let dout = output_func(key, val1, Some(val2));
                                            session.give((
                                                (dout, t),
                                                initial.clone(),
                                                diff1.clone() * diff2,
                                            ));
                                        }
                                        cursor.step_val(&storage);
                                    }
                                    cursor.rewind_vals(&storage);
                                }
                                if !matched {
                                    let dout = output_func(key, val1, None);
                                    session.give((
                                        (dout, time.clone()),
                                        initial.clone(),
                                        diff1.clone().into(),
                                    ));
                                }
                                *diff1 = R::zero();
                            }
                            drop(session);

                            proposals.retain(|ptd| !ptd.2.is_zero());
                            // Re-stash what remains at its least `initial` time (total order: one time).
                            if let Some(least) = proposals.iter().map(|p| &p.1).min() {
                                if least != capability.time() {
                                    stash_additions
                                        .entry(capability.delayed(least))
                                        .or_insert_with(Vec::new)
                                        .append(proposals);
                                }
                            }
                        }
                    }

                    // Drop fully processed capabilities.
                    stash.retain(|_, proposals| !proposals.is_empty());
                    for (capability, proposals) in stash_additions {
                        stash
                            .entry(capability)
                            .or_insert_with(Vec::new)
                            .extend(proposals);
                    }

                    // The logical merging frontier depends on both input1 and the stash.
                    let mut frontier = Antichain::new();
                    for time in frontier1.frontier().iter() {
                        frontier_func(time, &mut frontier);
                    }
                    for time in stash.keys() {
                        frontier_func(time.time(), &mut frontier);
                    }
                    if let Some(trace) = arrangement_trace.as_mut() {
                        trace.set_logical_compaction(frontier.borrow());
                    }
                    if frontier1.is_empty() && stash.is_empty() {
                        arrangement_trace = None;
                    }
                }
            },
        );
    stream.as_collection()
}
