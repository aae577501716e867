//! Per-partition event-time clock: max seen minus out-of-orderness, and lateness.

use crate::time::Time;

/// Watermark of one source partition (DESIGN.md clause 1).
#[derive(Debug, Clone)]
pub struct PartitionClock {
    max_seen: Option<Time>,
    out_of_orderness: Time,
}

impl PartitionClock {
    /// A clock that has seen nothing (watermark 0).
    pub fn new(out_of_orderness: Time) -> Self {
        PartitionClock {
            max_seen: None,
            out_of_orderness,
        }
    }

    /// Current watermark: no event with a smaller time is accepted any more.
    pub fn watermark(&self) -> Time {
        self.max_seen
            .map_or(0, |m| m.saturating_sub(self.out_of_orderness))
    }

    /// Whether an event at `t` arriving now is late (strictly below the watermark).
    pub fn is_late(&self, t: Time) -> bool {
        t < self.watermark()
    }

    /// Records an accepted event time.
    pub fn observe(&mut self, t: Time) {
        self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_max_seen_minus_out_of_orderness() {
        let mut c = PartitionClock::new(30_000);
        assert_eq!(c.watermark(), 0);
        c.observe(100_000);
        c.observe(90_000);
        assert_eq!(c.watermark(), 70_000);
        assert!(
            !c.is_late(70_000),
            "an event exactly at the watermark is on time"
        );
        assert!(c.is_late(69_999));
    }
}
