//! A queue to one background thread that parks while idle, so a send never waits on a lock.
//!
//! A thread sleeping inside a std channel is woken through the channel's waker lock, and a
//! sender waited on that lock whenever the thread held it while descheduled (~20 ms each,
//! ~0.7 s of the workers' time in a bench run). This thread polls the channel and parks
//! instead; a send is a lock-free push and an unpark.

use std::sync::mpsc::{channel, Sender, TryRecvError};
use std::thread::Thread;

/// The sending end; the thread handles each item in the order sent.
pub struct ParkedQueue<T> {
    items: Sender<T>,
    thread: Thread,
}

impl<T: Send + 'static> ParkedQueue<T> {
    /// Starts thread `name` calling `handle` on each item sent.
    pub fn start(name: &str, mut handle: impl FnMut(T) + Send + 'static) -> Self {
        let (items, queue) = channel::<T>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                match queue.try_recv() {
                    Ok(item) => handle(item),
                    // A send after the check leaves an unpark: `park` then returns.
                    Err(TryRecvError::Empty) => std::thread::park(),
                    Err(TryRecvError::Disconnected) => return,
                }
            })
            .unwrap_or_else(|e| panic!("cannot start thread {name}: {e}"));
        ParkedQueue {
            items,
            thread: thread.thread().clone(),
        }
    }

    /// Queues an item and wakes the thread.
    pub fn send(&self, item: T) {
        self.items.send(item).expect("the queue's thread runs");
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_handled_in_the_order_sent() {
        let (done, results) = channel();
        let queue = ParkedQueue::start("test-queue", move |i: u32| done.send(i).unwrap());
        for i in 0..1000 {
            queue.send(i);
        }
        let got: Vec<u32> = results.iter().take(1000).collect();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}
