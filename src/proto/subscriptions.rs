//! Counted prefix subscriptions, as a publisher keeps them per peer.
//!
//! ZeroMQ subscriptions are reference-counted, not idempotent: two SUBSCRIBEs of `"a"`
//! need two CANCELs before `"a"` stops matching. A topic matches when any subscribed
//! prefix is a prefix of it (on the first frame of a message); the empty prefix matches
//! everything.
//!
//! # Implementation notes
//!
//! The table is a `Vec` of distinct prefixes sorted bytewise, each with its count. Sorted
//! order is cache friendly for the handful of prefixes a telemetry subscriber typically
//! has, and makes matching `O(k log n)` where `k` is almost always 1:
//!
//! Every subscribed prefix `p` of `topic` satisfies `p <= topic`, so the best candidate is
//! the greatest entry `e <= topic` (one binary search). If `e` is not a prefix of `topic`,
//! let `l` be the length of their common prefix. Any entry that is a prefix of `topic` and
//! `<= e` must be a prefix of `topic[..l]` (a longer one would agree with `topic` at
//! position `l`, where `topic` is greater than `e`, and so sort after `e`). The search
//! therefore restarts with `topic[..l]` among the entries before `e`. Each round strictly
//! shortens both the topic and the candidate range, so the loop ends after at most
//! `min(n, topic.len() + 1)` rounds, and in practice after one or two.
//!
//! Subscribing and cancelling shift the tail of the vector (`O(n)`), which is irrelevant
//! next to the per-message cost of matching.

/// Tables of up to this many prefixes are scanned in order: for the one or few
/// subscriptions a connection usually has, comparing each prefix inline is cheaper than
/// the binary search's ordered comparisons (two library `memcmp` calls per message took
/// 7% of a publisher's thread in a 64 B throughput profile).
const LINEAR_SCAN_MAX: usize = 4;

/// Prefixes up to this long are compared byte by byte, inline.
const INLINE_COMPARE_MAX: usize = 16;

/// Whether `prefix` starts `topic`.
#[inline]
fn is_prefix(prefix: &[u8], topic: &[u8]) -> bool {
    match topic.get(..prefix.len()) {
        // A branch-free fold, which the compiler keeps inline (an early-exit loop may be
        // turned back into a `memcmp` call).
        Some(head) if prefix.len() <= INLINE_COMPARE_MAX => {
            head.iter()
                .zip(prefix)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        }
        Some(head) => head == prefix,
        None => false,
    }
}

/// A multiset of topic prefixes with fast prefix matching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionTable {
    /// Sorted by prefix, prefixes distinct, counts ≥ 1.
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    // Owned copy: keeping a `Bytes` slice of the input would pin the whole receive buffer
    // for as long as the subscription lives.
    prefix: Box<[u8]>,
    count: usize,
}

impl SubscriptionTable {
    /// An empty table (matches nothing).
    pub fn new() -> SubscriptionTable {
        SubscriptionTable::default()
    }

    fn find(&self, prefix: &[u8]) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|entry| (*entry.prefix).cmp(prefix))
    }

    /// Adds one reference to `prefix`.
    pub fn subscribe(&mut self, prefix: &[u8]) {
        match self.find(prefix) {
            Ok(i) => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.count = entry.count.saturating_add(1);
                }
            }
            Err(i) => self.entries.insert(
                i,
                Entry {
                    prefix: prefix.into(),
                    count: 1,
                },
            ),
        }
    }

    /// Drops one reference to `prefix`; false if it was not subscribed.
    pub fn cancel(&mut self, prefix: &[u8]) -> bool {
        let Ok(i) = self.find(prefix) else {
            return false;
        };
        let Some(entry) = self.entries.get_mut(i) else {
            return false;
        };
        entry.count -= 1;
        if entry.count == 0 {
            self.entries.remove(i);
        }
        true
    }

    /// Whether some subscribed prefix is a prefix of `topic`.
    pub fn matches(&self, topic: &[u8]) -> bool {
        if self.entries.len() <= LINEAR_SCAN_MAX {
            return self.entries.iter().any(|e| is_prefix(&e.prefix, topic));
        }
        let mut topic = topic;
        let mut candidates: &[Entry] = &self.entries;
        loop {
            let end = candidates.partition_point(|entry| *entry.prefix <= *topic);
            let Some(greatest) = end.checked_sub(1).and_then(|i| candidates.get(i)) else {
                return false;
            };
            if topic.starts_with(&greatest.prefix) {
                return true;
            }
            let common = greatest
                .prefix
                .iter()
                .zip(topic)
                .take_while(|(a, b)| a == b)
                .count();
            topic = topic.get(..common).unwrap_or_default();
            candidates = candidates.get(..end - 1).unwrap_or_default();
        }
    }

    /// How many references `prefix` holds (0 if not subscribed).
    pub fn count(&self, prefix: &[u8]) -> usize {
        self.find(prefix)
            .ok()
            .and_then(|i| self.entries.get(i))
            .map_or(0, |entry| entry.count)
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every subscription.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Distinct prefixes with their reference counts, in bytewise order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], usize)> + '_ {
        self.entries
            .iter()
            .map(|entry| (&*entry.prefix, entry.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counted_subscriptions() {
        let mut table = SubscriptionTable::new();
        assert!(!table.matches(b"a"));
        assert!(!table.matches(b""));
        table.subscribe(b"a");
        table.subscribe(b"a");
        assert_eq!(table.len(), 1);
        assert_eq!(table.count(b"a"), 2);
        assert!(table.matches(b"abc"));
        assert!(table.cancel(b"a"));
        assert!(table.matches(b"abc"), "one reference left");
        assert!(table.cancel(b"a"));
        assert!(!table.matches(b"abc"));
        assert!(!table.cancel(b"a"), "not subscribed any more");
        assert!(table.is_empty());
    }

    #[test]
    fn empty_prefix_matches_everything() {
        let mut table = SubscriptionTable::new();
        table.subscribe(b"");
        assert!(table.matches(b""));
        assert!(table.matches(b"anything"));
        assert!(table.matches(&[0xFF, 0x00]));
    }

    #[test]
    fn prefix_matching_skips_siblings() {
        let mut table = SubscriptionTable::new();
        for p in [&b"cpu."[..], b"cpu.load", b"cpu.m", b"disk", b"mem.free"] {
            table.subscribe(p);
        }
        // The greatest entry <= "cpu.n" is "cpu.m", not a prefix; "cpu." must still match.
        assert!(table.matches(b"cpu.n"));
        assert!(table.matches(b"cpu.load.1"));
        assert!(table.matches(b"disk0"));
        assert!(!table.matches(b"cpu"));
        assert!(!table.matches(b"dis"));
        assert!(!table.matches(b"mem.fre"));
        assert!(!table.matches(b"net"));
        assert!(!table.matches(b""));
        assert_eq!(
            table.iter().map(|(p, _)| p.to_vec()).collect::<Vec<_>>(),
            vec![
                b"cpu.".to_vec(),
                b"cpu.load".to_vec(),
                b"cpu.m".to_vec(),
                b"disk".to_vec(),
                b"mem.free".to_vec()
            ]
        );
    }

    #[test]
    fn hundreds_of_prefixes() {
        let mut table = SubscriptionTable::new();
        for i in 0..500u32 {
            table.subscribe(format!("host{i:03}.metric").as_bytes());
        }
        assert_eq!(table.len(), 500);
        assert!(table.matches(b"host250.metric.cpu"));
        assert!(!table.matches(b"host250.metri"));
        assert!(!table.matches(b"host500.metric"));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Subscribe(Vec<u8>),
        Cancel(Vec<u8>),
        Match(Vec<u8>),
    }

    fn word(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xFF)],
            0..max,
        )
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            word(4).prop_map(Op::Subscribe),
            word(4).prop_map(Op::Cancel),
            word(7).prop_map(Op::Match),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_naive_multiset(ops in proptest::collection::vec(op(), 0..200)) {
            let mut table = SubscriptionTable::new();
            let mut oracle: Vec<Vec<u8>> = Vec::new();
            for op in ops {
                match op {
                    Op::Subscribe(p) => {
                        table.subscribe(&p);
                        oracle.push(p);
                    }
                    Op::Cancel(p) => {
                        let expected = match oracle.iter().position(|q| *q == p) {
                            Some(i) => {
                                oracle.swap_remove(i);
                                true
                            }
                            None => false,
                        };
                        prop_assert_eq!(table.cancel(&p), expected);
                    }
                    Op::Match(t) => {
                        let expected = oracle.iter().any(|p| t.starts_with(p));
                        prop_assert_eq!(table.matches(&t), expected, "topic {:?} in {:?}", t, oracle);
                    }
                }
                let mut distinct = oracle.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(table.len(), distinct.len());
                let counted: Vec<(Vec<u8>, usize)> = distinct
                    .iter()
                    .map(|p| (p.clone(), oracle.iter().filter(|q| *q == p).count()))
                    .collect();
                let actual: Vec<(Vec<u8>, usize)> = table.iter().map(|(p, c)| (p.to_vec(), c)).collect();
                prop_assert_eq!(actual, counted);
            }
        }
    }
}
