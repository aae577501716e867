//! The order rows leave the label join in: by (time, id), per worker.

use super::Row;
use crate::radix;
use crate::time::Time;

/// Orders a pass's rows by (time, id): deadlines leave their one-second buckets in
/// arrival order. A radix sort of (time, index) pairs by time, ids compared only among
/// rows of one millisecond, then each row moved once: sorting the rows themselves compared
/// ids and moved 64 bytes at each of ~11 steps per row. Ids are unique, so the order is
/// total.
pub fn sort_rows(rows: &mut Vec<Row>) {
    let mut order: Vec<(Time, u32)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.time, i as u32))
        .collect();
    radix::sort_by_offset(&mut order, |o| o.0);
    for same in order.chunk_by_mut(|a, b| a.0 == b.0) {
        if same.len() > 1 {
            same.sort_unstable_by(|a, b| {
                rows[a.1 as usize]
                    .example_id
                    .cmp(&rows[b.1 as usize].example_id)
            });
        }
    }
    let mut taken: Vec<Option<Row>> = rows.drain(..).map(Some).collect();
    rows.extend(
        order
            .iter()
            .map(|&(_, i)| taken[i as usize].take().expect("each row once")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The same order as sorting the rows by (time, id), ids unique, times spread or
        /// tied (same-millisecond rows ordered by id).
        #[test]
        fn rows_leave_by_time_then_id(
            times in proptest::collection::vec(0u64..2_000, 0..700),
            base in 0u64..1 << 42,
        ) {
            let rows: Vec<Row> = times
                .iter()
                .enumerate()
                .map(|(i, &t)| Row {
                    example_id: format!("imp-{}", (i * 7_919) % 10_007).into(),
                    time: base + t,
                    validation: i % 3 == 0,
                    span: [i, i + 1, i + 2],
                })
                .collect();
            let mut want = rows.clone();
            want.sort_unstable_by(|a, b| (a.time, &a.example_id).cmp(&(b.time, &b.example_id)));
            let mut got = rows;
            sort_rows(&mut got);
            proptest::prop_assert_eq!(got, want);
        }
    }
}
