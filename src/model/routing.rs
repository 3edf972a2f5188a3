//! Message-broker routing: which queue a RabbitMQ topic binding delivers to, which
//! Kafka partition a key lands on, and which consumer of a group owns each partition.
//!
//! Everything here is a pure function of its arguments and uses only `Vec` and sorting
//! (no hashing), so a seed gives the same routing on every platform and run.

/// Does a RabbitMQ topic-exchange binding `pattern` match `routing_key`?
///
/// RabbitMQ topic semantics: both are dot-separated words, `*` matches exactly one
/// word, `#` matches zero or more words, any other word must be equal. As in RabbitMQ
/// the empty string is zero words (so `#` matches `""` and `*` does not), while empty
/// words between dots (`"a..b"`) are words like any other.
///
/// Runs in O(words(pattern) * words(key)) word comparisons without allocating: the
/// greedy wildcard match that remembers only the last `#` (which dominates every earlier
/// one), so patterns like `#.#.#.#.#.x` are not exponential.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let mut p = first_word(pattern);
    let mut k = first_word(routing_key);
    // The pattern position just after the last `#` seen, and the key position that `#`
    // has swallowed up to so far.
    let mut hash: Option<(Cursor, Cursor)> = None;
    loop {
        match p {
            Some(pi) => {
                let (pw, pn) = word_at(pattern, pi);
                if pw == "#" {
                    hash = Some((pn, k));
                    p = pn;
                    continue;
                }
                if let Some(ki) = k {
                    let (kw, kn) = word_at(routing_key, ki);
                    if pw == "*" || pw == kw {
                        p = pn;
                        k = kn;
                        continue;
                    }
                }
            }
            None if k.is_none() => return true,
            None => {}
        }
        // Mismatch: let the last `#` swallow one more key word and retry after it.
        let Some((after_hash, Some(swallowed))) = hash else {
            return false;
        };
        let (_, next) = word_at(routing_key, swallowed);
        hash = Some((after_hash, next));
        p = after_hash;
        k = next;
    }
}

/// A position in a dot-separated string: the byte offset where the next word starts,
/// or `None` once every word has been read.
type Cursor = Option<usize>;

/// The first word's position: RabbitMQ splits `""` into no words at all.
fn first_word(s: &str) -> Cursor {
    if s.is_empty() { None } else { Some(0) }
}

/// The word starting at byte `start` and the position of the word after it.
fn word_at(s: &str, start: usize) -> (&str, Cursor) {
    match s[start..].find('.') {
        Some(dot) => (&s[start..start + dot], Some(start + dot + 1)),
        None => (&s[start..], None),
    }
}

/// Kafka's 32-bit murmur2 hash of a key, bit for bit.
///
/// Kafka's default partitioner hashes keys with `Utils.murmur2` (seed 0x9747b28c), so
/// matching it exactly is what puts a keyed record on the same partition a real producer
/// would. Java's `int` overflow is reproduced with wrapping `u32` arithmetic.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java takes `data.length` as an int; keys never approach 2 GiB.
    let length = data.len() as u32;
    let mut h = SEED ^ length;

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // The tail, as Java's `switch (length % 4)` with fallthrough.
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a non-null key:
/// `Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions`.
///
/// `toPositive` masks the sign bit rather than taking `abs`, so `i32::MIN` maps to 0.
///
/// # Panics
///
/// If `partitions` is 0 (a topic always has at least one partition).
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) as u32 % partitions
}

/// How a consumer group shares one topic's partitions among its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka `RangeAssignor`: contiguous blocks, the lowest member ids get the extra.
    Range,
    /// Kafka `RoundRobinAssignor`: partitions dealt out one at a time in member order.
    RoundRobin,
    /// Kafka `CooperativeStickyAssignor`: balanced, and moves as few partitions as
    /// possible from their previous owners (only moved partitions are revoked).
    CooperativeSticky,
}

/// The owner of each of `partitions` partitions (index = partition number), `None`
/// only when there are no members.
///
/// `members` are member ids (sorted and de-duplicated here, so order does not matter).
/// `previous` is the previous owner of each partition and is read only by
/// `CooperativeSticky`; owners that are no longer members count as gone, and a
/// `previous` shorter than `partitions` counts as `None` for the missing ones.
///
/// Every assignor balances: owned counts differ by at most one.
pub fn assign(
    assignor: Assignor,
    partitions: u32,
    members: &[u32],
    previous: &[Option<u32>],
) -> Vec<Option<u32>> {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() {
        return vec![None; partitions as usize];
    }
    match assignor {
        Assignor::Range => range(partitions, &sorted),
        Assignor::RoundRobin => (0..partitions as usize)
            .map(|p| Some(sorted[p % sorted.len()]))
            .collect(),
        Assignor::CooperativeSticky => sticky(partitions, &sorted, previous),
    }
}

/// Kafka `RangeAssignor` for one topic: each member gets `P / M` consecutive partitions,
/// and the first `P % M` members (in sorted order) one more.
fn range(partitions: u32, sorted: &[u32]) -> Vec<Option<u32>> {
    let m = sorted.len() as u32;
    let (n, extra) = (partitions / m, partitions % m);
    let mut out = Vec::with_capacity(partitions as usize);
    for (i, &member) in (0..m).zip(sorted) {
        let count = n + u32::from(i < extra);
        out.extend((0..count).map(|_| Some(member)));
    }
    out
}

/// Cooperative sticky assignment (the balance-then-stickiness goal of Kafka's
/// `AbstractStickyAssignor`, for one topic).
///
/// Quotas: every member gets `P / M`, and `P % M` of them one more. The extra slots go
/// first to members that already own more than `P / M` (lowest ids first), because only
/// there does a larger quota save a move; any left go to the lowest ids. Each member
/// keeps its lowest-numbered previous partitions up to its quota (so an over-quota
/// member loses its highest-numbered ones). The freed partitions, in increasing order,
/// go to the member that currently owns the fewest (ties: lowest id).
///
/// That keeps `sum(min(owned, quota))` partitions, the most any balanced assignment can
/// keep, so it moves the fewest possible. The filling step ends balanced: nobody is
/// above their quota after the keep pass, and the fewest-first fill cannot leave anyone
/// below `P / M` while the total is `P`.
fn sticky(partitions: u32, sorted: &[u32], previous: &[Option<u32>]) -> Vec<Option<u32>> {
    let m = sorted.len();
    let base = partitions / m as u32;
    let mut extra = partitions % m as u32;
    let member_index = |p: u32| -> Option<usize> {
        let owner = previous.get(p as usize).copied().flatten()?;
        sorted.binary_search(&owner).ok()
    };

    let mut owned = vec![0u32; m];
    for p in 0..partitions {
        if let Some(i) = member_index(p) {
            owned[i] += 1;
        }
    }

    let mut quota = vec![base; m];
    for (q, _) in quota.iter_mut().zip(&owned).filter(|(_, o)| **o > base) {
        if extra == 0 {
            break;
        }
        *q += 1;
        extra -= 1;
    }
    for q in quota.iter_mut().filter(|q| **q == base) {
        if extra == 0 {
            break;
        }
        *q += 1;
        extra -= 1;
    }

    // Keep pass: reuse `owned` as the running count of what each member holds now.
    owned.fill(0);
    let mut out = vec![None; partitions as usize];
    for p in 0..partitions {
        if let Some(i) = member_index(p)
            && owned[i] < quota[i]
        {
            owned[i] += 1;
            out[p as usize] = Some(sorted[i]);
        }
    }

    // Fill pass: freed partitions to whoever holds the fewest, lowest id on ties.
    for slot in out.iter_mut().filter(|o| o.is_none()) {
        let (i, _) = owned
            .iter()
            .enumerate()
            .min_by_key(|&(i, &count)| (count, i))
            .expect("at least one member");
        owned[i] += 1;
        *slot = Some(sorted[i]);
    }
    out
}

/// How many partitions changed owner between two assignments, counting a change from
/// or to `None` (a partition missing from the shorter slice counts as `None`).
///
/// In a cooperative rebalance each of these is revoked and re-assigned, i.e. paused.
pub fn moved(previous: &[Option<u32>], next: &[Option<u32>]) -> u32 {
    let len = previous.len().max(next.len());
    (0..len)
        .filter(|&p| previous.get(p).copied().flatten() != next.get(p).copied().flatten())
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_star_is_exactly_one_word() {
        assert!(topic_matches("order.*", "order.created"));
        assert!(!topic_matches("order.*", "order"));
        assert!(!topic_matches("order.*", "order.created.eu"));
        assert!(topic_matches("*.created", "order.created"));
        assert!(!topic_matches("*.created", "created"));
        assert!(topic_matches("*", "x"));
        assert!(!topic_matches("*", ""));
        assert!(topic_matches("*.*", "a.b"));
        assert!(!topic_matches("*.*", "a.b.c"));
    }

    #[test]
    fn topic_hash_is_zero_or_more_words() {
        for key in ["order", "order.created", "order.created.eu"] {
            assert!(topic_matches("order.#", key), "{key}");
        }
        assert!(!topic_matches("order.#", "orders.created"));
        for key in ["", "a", "a.b", "a.b.c", "..", "order.created.eu"] {
            assert!(topic_matches("#", key), "{key:?}");
        }
        assert!(topic_matches("#.created", "created"));
        assert!(topic_matches("#.created", "a.b.created"));
        assert!(!topic_matches("#.created", "a.created.b"));
        assert!(topic_matches("a.#.z", "a.z"));
        assert!(topic_matches("a.#.z", "a.b.c.z"));
        assert!(!topic_matches("a.#.z", "a.b.c"));
        assert!(!topic_matches("a.#.z", "z"));
        assert!(topic_matches("#.#", ""));
        assert!(topic_matches("#.*", "a"));
        assert!(!topic_matches("#.*", ""));
        assert!(topic_matches("a.#.b.#.c", "a.x.b.y.z.c"));
        assert!(topic_matches("a.#.b.#.c", "a.b.c"));
        assert!(!topic_matches("a.#.b.#.c", "a.c.b"));
    }

    #[test]
    fn topic_words_match_exactly() {
        assert!(topic_matches("order.created", "order.created"));
        assert!(!topic_matches("order.created", "order.create"));
        assert!(!topic_matches("order.created", "order.created.eu"));
        assert!(!topic_matches("order", "order.created"));
        assert!(!topic_matches("Order", "order"));
        assert!(topic_matches("", ""));
        assert!(!topic_matches("", "a"));
        assert!(!topic_matches("a", ""));
        // Empty words are words: "a." is ["a", ""].
        assert!(topic_matches("a.*", "a."));
        assert!(!topic_matches("a", "a."));
        assert!(topic_matches("a..b", "a..b"));
    }

    #[test]
    fn topic_pathological_pattern_is_fast() {
        // Exponential backtracking would take ~C(205, 5) steps here.
        let key = "w.".repeat(200) + "y";
        assert!(!topic_matches("#.#.#.#.#.x", &key));
        assert!(topic_matches("#.#.#.#.#.y", &key));
        assert!(!topic_matches("#.w.#.w.#.w.#.w.#.x", &key));
        assert!(topic_matches("#.w.#.w.#.w.#.w.#.y", &key));
    }

    /// The obvious exponential recursion, as the specification to check against.
    fn reference(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|skip| reference(rest, &k[skip..])),
            Some((&w, rest)) => match k.split_first() {
                Some((&kw, krest)) => (w == "*" || w == kw) && reference(rest, krest),
                None => false,
            },
        }
    }

    fn words(s: &str) -> Vec<&str> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split('.').collect()
        }
    }

    #[test]
    fn topic_agrees_with_reference_on_all_small_inputs() {
        // Every pattern of up to 4 words over {a, b, *, #} against every key of up to
        // 4 words over {a, b}.
        fn all(alphabet: &[&str], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut layer = vec![String::new()];
            for _ in 0..max {
                let mut next = Vec::new();
                for prefix in &layer {
                    for w in alphabet {
                        next.push(if prefix.is_empty() {
                            (*w).to_string()
                        } else {
                            format!("{prefix}.{w}")
                        });
                    }
                }
                out.extend(next.iter().cloned());
                layer = next;
            }
            out
        }
        let patterns = all(&["a", "b", "*", "#"], 4);
        let keys = all(&["a", "b"], 4);
        let mut matched = 0;
        for p in &patterns {
            for k in &keys {
                let want = reference(&words(p), &words(k));
                assert_eq!(topic_matches(p, k), want, "{p:?} vs {k:?}");
                matched += u32::from(want);
            }
        }
        assert_eq!(patterns.len(), 341);
        assert_eq!(keys.len(), 31);
        assert!(matched > 0);
    }

    /// Kafka's `UtilsTest.testMurmur2`, all of its vectors.
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107), // new byte[] {'a', 'b', 'c'}
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn kafka_partition_masks_sign_then_mods() {
        // -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(kafka_partition(b"21", 1), 0);
        assert_eq!(kafka_partition(b"21", 1_000_000_000), 173_551_340);
        assert_eq!(kafka_partition(b"21", 7), 1_173_551_340 % 7);
        // 479470107 is already positive.
        assert_eq!(kafka_partition(b"abc", 1_000_000_000), 479_470_107);
        assert_eq!(kafka_partition(b"abc", 12), 479_470_107 % 12);
        for n in 1..=64 {
            assert!(kafka_partition(b"foobar", n) < n);
        }
    }

    #[test]
    fn range_gives_the_extra_to_the_lowest_ids() {
        let got = assign(Assignor::Range, 6, &[1, 2, 3, 4], &[]);
        assert_eq!(got, [1, 1, 2, 2, 3, 4].map(Some));
        // Unsorted input is sorted first.
        let got = assign(Assignor::Range, 6, &[4, 3, 2, 1], &[]);
        assert_eq!(got, [1, 1, 2, 2, 3, 4].map(Some));
        let got = assign(Assignor::Range, 2, &[5, 6, 7], &[]);
        assert_eq!(got, [5, 6].map(Some));
    }

    #[test]
    fn round_robin_deals_in_member_order() {
        let got = assign(Assignor::RoundRobin, 5, &[7, 9], &[]);
        assert_eq!(got, [7, 9, 7, 9, 7].map(Some));
    }

    #[test]
    fn no_members_owns_nothing() {
        for a in [
            Assignor::Range,
            Assignor::RoundRobin,
            Assignor::CooperativeSticky,
        ] {
            assert_eq!(assign(a, 3, &[], &[Some(1); 3]), vec![None; 3]);
            assert_eq!(assign(a, 0, &[1], &[]), Vec::new());
        }
    }

    #[test]
    fn sticky_member_leaves_only_its_partitions_move() {
        let before = assign(Assignor::Range, 6, &[1, 2, 3], &[]);
        assert_eq!(before, [1, 1, 2, 2, 3, 3].map(Some));
        let after = assign(Assignor::CooperativeSticky, 6, &[1, 3], &before);
        assert_eq!(after, [1, 1, 1, 3, 3, 3].map(Some));
        assert_eq!(moved(&before, &after), 2);
        for (b, a) in before.iter().zip(&after) {
            if *b != Some(2) {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn sticky_member_joins_takes_from_over_quota() {
        let before = assign(Assignor::Range, 6, &[1, 2], &[]);
        assert_eq!(before, [1, 1, 1, 2, 2, 2].map(Some));
        let after = assign(Assignor::CooperativeSticky, 6, &[1, 2, 3], &before);
        // 1 and 2 each lose their highest-numbered partition to 3.
        assert_eq!(after, [1, 1, 3, 2, 2, 3].map(Some));
        assert_eq!(moved(&before, &after), 2);

        // 7 over [1, 2] -> [1, 2, 3]: quotas 3, 2, 2; member 1 keeps its extra.
        let before = assign(Assignor::Range, 7, &[1, 2], &[]);
        assert_eq!(before, [1, 1, 1, 1, 2, 2, 2].map(Some));
        let after = assign(Assignor::CooperativeSticky, 7, &[1, 2, 3], &before);
        assert_eq!(after, [1, 1, 1, 3, 2, 2, 3].map(Some));
        assert_eq!(moved(&before, &after), 2);
    }

    #[test]
    fn sticky_from_nothing_is_balanced() {
        let after = assign(Assignor::CooperativeSticky, 7, &[3, 1, 2], &[None; 7]);
        assert_eq!(after, [1, 2, 3, 1, 2, 3, 1].map(Some));
        // A stable assignment stays exactly as it is.
        let again = assign(Assignor::CooperativeSticky, 7, &[1, 2, 3], &after);
        assert_eq!(again, after);
        assert_eq!(moved(&after, &again), 0);
    }

    #[test]
    fn moved_counts_changes_including_none() {
        assert_eq!(moved(&[], &[]), 0);
        assert_eq!(
            moved(&[Some(1), None, Some(2)], &[Some(1), Some(1), None]),
            2
        );
        assert_eq!(moved(&[Some(1), Some(2)], &[Some(2), Some(1)]), 2);
        assert_eq!(moved(&[Some(1)], &[Some(1), Some(2)]), 1);
    }

    /// A 64-bit LCG (Knuth's MMIX constants): deterministic inputs without `rand`.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u32) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % u64::from(n)) as u32
        }
    }

    #[test]
    fn assignors_hold_their_invariants_on_small_groups() {
        let mut rng = Lcg(0x5eed);
        let mut cases = 0;
        for partitions in 0..=12u32 {
            for m in 1..=5usize {
                for _round in 0..20 {
                    // Distinct member ids from 1..=8; previous owners from 0..=9 or None,
                    // so some are gone and some never existed.
                    let mut members: Vec<u32> = Vec::new();
                    while members.len() < m {
                        let id = 1 + rng.below(8);
                        if !members.contains(&id) {
                            members.push(id);
                        }
                    }
                    members.sort_unstable();
                    let previous: Vec<Option<u32>> = (0..partitions)
                        .map(|_| match rng.below(11) {
                            10 => None,
                            id => Some(id),
                        })
                        .collect();
                    for a in [
                        Assignor::Range,
                        Assignor::RoundRobin,
                        Assignor::CooperativeSticky,
                    ] {
                        let next = assign(a, partitions, &members, &previous);
                        check(a, partitions, &members, &previous, &next);
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 13 * 5 * 20 * 3);
    }

    fn check(
        a: Assignor,
        partitions: u32,
        members: &[u32],
        previous: &[Option<u32>],
        next: &[Option<u32>],
    ) {
        let ctx =
            format!("{a:?} P={partitions} members={members:?} previous={previous:?} next={next:?}");
        assert_eq!(next.len(), partitions as usize, "{ctx}");
        let count = |owner: u32, of: &[Option<u32>]| -> u32 {
            of.iter().filter(|o| **o == Some(owner)).count() as u32
        };
        for owner in next {
            assert!(owner.is_some_and(|o| members.contains(&o)), "{ctx}");
        }
        let counts: Vec<u32> = members.iter().map(|&id| count(id, next)).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "{ctx}");

        if a != Assignor::CooperativeSticky {
            return;
        }
        let m = members.len() as u32;
        let base = partitions / m;
        let extra = partitions % m;
        let mut over_base = 0;
        let mut best_kept = 0;
        for &id in members {
            let had: Vec<usize> = (0..previous.len())
                .filter(|&p| previous[p] == Some(id))
                .collect();
            // A member within the floor quota keeps everything; one above it keeps at
            // least its lowest-numbered `base` partitions.
            for &p in had.iter().take(base as usize) {
                assert_eq!(next[p], Some(id), "{ctx}: partition {p} moved");
            }
            over_base += u32::from(had.len() as u32 > base);
            best_kept += (had.len() as u32).min(base);
        }
        // Minimal movement: the most any balanced assignment can keep is everyone's
        // `min(had, base)` plus one per ceil slot given to a member that had more.
        best_kept += extra.min(over_base);
        assert_eq!(moved(previous, next), partitions - best_kept, "{ctx}");
    }
}
