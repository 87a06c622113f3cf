//! For tests that run many cores in one thread: the inputs due, each for one node at one
//! virtual time (ms), handed out in time order (and in the order pushed, at the same time).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

pub(crate) struct Due<I> {
    /// (at, sequence, node).
    queue: BinaryHeap<Reverse<(u64, u64, String)>>,
    inputs: BTreeMap<u64, I>,
    seq: u64,
}

impl<I> Default for Due<I> {
    fn default() -> Self {
        Due {
            queue: BinaryHeap::new(),
            inputs: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<I> Due<I> {
    pub(crate) fn push(&mut self, at: u64, to: &str, input: I) {
        self.seq += 1;
        self.inputs.insert(self.seq, input);
        self.queue.push(Reverse((at, self.seq, to.to_string())));
    }

    /// The next input due at or before `until`: (at, node, input).
    pub(crate) fn next(&mut self, until: u64) -> Option<(u64, String, I)> {
        let Reverse((at, seq, to)) = self.queue.peek()?.clone();
        if at > until {
            return None;
        }
        self.queue.pop();
        let input = self
            .inputs
            .remove(&seq)
            .expect("every queued input is kept");
        Some((at, to, input))
    }
}
