//! The reconcile diff on hand-made observations: create, adopt, hold back, restart per
//! policy, replace on template change, remove what is not placed here (after a handover),
//! back off after failures.

use super::*;
use weeble_crdt::{Container, EnvVar, ObjectKey};

const NODE: &str = "n1";

fn ip() -> IpAddr {
    "127.0.0.11".parse().unwrap()
}

fn pod(index: u32, image: &str, policy: RestartPolicy) -> DesiredPod {
    let template = PodTemplate {
        labels: Labels::from([("app".into(), "web".into())]),
        annotations: Labels::new(),
        containers: vec![Container {
            name: "web".into(),
            image: image.into(),
            command: vec![],
            args: vec![],
            env: vec![EnvVar {
                name: "WEB_SERVICE_HOST".into(),
                value: "mine".into(),
            }],
            ports: vec![],
            resources: Default::default(),
            working_dir: None,
            liveness_probe: None,
            readiness_probe: None,
            image_pull_policy: None,
        }],
        node_selector: Labels::new(),
        restart_policy: policy,
    };
    DesiredPod {
        key: ReplicaKey {
            deployment: ObjectKey::new("default", "web"),
            index,
        },
        labels: Arc::new(template.labels.clone()),
        template_hash: template.hash(),
        service_env: vec![
            ("WEB_SERVICE_HOST".into(), "127.0.0.9".into()),
            ("WEB_SERVICE_PORT".into(), "80".into()),
        ],
        template: Arc::new(template),
    }
}

fn observed(p: &DesiredPod, id: &str, state: ContainerState) -> Observed {
    let spec = container_spec(NODE, ip(), p, "web");
    Observed {
        id: id.into(),
        name: spec.name,
        image: spec.image,
        image_id: "sha256:1".into(),
        labels: spec.labels,
        state,
        ports: vec![],
        ip: Some("172.17.0.9".parse().unwrap()),
        started_at_ms: 1_000,
        finished_at_ms: 2_000,
    }
}

/// The plan for this node when nothing is being handed over.
fn planned(desired: &[DesiredPod], seen: &[Observed], book: &Book, now: i64) -> Plan {
    plan(NODE, ip(), desired, seen, &BTreeMap::new(), book, now)
}

/// Its actions.
fn plan_here(desired: &[DesiredPod], seen: &[Observed], book: &Book, now: i64) -> Vec<Action> {
    planned(desired, seen, book, now).actions
}

fn kinds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Create { spec, .. } => format!("create {}", spec.hostname),
            Action::Start { id, .. } => format!("start {id}"),
            Action::Remove { id, .. } => format!("remove {id}"),
        })
        .collect()
}

#[test]
fn missing_containers_are_created_with_weeble_labels_and_running_ones_adopted() {
    let (a, b) = (
        pod(0, "img:1", RestartPolicy::Always),
        pod(1, "img:1", RestartPolicy::Always),
    );
    let seen = [observed(&a, "c0", ContainerState::Running)];
    let actions = plan_here(&[a, b], &seen, &Book::new(), 0);
    assert_eq!(kinds(&actions), ["create web-1"]);
    let Action::Create { spec, .. } = &actions[0] else {
        unreachable!()
    };
    assert_eq!(spec.name, "weeble_n1_default_web-1_web");
    assert_eq!(spec.labels[LABEL_NODE], NODE);
    assert_eq!(spec.labels[LABEL_DEPLOYMENT], "default/web");
    assert_eq!(spec.publish_ip, ip());
    // The services' variables, but the container's own wins over a service's of its name.
    let env: Vec<(&str, &str)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("WEB_SERVICE_PORT", "80"), ("WEB_SERVICE_HOST", "mine")]
    );
}

#[test]
fn a_node_holding_back_keeps_what_it_runs_and_starts_nothing_new() {
    let (a, b) = (
        pod(0, "img:1", RestartPolicy::Always),
        pod(1, "img:1", RestartPolicy::Always),
    );
    let seen = [observed(&a, "c0", ContainerState::Exited { code: 1 })];
    let kept = already_running(vec![a.clone(), b], &seen);
    assert_eq!(kept, [a]);
    // The kept pod's container is restarted as usual; nothing is created or removed.
    let actions = plan_here(&kept, &seen, &Book::new(), 0);
    assert_eq!(kinds(&actions), ["start c0"]);
}

#[test]
fn only_a_stopped_or_vanished_container_wakes_the_reconciler() {
    for action in ["die", "destroy", "oom"] {
        assert!(wakes(action), "{action}");
    }
    for action in ["kill", "create", "start", "exec_start: sh"] {
        assert!(!wakes(action), "{action}");
    }
}

#[test]
fn exited_containers_restart_as_the_restart_policy_says() {
    for (policy, code, restarts) in [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::OnFailure, 0, false),
        (RestartPolicy::OnFailure, 137, true),
        (RestartPolicy::Never, 1, false),
    ] {
        let p = pod(0, "img:1", policy);
        let seen = [observed(&p, "c0", ContainerState::Exited { code })];
        let actions = plan_here(&[p], &seen, &Book::new(), 0);
        let expected: Vec<String> = if restarts {
            vec!["start c0".into()]
        } else {
            vec![]
        };
        assert_eq!(kinds(&actions), expected, "{policy:?} exit {code}");
    }
}

#[test]
fn a_changed_template_replaces_the_container_and_strays_are_removed_first() {
    let old = pod(0, "img:1", RestartPolicy::Always);
    let new = pod(0, "img:2", RestartPolicy::Always);
    let stray = pod(5, "img:1", RestartPolicy::Always);
    let seen = [
        observed(&old, "c0", ContainerState::Running),
        observed(&stray, "c5", ContainerState::Running),
    ];
    let actions = plan_here(&[new], &seen, &Book::new(), 0);
    assert_eq!(kinds(&actions), ["remove c0", "remove c5", "create web-0"]);
}

#[test]
fn restarts_back_off_after_quick_failures_and_statuses_say_why() {
    let p = pod(0, "img:1", RestartPolicy::Always);
    let seen = [observed(&p, "c0", ContainerState::Exited { code: 1 })];
    let mut book = Book::new();
    let mut now = 10_000;
    let mut started = 0;
    for _ in 0..20 {
        for action in plan_here(std::slice::from_ref(&p), &seen, &book, now) {
            record(&mut book, &action, &Ok(()), &seen, now);
            started += 1;
        }
        now += 100;
    }
    // 2 s of quick crashes: immediate, immediate, then 1 s apart.
    assert_eq!(started, 3, "{book:?}");
    let status = &pod_statuses(NODE, ip(), &[p], &seen, &book, &Default::default(), now)[0];
    assert_eq!(status.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(status.restarts, 3);
    assert_eq!(backoff_ms(30), 60_000, "capped");
}

#[test]
fn a_missing_image_never_pulled_is_reported_and_retried_later_not_in_a_loop() {
    let mut p = pod(0, "nowhere:latest", RestartPolicy::Always);
    Arc::make_mut(&mut p.template).containers[0].image_pull_policy = Some(PullPolicy::Never);
    let mut book = Book::new();
    let actions = plan_here(std::slice::from_ref(&p), &[], &book, 0);
    record(
        &mut book,
        &actions[0],
        &Err(RuntimeError::ImageMissing("nowhere:latest".into())),
        &[],
        0,
    );
    assert!(
        plan_here(std::slice::from_ref(&p), &[], &book, 500).is_empty(),
        "waits"
    );
    assert_eq!(
        plan_here(std::slice::from_ref(&p), &[], &book, 1_000).len(),
        1,
        "retries"
    );
    let status = &pod_statuses(NODE, ip(), &[p], &[], &book, &Default::default(), 500)[0];
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (Phase::Pending, Some("ErrImageNeverPull"))
    );
    // The next template (the image fixed) is not held back by that backoff.
    let fixed = pod(0, "img:1", RestartPolicy::Always);
    assert_eq!(
        plan_here(&[fixed], &[], &book, 500).len(),
        1,
        "starts at once"
    );
}

#[test]
fn a_missing_image_is_pulled_once_for_every_pod_that_needs_it_and_its_failures_are_reported() {
    let pods: Vec<DesiredPod> = (0..3)
        .map(|i| pod(i, "web:1", RestartPolicy::Always))
        .collect();
    let mut book = Book::new();
    let status = |book: &Book, now| {
        let s = &pod_statuses(NODE, ip(), &pods[..1], &[], book, &Default::default(), now)[0];
        (
            s.reason.clone().unwrap_or_default(),
            s.message.clone().unwrap_or_default(),
        )
    };
    // IfNotPresent (a tag): made at once; the engine lacks the image, so it is pulled, once.
    let first = planned(&pods, &[], &book, 0);
    assert_eq!((first.actions.len(), first.pulls.len()), (3, 0));
    // One of them failed earlier for another reason: what it waits on now is its image.
    if let Action::Create { book_key, .. } = &first.actions[0] {
        let earlier = Some(("CreateContainerError".into(), "earlier".into()));
        book.containers.entry(book_key.clone()).or_default().error = earlier;
    }
    for action in &first.actions {
        let missing = Err(RuntimeError::ImageMissing("web:1".into()));
        record(&mut book, action, &missing, &[], 0);
    }
    assert!(
        book.containers
            .values()
            .all(|a| a.error.is_none() && a.failures == 0),
        "no container failed: its image is missing"
    );
    let second = planned(&pods, &[], &book, 0);
    assert_eq!(
        (second.actions, second.pulls),
        (vec![], vec!["web:1".to_string()])
    );
    book.pulls.started("web:1", 0);
    assert_eq!(
        status(&book, 100),
        ("ContainerCreating".into(), "Pulling image \"web:1\"".into())
    );
    let pulling = planned(&pods, &[], &book, 100);
    assert_eq!(pulling, Plan::default(), "nothing while it is pulled");
    // It fails: ErrImagePull once, then ImagePullBackOff until the back-off ends.
    book.pulls
        .finished("web:1", Err("pull access denied".into()), 1_000);
    assert_eq!(
        status(&book, 1_000),
        ("ErrImagePull".into(), "pull access denied".into())
    );
    assert!(book.pulls.told());
    assert_eq!(status(&book, 2_000).0, "ImagePullBackOff");
    let due = next_pass_in_ms(&book, &BTreeMap::new(), false, 60_000, 2_000);
    assert_eq!(due, 9_001, "the pass after the back-off");
    // The back-off over, the containers are made first (the image may be there now): still
    // missing, it is pulled.
    let retry = planned(&pods, &[], &book, 11_000);
    assert_eq!((retry.actions.len(), retry.pulls.len()), (3, 0));
    let missing = Err(RuntimeError::ImageMissing("web:1".into()));
    record(&mut book, &retry.actions[0], &missing, &[], 11_000);
    let retry = planned(&pods, &[], &book, 11_000);
    assert_eq!(
        (retry.actions.len(), retry.pulls),
        (0, vec!["web:1".to_string()])
    );
    book.pulls.started("web:1", 11_000);
    book.pulls.finished("web:1", Ok(()), 12_000);
    let made = planned(&pods, &[], &book, 12_000);
    assert_eq!((made.actions.len(), made.pulls.len()), (3, 0));
}

#[test]
fn always_pulls_before_making_pods_and_an_unreadable_image_is_never_made() {
    let latest: Vec<DesiredPod> = (0..2)
        .map(|i| pod(i, "web", RestartPolicy::Always))
        .collect();
    let mut book = Book::new();
    let first = planned(&latest, &[], &book, 0);
    assert_eq!(
        (first.actions.len(), first.pulls),
        (0, vec!["web".to_string()])
    );
    book.pulls.started("web", 0);
    book.pulls.finished("web", Ok(()), 500);
    let made = planned(&latest, &[], &book, 600);
    assert_eq!(made.actions.len(), 2, "one pull served both");
    let bad = [pod(0, "Web:1", RestartPolicy::Always)];
    let nothing = planned(&bad, &[], &book, 0);
    assert_eq!(nothing, Plan::default());
    let s = &pod_statuses(NODE, ip(), &bad, &[], &book, &Default::default(), 0)[0];
    assert_eq!(s.reason.as_deref(), Some("InvalidImageName"));
    assert!(s.message.as_deref().unwrap().contains("\"Web:1\""), "{s:?}");
}

#[test]
fn the_images_a_node_holds_are_those_its_containers_were_made_from() {
    let (a, b) = (
        pod(0, "web:1", RestartPolicy::Always),
        pod(1, "web:1", RestartPolicy::Always),
    );
    let mut unknown = observed(&b, "c3", ContainerState::Running);
    unknown.image_id.clear();
    let seen = [
        observed(&a, "c1", ContainerState::Running),
        observed(&b, "c2", ContainerState::Exited { code: 1 }),
        unknown,
    ];
    let held = held_images(&seen, &Pulls::default());
    assert_eq!(
        held,
        [crate::status::HeldImage {
            image: "web:1".into(),
            id: "sha256:1".into()
        }],
        "once each, and none the engine gave no id for"
    );
}

/// Placement of one replica of `default/web` on `owner`, with `n1` (this node) a member too.
fn placed_on(owner: &str) -> Placement {
    let nodes = vec!["n1".to_string(), "n2".to_string()];
    let index = nodes.iter().position(|n| n == owner).unwrap();
    Placement::of(
        nodes,
        BTreeMap::from([(
            ObjectKey::new("default", "web"),
            vec![crate::placement::Slot::new(Ok(index))],
        )]),
    )
}

/// The status table as `n2` reports `pod`: running if `running`, else nothing yet.
fn n2_reports(pod: &DesiredPod, running: bool) -> StatusTable {
    let seen = [observed(pod, "n2c", ContainerState::Running)];
    let seen: &[Observed] = if running { &seen } else { &[] };
    let mut table = StatusTable::default();
    table.merge(crate::status::NodeStatus {
        node: "n2".into(),
        epoch: 1,
        version: 1,
        pods: pod_statuses(
            "n2",
            ip(),
            std::slice::from_ref(pod),
            seen,
            &Book::new(),
            &Default::default(),
            0,
        ),
        not_ready: None,
        leaving: false,
        images: Vec::new(),
        signature: Default::default(),
    });
    table
}

#[test]
fn the_old_owner_keeps_a_replica_until_the_new_owner_runs_it_or_time_runs_out() {
    let p = pod(0, "img:1", RestartPolicy::Always);
    let here = [observed(&p, "c0", ContainerState::Running)];
    let placement = placed_on("n2");
    let mut since = BTreeMap::new();
    let plan_at = |table: &StatusTable, since: &mut BTreeMap<String, i64>, now: i64| {
        let handovers = handovers(NODE, &placement, &here, table, since, now);
        kinds(&plan(NODE, ip(), &[], &here, &handovers, &Book::new(), now).actions)
    };

    // The new owner has not started it: keep ours.
    let pending = n2_reports(&p, false);
    assert!(plan_at(&pending, &mut since, 1_000).is_empty());
    assert_eq!(since["default/web-0"], 1_000);
    let pending_at_2s = handovers(NODE, &placement, &here, &pending, &mut since, 2_000);
    assert_eq!(
        next_handover_deadline(&pending_at_2s, 2_000),
        Some(1_000 + HANDOVER_MAX_MS)
    );
    // It runs there now: ours goes.
    assert_eq!(
        plan_at(&n2_reports(&p, true), &mut since, 2_000),
        ["remove c0"]
    );
    // Or the new owner never gets it running: ours goes when the bound is over.
    assert!(plan_at(&pending, &mut since, HANDOVER_MAX_MS).is_empty());
    assert_eq!(
        plan_at(&pending, &mut since, 1_000 + HANDOVER_MAX_MS),
        ["remove c0"]
    );
    // A pod placed nowhere else (scaled away) is removed at once, and forgotten.
    let gone = Placement::of(placement.nodes(), BTreeMap::new());
    let none = handovers(NODE, &gone, &here, &pending, &mut since, 3_000);
    assert!(none.is_empty() && since.is_empty());
    assert_eq!(
        kinds(&plan(NODE, ip(), &[], &here, &none, &Book::new(), 3_000).actions),
        ["remove c0"]
    );
}

#[test]
fn probes_go_to_the_running_container_s_own_address_and_unready_pods_are_not_ready() {
    let mut p = pod(0, "img:1", RestartPolicy::Always);
    let c = &mut Arc::make_mut(&mut p.template).containers[0];
    c.ports = vec![weeble_crdt::ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        protocol: weeble_crdt::Protocol::Tcp,
    }];
    let timing = |action| weeble_crdt::Probe {
        action,
        initial_delay_seconds: 0,
        period_seconds: 1,
        timeout_seconds: 1,
        success_threshold: 1,
        failure_threshold: 1,
    };
    c.readiness_probe = Some(timing(ProbeAction::HttpGet {
        path: "/healthz".into(),
        port: TargetPort::Name("http".into()),
    }));
    c.liveness_probe = Some(timing(ProbeAction::Exec {
        command: vec!["true".into()],
    }));
    let p = DesiredPod {
        template_hash: p.template.hash(),
        ..p
    };
    let running = observed(&p, "c0", ContainerState::Running);
    let checks = probe_checks(std::slice::from_ref(&p), std::slice::from_ref(&running));
    let hows: Vec<(Kind, &How)> = checks.iter().map(|c| (c.kind, &c.how)).collect();
    assert_eq!(
        hows,
        [
            (
                Kind::Liveness,
                &How::Exec {
                    command: vec!["true".into()]
                }
            ),
            (
                Kind::Readiness,
                &How::Http {
                    addr: "172.17.0.9:8080".parse().unwrap(),
                    path: "/healthz".into()
                }
            ),
        ]
    );
    assert!(
        checks
            .iter()
            .all(|c| c.container_id == "c0" && c.started_ms == 1_000)
    );
    let exited = observed(&p, "c0", ContainerState::Exited { code: 1 });
    assert!(probe_checks(std::slice::from_ref(&p), &[exited]).is_empty());

    let unready = std::collections::BTreeSet::from(["c0".to_string()]);
    let seen = [running];
    let status = &pod_statuses(NODE, ip(), &[p], &seen, &Book::new(), &unready, 5_000)[0];
    assert_eq!((status.phase, status.ready), (Phase::Running, false));
}

#[test]
fn container_names_of_different_namespaces_and_pods_never_collide() {
    // `a` + `b-c` and `a-b` + `c`: the same text once joined with `-`.
    let in_namespace = |namespace: &str, deployment: &str| {
        let mut p = pod(0, "img:1", RestartPolicy::Always);
        p.key.deployment = ObjectKey::new(namespace, deployment);
        container_spec(NODE, ip(), &p, "web").name
    };
    assert_ne!(in_namespace("a", "b-c"), in_namespace("a-b", "c"));
}

#[test]
fn a_pass_takes_a_bounded_batch_with_removals_first_and_says_more_are_left() {
    let desired: Vec<DesiredPod> = (0..ACTIONS_PER_PASS as u32 + 5)
        .map(|i| pod(i, "img:1", RestartPolicy::Always))
        .collect();
    let stray = observed(
        &pod(999, "img:1", RestartPolicy::Always),
        "gone",
        ContainerState::Running,
    );
    let actions = plan_here(&desired, &[stray], &Book::new(), 0);
    assert_eq!(actions.len(), ACTIONS_PER_PASS + 6);
    let (first, more) = batch(actions);
    assert!(more);
    assert_eq!(first.len(), ACTIONS_PER_PASS);
    assert_eq!(kinds(&first)[0], "remove gone");
    let (last, more) = batch(first[..3].to_vec());
    assert!(!more);
    assert_eq!(last.len(), 3);
}

#[test]
fn the_next_pass_comes_at_the_first_retry_or_handover_deadline_or_at_the_resync() {
    let now = 100_000;
    let mut book = Book::new();
    assert_eq!(
        next_pass_in_ms(&book, &BTreeMap::new(), false, 10_000, now),
        10_000
    );
    assert_eq!(
        next_pass_in_ms(&book, &BTreeMap::new(), true, 10_000, now),
        0,
        "more left"
    );
    book.containers.insert(
        "default/web-0/app".into(),
        Attempts {
            not_before_ms: now + 2_000,
            ..Attempts::default()
        },
    );
    book.containers.insert(
        "default/web-1/app".into(),
        Attempts {
            not_before_ms: now - 5,
            ..Attempts::default()
        },
    );
    assert_eq!(
        next_pass_in_ms(&book, &BTreeMap::new(), false, 10_000, now),
        2_001
    );
    let handing_over = BTreeMap::from([(
        "default/web-2".to_string(),
        Handover {
            owner_running: false,
            since_ms: now - HANDOVER_MAX_MS + 500,
        },
    )]);
    assert_eq!(
        next_pass_in_ms(&book, &handing_over, false, 10_000, now),
        501
    );
    assert_eq!(
        next_pass_in_ms(&book, &handing_over, false, 300, now),
        300,
        "resync first"
    );
}

#[test]
fn only_a_running_container_whose_current_run_failed_liveness_is_killed() {
    let p = pod(0, "img:1", RestartPolicy::Always);
    let mut running = observed(&p, "c1", ContainerState::Running);
    running.started_at_ms = 50;
    let mut restarted = observed(&p, "c2", ContainerState::Running);
    restarted.started_at_ms = 90;
    let mut exited = observed(&p, "c3", ContainerState::Exited { code: 1 });
    exited.started_at_ms = 50;
    let failing = BTreeMap::from([
        ("c1".to_string(), 50),
        ("c2".to_string(), 50),
        ("c3".to_string(), 50),
    ]);
    assert_eq!(
        failed_liveness(&[running, restarted, exited], &failing),
        ["c1"],
        "c2 restarted since its failed run; c3 is not running"
    );
}

#[test]
fn the_join_grace_ends_once_at_the_first_peer_or_when_it_runs_out() {
    let mut grace = JoinGrace::new(1_000, 3_000);
    assert_eq!(
        grace.check(2_000, false),
        Grace::Holding { until_ms: 4_000 }
    );
    assert_eq!(grace.check(2_500, true), Grace::PeerAnswered);
    assert_eq!(
        grace.check(2_600, false),
        Grace::Over,
        "it does not come back"
    );
    let mut alone = JoinGrace::new(1_000, 3_000);
    assert_eq!(alone.check(4_000, false), Grace::RanOut);
    assert_eq!(alone.check(5_000, true), Grace::Over);
}

#[test]
fn each_desired_pod_carries_its_own_deployments_template_hash_and_services() {
    use crate::membership::MemberId;
    use crate::placement::{Candidate, Workloads, place};
    use weeble_crdt::{ActorId, DesiredState, parse_manifests};
    let deployment = |namespace: &str, name: &str, image: &str| {
        format!(
            "kind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  \
             replicas: 3\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      \
             containers: [{{name: c, image: {image}}}]\n---\n"
        )
    };
    let text = deployment("default", "a", "one")
        + &deployment("default", "b", "two")
        + &deployment("other", "c", "three")
        + "kind: Service\nmetadata: {name: web, namespace: other}\nspec:\n  \
           selector: {app: c}\n  ports: [{port: 80}]\n";
    let mut state = DesiredState::new(ActorId::from([1; 16]));
    for object in parse_manifests(&text).unwrap().objects {
        state.apply(&object).unwrap();
    }
    let snapshot = state.snapshot();
    let mut member = MemberId::test(1);
    member.name = NODE.into();
    let mut workloads = Workloads::default();
    workloads.update(&snapshot);
    let placement = place(&[Candidate::from_member(&member)], workloads.iter());
    let owned: Vec<_> = placement.owned_by(NODE).collect();
    let pods = desired_pods(&snapshot, &owned, ip(), &BTreeMap::new());
    assert_eq!(pods.len(), 9, "three replicas of each, all here");
    for pod in &pods {
        let d = &snapshot.deployments[&pod.key.deployment];
        assert_eq!(*pod.template, d.spec.template);
        assert_eq!(pod.template_hash, d.spec.template.hash());
        let env = services::environment(&snapshot, &pod.key.deployment.namespace, ip());
        assert_eq!(pod.service_env, env, "{:?}", pod.key);
    }
    let hashes: std::collections::BTreeSet<&str> =
        pods.iter().map(|p| p.template_hash.as_str()).collect();
    assert_eq!(hashes.len(), 3, "one hash per template");
    for pair in pods.windows(2) {
        let same = pair[0].key.deployment == pair[1].key.deployment;
        assert_eq!(
            Arc::ptr_eq(&pair[0].template, &pair[1].template),
            same,
            "one template held per deployment"
        );
    }
    assert!(pods.iter().any(|p| p.service_env.is_empty()));
    assert!(pods.iter().any(|p| !p.service_env.is_empty()));
}
