use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

const SECOND: i64 = 1_000_000;

#[test]
fn parameters_are_validated() {
    for (rate, per, burst, cost) in [
        (0, SECOND, 1, 1),
        (-1, SECOND, 1, 1),
        (1, 0, 1, 1),
        (1, -5, 1, 1),
        (1, SECOND, 0, 1),
        (1, SECOND, 1, 0),
        (1, SECOND, 1, -1),
        (1, SECOND, 2, 3),
    ] {
        assert!(
            Params::new(rate, per, burst, cost).is_err(),
            "{rate} {per} {burst} {cost}"
        );
    }
    // a bucket that takes longer than MAX_SPAN_US to refill
    assert!(Params::new(1, 86_400 * SECOND, 40_000, 1).is_err());
    // more than one per microsecond
    assert!(Params::new(1_000_001, SECOND, 1, 1).is_err());
    assert!(Params::new(i64::MAX, SECOND, 1, 1).is_err());
    assert_eq!(Params::new(1_000_000, SECOND, 1, 1).unwrap().emission_us, 1);
    let p = Params::new(3, SECOND, 5, 2).unwrap();
    assert_eq!(p.emission_us, 333_334, "per/rate rounds up");
    assert_eq!(p.tolerance_us, 5 * 333_334);
    assert_eq!(p.cost_us, 2 * 333_334);
}

#[test]
fn a_new_key_has_a_full_bucket_then_drains_and_refills() {
    let p = Params::new(10, SECOND, 10, 1).unwrap(); // T = 100 ms
    let now = 1_000 * SECOND;
    let mut tat = now; // no state
    for i in 0..10 {
        let (d, t) = decide(tat, now, &p);
        assert!(d.allowed);
        assert_eq!(d.remaining, 9 - i);
        assert_eq!(d.retry_after_us, 0);
        assert_eq!(d.reset_after_us, (i + 1) * 100_000);
        tat = t.unwrap();
    }
    let (d, t) = decide(tat, now, &p);
    assert!(!d.allowed && t.is_none());
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after_us, 100_000, "one token comes back after T");
    assert_eq!(d.reset_after_us, SECOND);
    // 100 ms later exactly one token is back
    let (d, _) = decide(tat, now + 100_000, &p);
    assert!(d.allowed && d.remaining == 0);
    // a full bucket again after 1 s: the same answer as a key never seen
    assert_eq!(
        decide(tat, now + SECOND, &p),
        decide(now + SECOND, now + SECOND, &p)
    );
}

proptest! {
    // The contract: over any interval of length t the allowed cost of one key is at
    // most burst + rate·t/per, whatever the timing and costs of the requests.
    #[test]
    // per from 1 us (where per/rate is a few microseconds and rounding matters most)
    // to 5 s; the gaps between requests are fractions of per.
    fn allowed_cost_never_exceeds_the_bound(
        rate in 1i64..1_000, per in 1_000i64..5_000_000, burst in 1i64..50,
        steps in proptest::collection::vec((0i64..96, 1i64..50), 1..300),
    ) {
        let steps: Vec<(i64, i64)> = steps.into_iter().map(|(f, c)| (per * f / 64, c)).collect();
        let mut now = 5 * SECOND;
        let mut tat = now;
        let mut allowed: Vec<(i64, i64)> = Vec::new();
        for (dt, cost) in steps {
            now += dt;
            let cost = cost.min(burst);
            let p = Params::new(rate, per, burst, cost).unwrap();
            let (d, t) = decide(tat, now, &p);
            prop_assert_eq!(d.allowed, t.is_some());
            prop_assert!(d.remaining >= 0 && d.remaining <= burst);
            prop_assert!(d.retry_after_us >= 0 && d.reset_after_us >= 0);
            // a call with a smaller bucket than the ones before it: never a negative
            // remaining, whatever debt the key has
            let small = Params::new(rate, per, 1, 1).unwrap();
            prop_assert!(decide(tat, now, &small).0.remaining >= 0);
            if let Some(t) = t { tat = t; allowed.push((now, cost)); }
        }
        for i in 0..allowed.len() {
            let mut sum = 0i128;
            for j in i..allowed.len() {
                sum += allowed[j].1 as i128;
                let t = (allowed[j].0 - allowed[i].0) as i128;
                // sum <= burst + rate·t/per, in integers
                prop_assert!(sum * per as i128 <= burst as i128 * per as i128 + rate as i128 * t,
                    "cost {} allowed within {} us (rate {}/{} us, burst {})", sum, t, rate, per, burst);
            }
        }
    }

    // A refused request is allowed exactly retry_after later (if nothing else happens),
    // and not a microsecond before.
    #[test]
    fn retry_after_is_exact(rate in 1i64..1_000, per_ms in 1i64..5_000, burst in 1i64..50,
                            used in 0i64..60, cost in 1i64..50) {
        let cost = cost.min(burst);
        let p = Params::new(rate, per_ms * 1_000, burst, cost).unwrap();
        let now = 7 * SECOND;
        let tat = now + used.min(burst) * p.emission_us;
        let (d, _) = decide(tat, now, &p);
        if !d.allowed {
            prop_assert!(d.retry_after_us > 0);
            prop_assert!(decide(tat, now + d.retry_after_us, &p).0.allowed);
            prop_assert!(!decide(tat, now + d.retry_after_us - 1, &p).0.allowed);
        }
        // and reset_after is when the bucket is full again
        let full_at = now + d.reset_after_us;
        let after = decide(tat.max(now) + if d.allowed { p.cost_us } else { 0 }, full_at, &p);
        prop_assert_eq!(after.0.remaining, burst - cost);
    }
}

/// A plain model of the table: a map of every stored state, and the same rule for a full
/// table (room for a new key only if some stored bucket is full again).
struct Model {
    capacity: usize,
    tats: HashMap<[u64; 2], i64>,
}

impl Model {
    fn rate_limit(
        &mut self,
        fp: [u64; 2],
        now: i64,
        p: &Params,
    ) -> std::result::Result<Decision, TableFull> {
        let found = self.tats.get(&fp).copied();
        let (d, new_tat) = decide(found.unwrap_or(now), now, p);
        if let Some(t) = new_tat {
            if found.is_none() && self.tats.len() >= self.capacity {
                let (k, min) = self
                    .tats
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, t)| (*k, *t))
                    .unwrap();
                if min > now {
                    return Err(TableFull);
                }
                self.tats.remove(&k);
            }
            self.tats.insert(fp, t);
        }
        Ok(d)
    }
}

/// A table in plain vectors.
struct Owned {
    header: Header,
    slots: Vec<Slot>,
    heap: Vec<u32>,
    pos: Vec<u32>,
}

impl Owned {
    fn new(capacity: u64) -> Owned {
        Owned {
            header: Header {
                capacity,
                ..Header::default()
            },
            slots: vec![Slot::default(); slots_for(capacity)],
            heap: vec![0; capacity as usize],
            pos: vec![0; slots_for(capacity)],
        }
    }
    fn table(&mut self) -> Table<'_> {
        Table {
            header: &mut self.header,
            slots: &mut self.slots,
            heap: &mut self.heap,
            pos: &mut self.pos,
        }
    }
}

proptest! {
    // The table behaves as the map: the same decisions and refusals when full, and the
    // same states for every key whose bucket is still refilling (a full bucket and no
    // state are the same thing, so which of several full buckets was evicted does not
    // matter). Fingerprints share their low bits often, so probe runs collide, wrap
    // around the end, and backward-shift deletion moves keys; every invariant of the
    // hash and the heap is checked after every call.
    #[test]
    fn table_matches_a_map(
        capacity in 1u64..12,
        ops in proptest::collection::vec((0u64..24, 0u64..4, 0i64..300_000, 1i64..4, 1i64..4), 1..400),
    ) {
        let mut t = Owned::new(capacity);
        let mut model = Model { capacity: capacity as usize, tats: HashMap::new() };
        let mut now = SECOND;
        let mut keys = Vec::new();
        for (key, low, dt, cost, per_s) in ops {
            now += dt;
            let fp = [key + 1, low * 7 + key % 3]; // few distinct low words: collisions
            keys.push(fp);
            let p = Params::new(10, per_s * SECOND, 3, cost).unwrap();
            let got = t.table().rate_limit(fp, now, &p);
            let want = model.rate_limit(fp, now, &p);
            prop_assert_eq!(got, want);
            let table = t.table();
            prop_assert_eq!(table.check(), Ok(()));
            prop_assert!(table.header.count <= capacity);
            for k in &keys {
                let refilling = |tat: Option<i64>| tat.filter(|tat| *tat > now);
                prop_assert_eq!(refilling(table.get(k)), refilling(model.tats.get(k).copied()));
            }
        }
    }
}

#[test]
fn a_full_table_refuses_new_keys_until_a_bucket_is_full_again() {
    let capacity = 100;
    let mut t = Owned::new(capacity);
    let now = 100 * SECOND;
    // keys 0..99, key k refilling until now + (k + 1) s
    for k in 0..capacity as i64 {
        let p = Params::new(1, (k + 1) * SECOND, 1, 1).unwrap();
        assert!(
            t.table()
                .rate_limit(fingerprint(7, 1, &k.to_le_bytes()), now, &p)
                .unwrap()
                .allowed
        );
    }
    let p = Params::new(1, 3600 * SECOND, 1, 1).unwrap();
    let newcomer = fingerprint(7, 1, b"newcomer");
    assert_eq!(t.table().rate_limit(newcomer, now, &p), Err(TableFull));
    assert_eq!(
        t.table().rate_limit(newcomer, now + SECOND - 1, &p),
        Err(TableFull)
    );
    // a stored key still gets its answer (refused: its bucket is empty)
    assert!(
        !t.table()
            .rate_limit(fingerprint(7, 1, &5i64.to_le_bytes()), now, &p)
            .unwrap()
            .allowed
    );
    // after 1 s key 0's bucket is full: it, and only it, makes room
    assert!(
        t.table()
            .rate_limit(newcomer, now + SECOND, &p)
            .unwrap()
            .allowed
    );
    assert_eq!(t.header.evictions, 1);
    assert_eq!(t.table().get(&fingerprint(7, 1, &0i64.to_le_bytes())), None);
    assert!(t
        .table()
        .get(&fingerprint(7, 1, &1i64.to_le_bytes()))
        .is_some());
    assert_eq!(
        t.table()
            .rate_limit(fingerprint(7, 1, b"another"), now + SECOND, &p),
        Err(TableFull)
    );
    t.table().check().unwrap();
}

#[test]
fn fingerprints_separate_seeds_databases_and_keys() {
    assert_ne!(fingerprint(1, 1, b"user:1"), fingerprint(1, 2, b"user:1"));
    assert_ne!(fingerprint(1, 1, b"user:1"), fingerprint(1, 1, b"user:2"));
    assert_ne!(fingerprint(1, 1, b"user:1"), fingerprint(2, 1, b"user:1"));
    assert_eq!(fingerprint(1, 1, b"user:1"), fingerprint(1, 1, b"user:1"));
    assert_ne!(fingerprint(0, 0, b""), [0, 0]);
}
