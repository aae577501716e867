//! A single held capability at the earliest time an operator may still send at.

use timely::dataflow::operators::{Capability, InputCapability};

use crate::time::Time;

/// The capability of an operator that buffers work keyed by event time and sends results at
/// (or before) the earliest pending key. Holding one capability, not one per time, keeps
/// timely's progress tracking cheap with millions of distinct event times.
#[derive(Default)]
pub struct Held(Option<Capability<Time>>);

impl Held {
    /// Keeps the message's capability if it is earlier than the one held.
    pub fn hold(&mut self, cap: &InputCapability<Time>, output_port: usize) {
        if let Some(&t) = cap.least() {
            if self.0.as_ref().is_none_or(|h| *h.time() > t) {
                self.0 = cap.retain_least(output_port);
            }
        }
    }

    /// The held capability, if any.
    pub fn get(&self) -> Option<&Capability<Time>> {
        self.0.as_ref()
    }

    /// Moves to the earliest pending time, or releases when nothing is pending.
    pub fn settle(&mut self, next_pending: Option<Time>) {
        match (next_pending, self.0.as_mut()) {
            (Some(t), Some(cap)) => {
                let t = t.max(*cap.time());
                cap.downgrade(&t);
            }
            _ => self.0 = None,
        }
    }
}
