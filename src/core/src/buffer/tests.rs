use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// A table in plain vectors.
struct Owned {
    header: Header,
    slots: Vec<Slot>,
}

impl Owned {
    fn new(capacity: u64) -> Owned {
        Owned {
            header: Header {
                capacity,
                seed: 42,
                ..Header::default()
            },
            slots: vec![Slot::default(); slots_for(capacity)],
        }
    }
    fn table(&mut self) -> Table<'_> {
        Table {
            header: &mut self.header,
            slots: &mut self.slots,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Xact {
    Running,
    Committed,
    Aborted,
}

/// The world around the table: transactions holding pins, flush transactions and the
/// rows they insert, and the ledger of what committed.
#[derive(Default)]
struct World {
    /// committed adds per (database, key, bucket)
    ledger: HashMap<(u32, u8, i64), i128>,
    /// rows in the counter tables: durable adds, and flush rows by transaction
    durable: HashMap<(u32, u8, i64), i128>,
    flush_rows: HashMap<u32, Vec<(u32, FlushRow)>>,
    xacts: HashMap<u32, Xact>,
    /// adds of transactions in progress that pinned their slot
    open: Vec<((u32, u8, i64), i128)>,
    running_flush: Option<(u32, u32)>,
    next_xid: u32,
}

impl World {
    fn state(&self, xid: u32, visible_to_all: bool) -> FlushState {
        match self.xacts.get(&xid) {
            Some(Xact::Committed) if visible_to_all => FlushState::VisibleToAll,
            Some(Xact::Committed) => FlushState::Committed,
            Some(Xact::Running) => FlushState::InProgress,
            _ => FlushState::Aborted,
        }
    }
    /// What a reader with a fresh snapshot counts for (database, key, bucket): the rows
    /// of committed transactions, plus the slot's delta and, while its flush has not
    /// committed, its inflight amount.
    fn read(&self, t: &Owned, id: (u32, u8, i64)) -> i128 {
        let mut sum = self.durable.get(&id).copied().unwrap_or(0);
        for (xid, rows) in &self.flush_rows {
            if self.xacts.get(xid) == Some(&Xact::Committed) {
                for (db, r) in rows {
                    if (*db, r.key[0], r.bucket) == id {
                        sum += r.amount;
                    }
                }
            }
        }
        let key = [id.1];
        for s in t.slots.iter() {
            if !s.is_empty() && s.database == id.0 && s.bucket == id.2 && s.key() == key {
                let hidden = self.xacts.get(&s.flush_xid) != Some(&Xact::Committed);
                sum += s.amount(hidden);
            }
        }
        sum
    }
}

fn id_of(id: &(u32, u8, i64)) -> ([u8; 1], u32, i64) {
    ([id.1], id.0, id.2)
}

proptest! {
    // Against a model of the transactions around it, after every step: a reader with a
    // fresh snapshot counts every committed add exactly once (rows of committed flushes
    // and durable adds, plus what the slots hold), whatever order adds, rollbacks,
    // flushes, failed flushes and flusher crashes come in; the table's invariants hold
    // and it never holds more slots than its capacity; a full table sends adds to the
    // durable path.
    #[test]
    fn every_committed_add_is_counted_once(
        capacity in 1u64..10,
        ops in proptest::collection::vec((0u8..8, 0u8..6, 0i64..2, -5i64..20, any::<bool>()), 1..300),
    ) {
        let mut t = Owned::new(capacity);
        let mut w = World { next_xid: 100, ..World::default() };
        let mut now = 0i64;
        let mut seen = Vec::new();
        for (op, key, bucket, amount, flag) in ops {
            now += 1_000;
            let database = if key >= 4 { 2 } else { 1 };
            let id = (database, key, bucket);
            seen.push(id);
            match op {
                // an add, in a transaction that stays open
                0..=2 => {
                    let (k, database, bucket) = id_of(&id);
                    let slot = Id { database, install: 5, counter: 7, bucket, key: &k };
                    if t.table().pin(&slot).is_ok() {
                        w.open.push((id, amount as i128));
                    } else {
                        // the durable path: a row of its own transaction, committed here
                        *w.ledger.entry(id).or_default() += amount as i128;
                        *w.durable.entry(id).or_default() += amount as i128;
                    }
                }
                // the oldest open transaction commits (flag) or rolls back
                3 | 4 if !w.open.is_empty() => {
                    let (oid, a) = w.open.remove(0);
                    let (k, database, bucket) = id_of(&oid);
                    let slot = Id { database, install: 5, counter: 7, bucket, key: &k };
                    if flag {
                        let committed = t.table().commit(&slot, a);
                        prop_assert!(committed);
                        *w.ledger.entry(oid).or_default() += a;
                    } else {
                        let unpinned = t.table().unpin(&slot);
                        prop_assert!(unpinned);
                    }
                }
                // a flush of one database starts
                5 if w.running_flush.is_none() => {
                    let xid = w.next_xid;
                    w.next_xid += 1;
                    w.xacts.insert(xid, Xact::Running);
                    let visible = flag;
                    let rows = {
                        let world = &w;
                        let states: HashMap<u32, FlushState> = world
                            .xacts
                            .keys()
                            .map(|&x| (x, world.state(x, visible)))
                            .collect();
                        t.table().begin_flush(&fl(database, 5, xid, now), |x| {
                            *states.get(&x).unwrap_or(&FlushState::Aborted)
                        })
                    };
                    for r in &rows {
                        prop_assert_eq!(r.counter, 7);
                        prop_assert!(r.amount != 0);
                    }
                    w.flush_rows.insert(xid, rows.into_iter().map(|r| (database, r)).collect());
                    w.running_flush = Some((xid, database));
                }
                // the running flush commits, fails, or its process dies (no commit)
                6 | 7 => {
                    if let Some((xid, _)) = w.running_flush.take() {
                        let state = if op == 6 && flag { Xact::Committed } else { Xact::Aborted };
                        w.xacts.insert(xid, state);
                    }
                }
                _ => {}
            }
            prop_assert_eq!(t.table().check(), Ok(()));
            prop_assert!(t.header.used <= capacity);
            for id in &seen {
                prop_assert_eq!(w.read(&t, *id), w.ledger.get(id).copied().unwrap_or(0), "{:?}", id);
            }
        }
        // Everything open ends, then flushes run until nothing is left in the slots: the
        // rows alone then hold every committed add, and the slots are all removed.
        for (oid, a) in std::mem::take(&mut w.open) {
            let (k, database, bucket) = id_of(&oid);
            let committed = t.table().commit(&Id { database, install: 5, counter: 7, bucket, key: &k }, a);
            prop_assert!(committed);
            *w.ledger.entry(oid).or_default() += a;
        }
        if let Some((xid, _)) = w.running_flush.take() {
            w.xacts.insert(xid, Xact::Committed);
        }
        for _ in 0..3 {
            for database in [1, 2] {
                let xid = w.next_xid;
                w.next_xid += 1;
                let states: HashMap<u32, FlushState> =
                    w.xacts.keys().map(|&x| (x, w.state(x, true))).collect();
                let rows = t.table().begin_flush(&fl(database, 5, xid, now), |x| {
                    *states.get(&x).unwrap_or(&FlushState::Aborted)
                });
                w.flush_rows.insert(xid, rows.into_iter().map(|r| (database, r)).collect());
                w.xacts.insert(xid, Xact::Committed);
            }
        }
        prop_assert_eq!(t.header.used, 0);
        for id in &seen {
            prop_assert_eq!(w.read(&t, *id), w.ledger.get(id).copied().unwrap_or(0));
        }
    }
}

fn fl(database: u32, install: u32, xid: u32, now_us: i64) -> Flush {
    Flush {
        database,
        install,
        xid: Some(xid),
        now_us,
        discard_other_installs: true,
    }
}

fn id(key: &[u8]) -> Id<'_> {
    Id {
        database: 1,
        install: 5,
        counter: 3,
        bucket: 0,
        key,
    }
}

#[test]
fn a_full_table_refuses_new_slots_but_not_pinned_ones() {
    let mut t = Owned::new(2);
    assert_eq!(t.table().pin(&id(b"a")), Ok(()));
    assert_eq!(t.table().pin(&id(b"b")), Ok(()));
    assert_eq!(t.table().pin(&id(b"c")), Err(NoRoom));
    assert_eq!(t.header.full, 1);
    // an existing slot takes more pins
    assert_eq!(t.table().pin(&id(b"a")), Ok(()));
    assert!(t.table().commit(&id(b"a"), 5));
    assert!(t.table().commit(&id(b"a"), 6));
    assert!(t.table().unpin(&id(b"b")));
    // no pin left on b: the next flush removes it and makes room
    let rows = t
        .table()
        .begin_flush(&fl(1, 5, 9, 0), |_| FlushState::Aborted);
    assert_eq!(
        rows,
        vec![FlushRow {
            counter: 3,
            bucket: 0,
            key: b"a".to_vec(),
            amount: 11
        }]
    );
    assert_eq!(t.header.used, 1);
    assert_eq!(t.table().pin(&id(b"c")), Ok(()));
    // a key longer than KEY_MAX is never buffered
    assert_eq!(t.table().pin(&id(&[b'x'; KEY_MAX + 1])), Err(NoRoom));
    assert_eq!(t.table().pin(&id(&[b'x'; KEY_MAX])), Err(NoRoom)); // (full again)
}

#[test]
fn an_unpinned_commit_is_refused() {
    let mut t = Owned::new(4);
    assert!(!t.table().commit(&id(b"a"), 1));
    assert_eq!(t.table().pin(&id(b"a")), Ok(()));
    assert!(t.table().commit(&id(b"a"), 1));
    assert!(!t.table().commit(&id(b"a"), 1));
}

#[test]
fn settling_follows_the_flush_transaction() {
    assert_eq!(settle(FlushState::VisibleToAll, 0), Settle::Drop);
    assert_eq!(settle(FlushState::Committed, 0), Settle::Keep);
    assert_eq!(settle(FlushState::Committed, SETTLE_GRACE_US), Settle::Drop);
    assert_eq!(
        settle(FlushState::InProgress, SETTLE_GRACE_US * 9),
        Settle::Keep
    );
    assert_eq!(settle(FlushState::Aborted, 0), Settle::Restore);
    // a slot whose flush is kept takes no new flush: adds collect in delta
    let mut t = Owned::new(4);
    t.table().pin(&id(b"a")).unwrap();
    t.table().commit(&id(b"a"), 7);
    assert_eq!(
        t.table()
            .begin_flush(&fl(1, 5, 10, 0), |_| unreachable!())
            .len(),
        1
    );
    t.table().pin(&id(b"a")).unwrap();
    t.table().commit(&id(b"a"), 2);
    assert!(t
        .table()
        .begin_flush(&fl(1, 5, 11, 1), |x| {
            assert_eq!(x, 10);
            FlushState::Committed
        })
        .is_empty());
    let s = *t.table().find(&id(b"a")).unwrap();
    assert_eq!((s.delta(), s.inflight(), s.flush_xid), (2, 7, 10));
    // flush 10 aborted: its 7 go out again with the 2, in flush 12
    let rows = t
        .table()
        .begin_flush(&fl(1, 5, 12, 2), |_| FlushState::Aborted);
    assert_eq!(rows[0].amount, 9);
    // another database's flush does not touch it
    assert!(t
        .table()
        .begin_flush(&fl(2, 5, 13, 3), |_| unreachable!())
        .is_empty());
}

#[test]
fn amounts_beyond_int8_are_kept_and_split() {
    let mut t = Owned::new(4);
    for _ in 0..3 {
        t.table().pin(&id(b"a")).unwrap();
        assert!(t.table().commit(&id(b"a"), i64::MAX as i128));
    }
    let rows = t.table().begin_flush(&fl(1, 5, 5, 0), |_| unreachable!());
    assert_eq!(rows[0].amount, 3 * i64::MAX as i128);
    assert_eq!(int8_parts(rows[0].amount), vec![i64::MAX; 3]);
    assert_eq!(int8_parts(0), Vec::<i64>::new());
    assert_eq!(int8_parts(-5), vec![-5]);
    let m = i64::MIN as i128 * 2 - 1;
    let parts = int8_parts(m);
    assert_eq!(parts.iter().map(|&p| p as i128).sum::<i128>(), m);
    assert!(parts.iter().all(|&p| p < 0));
}

#[test]
fn another_install_of_the_database_is_never_read_and_is_discarded() {
    let mut t = Owned::new(8);
    // the extension's earlier install (counter_pending OID 4) left unflushed adds
    let old = Id {
        install: 4,
        ..id(b"a")
    };
    t.table().pin(&old).unwrap();
    t.table().commit(&old, 9);
    t.table().pin(&id(b"a")).unwrap();
    t.table().commit(&id(b"a"), 2);
    let table = t.table();
    assert_eq!(table.slots_of(1, 5, 3, Some(b"a")).count(), 1);
    assert_eq!(table.slots_of(1, 4, 3, Some(b"a")).count(), 1);
    // the current install's flush takes its own 2 and discards the other install's slot
    let rows = t.table().begin_flush(&fl(1, 5, 10, 0), |_| unreachable!());
    assert_eq!(rows.iter().map(|r| r.amount).collect::<Vec<_>>(), vec![2]);
    assert!(t.table().find(&old).is_none());
    assert_eq!(t.table().check(), Ok(()));
    // a pinned slot of the other install stays until its transaction ends
    t.table().pin(&old).unwrap();
    t.table()
        .begin_flush(&fl(1, 5, 11, 1), |_| FlushState::VisibleToAll);
    assert!(t.table().find(&old).is_some());
    t.table().unpin(&old);
    t.table()
        .begin_flush(&fl(1, 5, 12, 2), |_| FlushState::VisibleToAll);
    assert!(t.table().find(&old).is_none());
}

#[test]
fn the_grace_counts_from_the_commit_and_a_flush_without_xid_takes_nothing() {
    let mut t = Owned::new(4);
    t.table().pin(&id(b"a")).unwrap();
    t.table().commit(&id(b"a"), 3);
    assert_eq!(
        t.table()
            .begin_flush(&fl(1, 5, 10, 0), |_| unreachable!())
            .len(),
        1
    );
    // flush 10 runs for 20 s; then it commits, hidden from some snapshot
    t.table()
        .begin_flush(&fl(1, 5, 11, 20_000_000), |_| FlushState::InProgress);
    t.table()
        .begin_flush(&fl(1, 5, 12, 20_100_000), |_| FlushState::Committed);
    assert_eq!(
        t.table().find(&id(b"a")).unwrap().inflight(),
        3,
        "kept: 0.1 s after its commit"
    );
    t.table()
        .begin_flush(&fl(1, 5, 13, 20_000_000 + SETTLE_GRACE_US), |_| {
            FlushState::Committed
        });
    assert!(
        t.table().find(&id(b"a")).is_none(),
        "dropped the grace after its commit (and the idle slot removed)"
    );
    // without a transaction id a flush settles and removes, and takes nothing
    t.table().pin(&id(b"b")).unwrap();
    t.table().commit(&id(b"b"), 4);
    t.table().pin(&id(b"d")).unwrap();
    t.table().unpin(&id(b"d"));
    let settle_only = Flush {
        xid: None,
        ..fl(1, 5, 0, 30_000_000)
    };
    assert!(t
        .table()
        .begin_flush(&settle_only, |_| FlushState::VisibleToAll)
        .is_empty());
    assert!(t.table().find(&id(b"d")).is_none(), "idle: removed");
    assert_eq!(
        t.table().find(&id(b"b")).unwrap().delta(),
        4,
        "kept for a flush with a transaction"
    );
    // a flush that may not discard other installs leaves them alone
    let other = Id {
        install: 4,
        ..id(b"c")
    };
    t.table().pin(&other).unwrap();
    t.table().commit(&other, 1);
    let keep_others = Flush {
        discard_other_installs: false,
        ..fl(1, 5, 14, 30_000_000)
    };
    t.table()
        .begin_flush(&keep_others, |_| FlushState::VisibleToAll);
    assert_eq!(t.table().find(&other).unwrap().delta(), 1);
}
