//! The prober's arithmetic: delays, periods, thresholds, and a restart starting afresh.

use super::*;
use weeble_crdt::{ProbeAction, TargetPort};

fn check(kind: Kind, started_ms: i64) -> Check {
    Check {
        container_id: "c1".into(),
        started_ms,
        kind,
        probe: Probe {
            action: ProbeAction::TcpSocket {
                port: TargetPort::Number(80),
            },
            initial_delay_seconds: 2,
            period_seconds: 1,
            timeout_seconds: 1,
            success_threshold: 2,
            failure_threshold: 3,
        },
        how: How::Tcp {
            addr: "127.0.0.1:80".parse().unwrap(),
        },
    }
}

/// Runs every check due at `now` with the given outcome.
fn round(prober: &mut Prober, now: i64, passed: bool) -> usize {
    let due = prober.take_due(now);
    for c in &due {
        prober.record(c, passed, now);
    }
    due.len()
}

#[test]
fn readiness_starts_unready_and_follows_its_thresholds() {
    let mut prober = Prober::default();
    prober.set(vec![check(Kind::Readiness, 0)]);
    assert!(prober.health().unready.contains("c1"));
    assert_eq!(round(&mut prober, 1_999, true), 0, "the initial delay");
    assert_eq!(prober.next_due_ms(), Some(2_000));
    round(&mut prober, 2_000, true);
    assert!(prober.health().unready.contains("c1"), "one success of two");
    assert_eq!(round(&mut prober, 2_500, true), 0, "the period");
    round(&mut prober, 3_000, true);
    assert!(
        prober.health().unready.is_empty(),
        "ready after two successes"
    );
    round(&mut prober, 4_000, false);
    round(&mut prober, 5_000, false);
    assert!(prober.health().unready.is_empty(), "two failures of three");
    round(&mut prober, 6_000, false);
    assert!(prober.health().unready.contains("c1"));
}

#[test]
fn liveness_starts_alive_fails_at_its_threshold_and_a_restart_starts_afresh() {
    let mut prober = Prober::default();
    prober.set(vec![check(Kind::Liveness, 0)]);
    assert_eq!(prober.health(), Health::default());
    for now in [2_000, 3_000, 4_000] {
        round(&mut prober, now, false);
    }
    assert_eq!(prober.health().failing.get("c1"), Some(&0));
    // The same container, started again: alive until proven otherwise, after its delay.
    prober.set(vec![check(Kind::Liveness, 10_000)]);
    assert_eq!(prober.health(), Health::default());
    assert_eq!(prober.next_due_ms(), Some(12_000));
}

#[test]
fn a_result_for_a_replaced_check_counts_for_nothing_and_a_running_check_is_not_run_twice() {
    let mut prober = Prober::default();
    prober.set(vec![check(Kind::Readiness, 0)]);
    let running = prober.take_due(2_000);
    assert_eq!(running.len(), 1);
    assert!(prober.take_due(9_000).is_empty(), "still running");
    prober.set(vec![check(Kind::Readiness, 5_000)]);
    prober.record(&running[0], true, 2_100);
    prober.record(&running[0], true, 2_200);
    assert!(prober.health().unready.contains("c1"));
    prober.set(vec![]);
    assert_eq!(
        prober.health(),
        Health::default(),
        "a container gone is forgotten"
    );
}
