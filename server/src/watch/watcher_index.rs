//! The synced watchers indexed by the keys they watch, so the dispatcher
//! finds the watchers of one event in O(log n + matches) instead of testing
//! every watcher (etcd's `watcher_group` keeps the same two parts).
//!
//! - Single-key watchers (`range_end` empty) sit in a hash map by key.
//! - Range and prefix watchers sit in an interval tree: a treap ordered by
//!   range start, each node carrying the largest range end below it, so a
//!   search skips every subtree whose ranges all end at or before the key.
//!
//! Watchers with the same range share one entry (a *group*): a thousand
//! watchers of one prefix cost one tree node, and an event reaches all of
//! them through one lookup.
//!
//! Ranges keep etcd's reading (see `logbook_engine::kv::in_range`): an empty
//! end is the single key, an end of `[0]` means "every key from the start",
//! any other end is exclusive.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// A watcher's identity on this member: (stream, watch ID).
pub type WatcherKey = (u64, i64);

/// Where a range stops: before a key, or nowhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// Exclusive.
    Before(Vec<u8>),
    /// Past every key (etcd's `range_end = "\0"`).
    Unbounded,
}

impl End {
    fn of(range_end: &[u8]) -> End {
        if range_end == [0] { End::Unbounded } else { End::Before(range_end.to_vec()) }
    }

    /// Whether `key` lies before this end.
    fn after(&self, key: &[u8]) -> bool {
        match self {
            End::Before(end) => key < end.as_slice(),
            End::Unbounded => true,
        }
    }
}

/// The watchers of one range.
type Group<T> = HashMap<WatcherKey, T>;

/// One tree node: a distinct range and its watchers.
struct Node<T> {
    start: Vec<u8>,
    end: End,
    /// The largest `end` in this subtree.
    max_end: End,
    priority: u64,
    group: Group<T>,
    left: Option<Box<Node<T>>>,
    right: Option<Box<Node<T>>>,
}

impl<T> Node<T> {
    fn order(&self, start: &[u8], end: &End) -> Ordering {
        (start, end).cmp(&(self.start.as_slice(), &self.end))
    }

    fn update(&mut self) {
        let mut max = &self.end;
        for child in [&self.left, &self.right].into_iter().flatten() {
            if child.max_end > *max {
                max = &child.max_end;
            }
        }
        if *max != self.max_end {
            self.max_end = max.clone();
        }
    }
}

/// Synced watchers by watched keys. `T` is what the dispatcher needs of a
/// watcher (the hub stores `Arc<Watcher>`; tests store plain numbers).
pub struct WatcherIndex<T> {
    exact: HashMap<Vec<u8>, Group<T>>,
    root: Option<Box<Node<T>>>,
    len: usize,
    /// Treap priorities: a xorshift sequence (balance needs priorities
    /// independent of the keys, not unpredictable ones).
    seed: u64,
}

impl<T> Default for WatcherIndex<T> {
    fn default() -> Self {
        WatcherIndex { exact: HashMap::new(), root: None, len: 0, seed: 0x9e37_79b9_7f4a_7c15 }
    }
}

impl<T> WatcherIndex<T> {
    /// Watchers indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds watcher `id` on `[key, range_end)`; replaces (and returns) the
    /// value of a watcher already there under the same range and id.
    pub fn insert(&mut self, key: &[u8], range_end: &[u8], id: WatcherKey, value: T) -> Option<T> {
        let old = if range_end.is_empty() {
            self.exact.entry(key.to_vec()).or_default().insert(id, value)
        } else {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            let (root, old) =
                insert(self.root.take(), key, End::of(range_end), self.seed, id, value);
            self.root = Some(root);
            old
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes watcher `id` on `[key, range_end)`.
    pub fn remove(&mut self, key: &[u8], range_end: &[u8], id: &WatcherKey) -> Option<T> {
        let old = if range_end.is_empty() {
            match self.exact.entry(key.to_vec()) {
                Entry::Occupied(mut group) => {
                    let old = group.get_mut().remove(id);
                    if group.get().is_empty() {
                        group.remove();
                    }
                    old
                }
                Entry::Vacant(_) => None,
            }
        } else {
            let (root, old) = remove(self.root.take(), key, &End::of(range_end), id);
            self.root = root;
            old
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Calls `f` for every watcher whose range holds `key`.
    pub fn for_each_match<'a>(&'a self, key: &[u8], mut f: impl FnMut(&'a WatcherKey, &'a T)) {
        if let Some(group) = self.exact.get(key) {
            group.iter().for_each(|(id, v)| f(id, v));
        }
        stab(self.root.as_deref(), key, &mut f);
    }

    /// Takes every watcher out.
    pub fn drain(&mut self) -> Vec<(WatcherKey, T)> {
        let mut out = Vec::with_capacity(self.len);
        for (_, group) in self.exact.drain() {
            out.extend(group);
        }
        let mut stack: Vec<Box<Node<T>>> = self.root.take().into_iter().collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.left.take());
            stack.extend(node.right.take());
            out.extend(node.group);
        }
        self.len = 0;
        out
    }
}

/// Every group of `node`'s subtree whose range holds `key`.
fn stab<'a, T>(node: Option<&'a Node<T>>, key: &[u8], f: &mut impl FnMut(&'a WatcherKey, &'a T)) {
    let Some(node) = node else { return };
    if !node.max_end.after(key) {
        return; // every range below ends at or before `key`
    }
    stab(node.left.as_deref(), key, f);
    if node.start.as_slice() <= key {
        if node.end.after(key) {
            node.group.iter().for_each(|(id, v)| f(id, v));
        }
        // Starts to the right are larger still: only look there when this
        // one is not past `key`.
        stab(node.right.as_deref(), key, f);
    }
}

fn rotate_right<T>(mut node: Box<Node<T>>) -> Box<Node<T>> {
    let mut left = node.left.take().expect("rotate_right needs a left child");
    node.left = left.right.take();
    node.update();
    left.right = Some(node);
    left.update();
    left
}

fn rotate_left<T>(mut node: Box<Node<T>>) -> Box<Node<T>> {
    let mut right = node.right.take().expect("rotate_left needs a right child");
    node.right = right.left.take();
    node.update();
    right.left = Some(node);
    right.update();
    right
}

fn insert<T>(
    node: Option<Box<Node<T>>>,
    start: &[u8],
    end: End,
    priority: u64,
    id: WatcherKey,
    value: T,
) -> (Box<Node<T>>, Option<T>) {
    let Some(mut node) = node else {
        let mut group = HashMap::new();
        group.insert(id, value);
        let node = Node {
            start: start.to_vec(),
            max_end: end.clone(),
            end,
            priority,
            group,
            left: None,
            right: None,
        };
        return (Box::new(node), None);
    };
    match node.order(start, &end) {
        Ordering::Equal => {
            let old = node.group.insert(id, value);
            (node, old)
        }
        Ordering::Less => {
            let (child, old) = insert(node.left.take(), start, end, priority, id, value);
            let rotate = child.priority > node.priority;
            node.left = Some(child);
            node.update();
            (if rotate { rotate_right(node) } else { node }, old)
        }
        Ordering::Greater => {
            let (child, old) = insert(node.right.take(), start, end, priority, id, value);
            let rotate = child.priority > node.priority;
            node.right = Some(child);
            node.update();
            (if rotate { rotate_left(node) } else { node }, old)
        }
    }
}

fn remove<T>(
    node: Option<Box<Node<T>>>,
    start: &[u8],
    end: &End,
    id: &WatcherKey,
) -> (Option<Box<Node<T>>>, Option<T>) {
    let Some(mut node) = node else { return (None, None) };
    let old = match node.order(start, end) {
        Ordering::Less => {
            let (child, old) = remove(node.left.take(), start, end, id);
            node.left = child;
            old
        }
        Ordering::Greater => {
            let (child, old) = remove(node.right.take(), start, end, id);
            node.right = child;
            old
        }
        Ordering::Equal => {
            let old = node.group.remove(id);
            if node.group.is_empty() {
                return (sink(node), old);
            }
            old
        }
    };
    node.update();
    (Some(node), old)
}

/// Removes `node` from the top of its subtree: rotates it down past the
/// child of higher priority until it has at most one child.
fn sink<T>(mut node: Box<Node<T>>) -> Option<Box<Node<T>>> {
    match (node.left.take(), node.right.take()) {
        (None, None) => None,
        (Some(only), None) | (None, Some(only)) => Some(only),
        (Some(left), Some(right)) => {
            if left.priority > right.priority {
                // `left` rises; `node` goes down to its right.
                let mut top = left;
                node.left = top.right.take();
                node.right = Some(right);
                top.right = sink(node);
                top.update();
                Some(top)
            } else {
                let mut top = right;
                node.right = top.left.take();
                node.left = Some(left);
                top.left = sink(node);
                top.update();
                Some(top)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A small deterministic generator (the server crate has no `rand`).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// Keys over a small alphabet, so ranges overlap and repeat.
        fn key(&mut self) -> Vec<u8> {
            let len = 1 + self.below(3) as usize;
            (0..len).map(|_| b"abc\xff"[self.below(4) as usize]).collect()
        }
        /// A range end as clients send them: a single key, a prefix, "from
        /// key on", an explicit end (sometimes at or before the key).
        fn range_end(&mut self, key: &[u8]) -> Vec<u8> {
            match self.below(4) {
                0 => Vec::new(),
                1 => logbook_engine::prefix_end(key),
                2 => vec![0],
                _ => self.key(),
            }
        }
    }

    /// Checks the tree's invariants: BST order, heap order, max_end.
    fn check<T>(node: Option<&Node<T>>) -> usize {
        let Some(n) = node else { return 0 };
        let mut max = n.end.clone();
        for child in [n.left.as_deref(), n.right.as_deref()].into_iter().flatten() {
            assert!(child.priority <= n.priority, "heap order");
            max = max.max(child.max_end.clone());
        }
        if let Some(l) = n.left.as_deref() {
            assert_eq!(n.order(&l.start, &l.end), Ordering::Less, "left below");
        }
        if let Some(r) = n.right.as_deref() {
            assert_eq!(n.order(&r.start, &r.end), Ordering::Greater, "right above");
        }
        assert_eq!(n.max_end, max, "max_end");
        assert!(!n.group.is_empty(), "no empty groups");
        n.group.len() + check(n.left.as_deref()) + check(n.right.as_deref())
    }

    /// Random inserts and removals, with every answer compared against a
    /// scan of all watchers using the engine's own `in_range`.
    fn run(seed: u64) {
        let mut rng = Rng(seed);
        let mut index = WatcherIndex::default();
        let mut model: Vec<(Vec<u8>, Vec<u8>, WatcherKey)> = Vec::new();
        for step in 0..600 {
            if model.is_empty() || rng.below(3) != 0 {
                let key = rng.key();
                let end = rng.range_end(&key);
                let id = (rng.below(4), step as i64);
                assert!(index.insert(&key, &end, id, step).is_none());
                model.push((key, end, id));
            } else {
                let (key, end, id) = model.swap_remove(rng.below(model.len() as u64) as usize);
                assert!(index.remove(&key, &end, &id).is_some(), "seed {seed}: remove {id:?}");
                assert!(index.remove(&key, &end, &id).is_none(), "seed {seed}: removed twice");
            }
            assert_eq!(index.len(), model.len(), "seed {seed}");
            let in_tree: usize =
                index.exact.values().map(|g| g.len()).sum::<usize>() + check(index.root.as_deref());
            assert_eq!(in_tree, model.len(), "seed {seed}");
            for _ in 0..8 {
                let probe = rng.key();
                let mut got = BTreeSet::new();
                index.for_each_match(&probe, |id, _| assert!(got.insert(*id), "seed {seed}"));
                let want: BTreeSet<WatcherKey> = model
                    .iter()
                    .filter(|(k, e, _)| logbook_engine::kv::in_range(&probe, k, e))
                    .map(|(_, _, id)| *id)
                    .collect();
                assert_eq!(got, want, "seed {seed}, step {step}, key {probe:?}");
            }
        }
        let mut drained: Vec<WatcherKey> = index.drain().into_iter().map(|(id, _)| id).collect();
        drained.sort();
        let mut want: Vec<WatcherKey> = model.iter().map(|m| m.2).collect();
        want.sort();
        assert_eq!(drained, want, "seed {seed}");
        assert_eq!(index.len(), 0);
        assert!(index.root.is_none() && index.exact.is_empty());
    }

    #[test]
    fn matches_equal_a_scan_of_every_watcher() {
        // LOGBOOK_TEST_SEED replays one seed.
        if let Some(seed) = std::env::var("LOGBOOK_TEST_SEED").ok().and_then(|s| s.parse().ok()) {
            return run(seed);
        }
        for seed in 0..40 {
            run(seed);
        }
    }

    #[test]
    fn one_group_per_range() {
        let mut index = WatcherIndex::default();
        for i in 0..1000 {
            index.insert(b"/p/", b"/p0", (i % 7, i as i64), i);
        }
        assert_eq!(check(index.root.as_deref()), 1000);
        assert!(index.root.as_ref().is_some_and(|r| r.left.is_none() && r.right.is_none()));
        let mut n = 0;
        index.for_each_match(b"/p/x", |_, _| n += 1);
        assert_eq!(n, 1000);
        index.for_each_match(b"/q", |_, _| panic!("outside the prefix"));
        // Replacing keeps the count.
        assert_eq!(index.insert(b"/p/", b"/p0", (0, 0), 5), Some(0));
        assert_eq!(index.len(), 1000);
    }

    #[test]
    fn stays_shallow_with_many_ranges() {
        fn depth<T>(n: Option<&Node<T>>) -> usize {
            n.map_or(0, |n| 1 + depth(n.left.as_deref()).max(depth(n.right.as_deref())))
        }
        let mut index = WatcherIndex::default();
        // Sorted inserts: the worst case for an unbalanced tree.
        for i in 0..10_000u32 {
            let key = format!("/k/{i:06}/");
            index.insert(key.as_bytes(), &logbook_engine::prefix_end(key.as_bytes()), (0, 0), i);
        }
        let d = depth(index.root.as_deref());
        assert!(d < 60, "treap depth {d} for 10,000 ranges");
        let mut hits = Vec::new();
        index.for_each_match(b"/k/004242/x", |_, v| hits.push(*v));
        assert_eq!(hits, vec![4242]);
    }
}
