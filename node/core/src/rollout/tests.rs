//! Unit and property tests of the rollout's pacing.

use super::*;
use proptest::prelude::{ProptestConfig, any, prop_assert, proptest};
use weeble_crdt::{IntOrPercent, Object, parse_manifests};

fn deployment(replicas: u32, strategy: Strategy) -> Deployment {
    let text = "kind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata: \
                {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: v2}]\n";
    let Object::Deployment(mut d) = parse_manifests(text).expect("valid").objects.remove(0) else {
        panic!()
    };
    d.spec.replicas = replicas;
    d.spec.strategy = strategy;
    d
}

fn rolling(surge: IntOrPercent, unavailable: IntOrPercent) -> Strategy {
    Strategy::RollingUpdate {
        max_surge: surge,
        max_unavailable: unavailable,
    }
}

const NEW: &str = "new";

/// Slot by slot: `o` old and available, `n` new and available, `s` new and starting, `-`
/// nothing seen.
fn seen(slots: &str) -> Slots<'static> {
    let pod = |hash: &'static str, available| {
        vec![Seen {
            template_hash: hash,
            available,
            ..Seen::default()
        }]
    };
    slots
        .chars()
        .enumerate()
        .filter_map(|(i, c)| {
            let pod = match c {
                'o' => pod("old", true),
                'x' => pod("old", false),
                'n' => pod(NEW, true),
                's' => pod(NEW, false),
                _ => return None,
            };
            Some((i as u32, pod))
        })
        .collect()
}

/// The choices as a string: `c` current, `o` old, `-` nothing.
fn choices(pace: &Pace) -> String {
    let one = |c: &Choice| match c {
        Choice::Current => 'c',
        Choice::Old(_) => 'o',
        Choice::Nothing => '-',
    };
    pace.slots.iter().map(one).collect()
}

#[test]
fn a_settled_deployment_and_a_new_one_run_the_current_template_with_no_surge() {
    let d = deployment(
        4,
        rolling(IntOrPercent::Percent(25), IntOrPercent::Percent(25)),
    );
    for slots in ["nnnn", "----", "nn-s"] {
        let pace = pace(&d, &seen(slots), NEW);
        assert_eq!((choices(&pace), pace.surge), ("cccc".into(), 0), "{slots}");
    }
    assert!(pace(&d, &seen("nnnn"), NEW).progress.complete(4));
    assert!(!pace(&d, &seen("nnns"), NEW).progress.complete(4));
}

#[test]
fn a_rolling_update_changes_slots_lowest_first_within_its_bounds() {
    // 25 % of 4: one more, one fewer.
    let d = deployment(
        4,
        rolling(IntOrPercent::Percent(25), IntOrPercent::Percent(25)),
    );
    let step = |slots: &str| {
        let pace = pace(&d, &seen(slots), NEW);
        (choices(&pace), pace.surge)
    };
    assert_eq!(step("oooo"), ("cooo".into(), 1));
    // Slot 0 and the surge replica start: 3 available, no room for more.
    assert_eq!(step("sooos"), ("cooo".into(), 1));
    // The surge replica is up: 4 available, one may go.
    assert_eq!(step("sooon"), ("ccoo".into(), 1));
    assert_eq!(step("nnoon"), ("cccc".into(), 1));
    // Two slots left to change: the surge stays until every slot is up.
    assert_eq!(step("nnssn"), ("cccc".into(), 1));
    assert_eq!(step("nnnnn"), ("cccc".into(), 0));
    // An old replica that is not available changes at once, beyond the budget (here none).
    assert_eq!(step("oxoo"), ("ocoo".into(), 1));
    // Surge replicas that stop now are not counted on: 3 of 4 slots up, one surge stays,
    // and the last slot may change.
    let wide = deployment(4, rolling(IntOrPercent::Count(3), IntOrPercent::Count(0)));
    let pace = pace(&wide, &seen("nnnonnn"), NEW);
    assert_eq!((choices(&pace), pace.surge), ("cccc".into(), 1));
}

#[test]
fn no_surge_changes_in_place_and_no_unavailable_waits_for_the_surge() {
    let in_place = deployment(3, rolling(IntOrPercent::Count(0), IntOrPercent::Count(1)));
    let pace1 = pace(&in_place, &seen("ooo"), NEW);
    assert_eq!((choices(&pace1), pace1.surge), ("coo".into(), 0));
    let pace2 = pace(&in_place, &seen("soo"), NEW);
    assert_eq!(choices(&pace2), "coo");
    let surge_first = deployment(3, rolling(IntOrPercent::Count(1), IntOrPercent::Count(0)));
    let pace3 = pace(&surge_first, &seen("ooo"), NEW);
    assert_eq!((choices(&pace3), pace3.surge), ("ooo".into(), 1));
    let pace4 = pace(&surge_first, &seen("ooon"), NEW);
    assert_eq!(choices(&pace4), "coo");
}

#[test]
fn paused_starts_no_slot_and_recreate_stops_every_old_replica_first() {
    let mut d = deployment(3, rolling(IntOrPercent::Count(1), IntOrPercent::Count(1)));
    d.spec.paused = Some(true);
    let paused = pace(&d, &seen("oxo"), NEW);
    assert_eq!(
        (choices(&paused), paused.surge),
        ("ooo".into(), 0),
        "no surge starts"
    );
    assert_eq!(pace(&d, &seen("oxon"), NEW).surge, 1, "one running stays");
    assert_eq!(choices(&pace(&d, &seen("s-o"), NEW)), "cco");
    let recreate = deployment(3, Strategy::Recreate);
    assert_eq!(choices(&pace(&recreate, &seen("oo-"), NEW)), "---");
    // An old replica past the count (scaled down, not yet gone) holds it back too.
    assert_eq!(choices(&pace(&recreate, &seen("---o"), NEW)), "---");
    assert_eq!(choices(&pace(&recreate, &seen("---"), NEW)), "ccc");
}

#[test]
fn bounds_resolve_percentages_as_kubernetes_does() {
    let b = |s, u, r| bounds(&rolling(s, u), r);
    assert_eq!(
        b(IntOrPercent::Percent(25), IntOrPercent::Percent(25), 1),
        (1, 0)
    );
    assert_eq!(
        b(IntOrPercent::Percent(25), IntOrPercent::Percent(25), 10),
        (3, 2)
    );
    assert_eq!(
        b(IntOrPercent::Percent(0), IntOrPercent::Percent(10), 5),
        (0, 1)
    );
    assert_eq!(b(IntOrPercent::Count(2), IntOrPercent::Count(9), 3), (2, 3));
    assert_eq!(bounds(&Strategy::Recreate, 4), (0, 4));
    assert_eq!(surge_slot(4, 5), Some(1));
    assert_eq!(surge_slot(4, 3), None);
    assert_eq!(slot_of("web", "web-12"), Some(12));
    assert_eq!(slot_of("web", "webx-1"), None);
}

/// A whole rollout, every node seeing the same table: each step the pacing is applied (a
/// slot that changes loses its pod and starts the new one), then some starting pods become
/// available (`up`, drawn per step). Returns the steps it took, or the broken bound.
fn roll(replicas: u32, surge: u32, unavailable: u32, up: &[u8]) -> Result<usize, String> {
    let d = deployment(
        replicas,
        rolling(IntOrPercent::Count(surge), IntOrPercent::Count(unavailable)),
    );
    let (max_surge, max_unavailable) = bounds(&d.spec.strategy, replicas);
    let mut pods: BTreeMap<u32, Vec<Seen>> = seen(&"o".repeat(replicas as usize));
    for (step, &up) in up.iter().enumerate() {
        let pace = pace(&d, &pods, NEW);
        if pace.progress.complete(replicas) {
            return Ok(step);
        }
        for (i, choice) in pace.slots.iter().enumerate() {
            let slot = pods.entry(i as u32).or_default();
            let runs_current = slot.first().is_some_and(|s| s.template_hash == NEW);
            if *choice == Choice::Current && !runs_current {
                *slot = seen("s").remove(&0).unwrap();
            }
        }
        let wanted = replicas..replicas + pace.surge;
        pods.retain(|i, _| *i < replicas || wanted.contains(i));
        for i in wanted {
            pods.entry(i)
                .or_insert_with(|| seen("s").remove(&0).unwrap());
        }
        let available = pods.values().flatten().filter(|s| s.available).count() as u32;
        if available + max_unavailable < replicas {
            return Err(format!("step {step}: {available} available of {replicas}"));
        }
        if pods.len() as u32 > replicas + max_surge {
            return Err(format!("step {step}: {} pods", pods.len()));
        }
        // Some starting pods come up: `up`'s bits, slot by slot.
        for (i, s) in pods.values_mut().flatten().enumerate() {
            s.available |= (up >> (i % 8)) & 1 == 1;
        }
    }
    Err(format!("not complete after {} steps", up.len()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Available replicas never below `replicas - maxUnavailable`, never more than
    /// `replicas + maxSurge` pods, and the rollout completes once pods come up.
    #[test]
    fn a_rollout_keeps_its_bounds_and_completes(
        replicas in 1u32..12,
        surge in 0u32..4,
        unavailable in 0u32..4,
        up in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        // Pods come up at random, then all at once: it must end.
        let mut up = up;
        up.extend(std::iter::repeat_n(0xff, 3 * replicas as usize + 4));
        prop_assert!(roll(replicas, surge, unavailable, &up).is_ok(), "{:?}",
            roll(replicas, surge, unavailable, &up));
    }
}

#[test]
fn a_rollout_stalls_after_its_deadline_without_progress_and_goes_back_to_what_serves() {
    let mut d = deployment(3, rolling(IntOrPercent::Count(1), IntOrPercent::Count(0)));
    d.spec.progress_deadline_seconds = 10;
    d.history.changed_ms = 100_000;
    d.history.revision = 3;
    let mut seen = seen("ooos");
    seen.get_mut(&3).unwrap()[0].reason = Some("ErrImageNeverPull");
    seen.get_mut(&3).unwrap()[0].message = Some("no image");
    let pace = pace(&d, &seen, NEW);
    let stalled = |now_ms| super::stalled(&d, &seen, NEW, &pace, now_ms);
    assert_eq!(stalled(110_000), None, "within the deadline");
    let why = stalled(110_001).expect("past it");
    assert!(
        why.contains("revision 3") && why.contains("ErrImageNeverPull"),
        "{why}"
    );
    // A pod that became available later is progress: the deadline counts from it.
    let mut progressed = seen.clone();
    progressed.insert(
        0,
        vec![Seen {
            template_hash: NEW,
            available: true,
            available_ms: 105_000,
            ..Seen::default()
        }],
    );
    assert_eq!(super::stalled(&d, &progressed, NEW, &pace, 110_001), None);
    // Unknown change time (written before it was kept): no deadline.
    d.history.changed_ms = 0;
    assert_eq!(super::stalled(&d, &seen, NEW, &pace, 1_000_000), None);

    // The old revision most available replicas run is the last good one.
    let template = |image: &str| {
        let mut t = d.spec.template.clone();
        t.containers[0].image = image.into();
        t
    };
    for (revision, image) in [(1, "a"), (2, "b")] {
        d.history.old.push(weeble_crdt::Revision {
            revision,
            template: template(image),
            change_cause: None,
        });
    }
    let hashes: Vec<String> = ["a", "a", "b"].iter().map(|i| template(i).hash()).collect();
    let mut serving = BTreeMap::new();
    for (i, hash) in hashes.iter().enumerate() {
        serving.insert(
            i as u32,
            vec![Seen {
                template_hash: hash,
                available: true,
                ..Seen::default()
            }],
        );
    }
    assert_eq!(last_good(&d, &serving, NEW), Some(1));
    assert_eq!(
        last_good(&d, &BTreeMap::new(), NEW),
        Some(2),
        "else the newest old one"
    );
}

#[test]
fn a_second_change_and_a_scale_during_a_rollout_go_on_as_in_kubernetes() {
    let d = deployment(4, rolling(IntOrPercent::Count(1), IntOrPercent::Count(1)));
    // The first change's template ran on two slots when a second came: both older ones are
    // old alike, and the rollout goes on to the newest, lowest slots first.
    let mut mixed = seen("oooo");
    for i in [0, 1] {
        mixed.get_mut(&i).unwrap()[0].template_hash = "middle";
    }
    let pace1 = pace(&d, &mixed, NEW);
    assert_eq!((choices(&pace1), pace1.surge), ("cooo".into(), 1));
    assert_eq!(pace1.slots.get(1), Some(&Choice::Old("middle".into())));
    assert_eq!(pace1.slots.get(2), Some(&Choice::Old("old".into())));
    // Scaled up to 6 (the surge replica becomes slot 4): the new slot starts on the newest
    // template at once, and 5 of 6 available leave no room for more.
    let mut more = d.clone();
    more.spec.replicas = 6;
    let pace2 = pace(&more, &seen("oooon"), NEW);
    assert_eq!((choices(&pace2), pace2.surge), ("oooocc".into(), 1));
    // Scaled down to 2: the slots past the count go (placed nowhere), the rest go on.
    let mut fewer = d.clone();
    fewer.spec.replicas = 2;
    let pace3 = pace(&fewer, &seen("oooo"), NEW);
    assert_eq!((choices(&pace3), pace3.surge), ("co".into(), 1));
}
