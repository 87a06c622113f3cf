//! What the cores of one process compute alike, held once: a value any core still holds is
//! found by a hash of it, and the others share it instead of holding a copy. `weeble node`
//! runs one core, for which this finds its own; the simulator runs thousands, most of which
//! hold the same member list and placement once the news has spread.
//!
//! Holds weak references only: a value goes when the last core drops it, and its entry at the
//! next keep of its hash or the next sweep. A weak reference keeps the `Arc`'s own allocation
//! until then, so a large value keeps its bulk apart from it (`membership::MemberList`).

use crate::hash::ByHash;
use std::sync::{Arc, Weak};

#[derive(Debug)]
pub(crate) struct Held<T: ?Sized> {
    /// Values held anywhere, by their hash (several where hashes collide), and some no one
    /// holds any more, until the next sweep (or the next keep of their hash).
    by_hash: ByHash<Vec<Weak<T>>>,
    /// The size of `by_hash` at which values no one holds are swept from it.
    sweep_at: usize,
}

impl<T: ?Sized> Default for Held<T> {
    fn default() -> Self {
        Held {
            by_hash: ByHash::default(),
            sweep_at: 8,
        }
    }
}

impl<T: ?Sized> Held<T> {
    /// A value some core holds, of hash `hash`, that `same` accepts.
    pub(crate) fn find(&self, hash: u64, same: impl Fn(&T) -> bool) -> Option<Arc<T>> {
        let held = self.by_hash.get(&hash)?;
        held.iter().filter_map(Weak::upgrade).find(|v| same(v))
    }

    /// Keeps `value` (of hash `hash`) for others to find.
    pub(crate) fn keep(&mut self, hash: u64, value: &Arc<T>) {
        // Those of the same hash that no one holds go now: the sweep below counts hashes,
        // and values that come back again and again would otherwise pile up under theirs.
        let same_hash = self.by_hash.entry(hash).or_default();
        same_hash.retain(|v| v.strong_count() > 0);
        same_hash.push(Arc::downgrade(value));
        if self.by_hash.len() >= self.sweep_at {
            self.by_hash.retain(|_, held| {
                held.retain(|v| v.strong_count() > 0);
                !held.is_empty()
            });
            // Swept again when it has doubled: a sweep's cost is spread over as many keeps.
            self.sweep_at = (self.by_hash.len() * 2).max(8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_found_while_held_and_swept_after() {
        let mut memo: Held<[u32]> = Held::default();
        let a: Arc<[u32]> = Arc::from(vec![1, 2]);
        memo.keep(7, &a);
        let found = memo.find(7, |v| v == [1, 2]).expect("held");
        assert!(Arc::ptr_eq(&found, &a), "the very value, shared");
        assert!(
            memo.find(7, |v| v == [3]).is_none(),
            "same hash, other value"
        );
        assert!(memo.find(8, |_| true).is_none());
        drop((a, found));
        assert!(memo.find(7, |_| true).is_none(), "no one holds it");
        for hash in 0..100 {
            let v: Arc<[u32]> = Arc::from(vec![hash as u32]);
            memo.keep(hash, &v);
        }
        assert!(memo.by_hash.len() < 20, "swept: {}", memo.by_hash.len());
    }
}
