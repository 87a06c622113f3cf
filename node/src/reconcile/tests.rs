//! The reconcile diff on hand-made observations: create, adopt, hold back, restart per
//! policy, replace on template change, remove what is not placed here, back off after
//! failures.

use super::*;
use weeble_crdt::{Container, ObjectKey};

const NODE: &str = "n1";

fn ip() -> IpAddr {
    "127.0.0.11".parse().unwrap()
}

fn pod(index: u32, image: &str, policy: RestartPolicy) -> DesiredPod {
    let template = PodTemplate {
        labels: Labels::from([("app".into(), "web".into())]),
        containers: vec![Container {
            name: "web".into(),
            image: image.into(),
            command: vec![],
            args: vec![],
            env: vec![],
            ports: vec![],
            resources: Default::default(),
            working_dir: None,
        }],
        node_selector: Labels::new(),
        restart_policy: policy,
    };
    DesiredPod {
        key: ReplicaKey {
            deployment: ObjectKey::new("default", "web"),
            index,
        },
        template_hash: template_hash(&template),
        template,
    }
}

fn observed(p: &DesiredPod, id: &str, state: ContainerState) -> Observed {
    let spec = container_spec(NODE, ip(), p, "web");
    Observed {
        id: id.into(),
        name: spec.name,
        image: spec.image,
        labels: spec.labels,
        state,
        ports: vec![],
        started_at_ms: 1_000,
        finished_at_ms: 2_000,
    }
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
        pod(0, "img", RestartPolicy::Always),
        pod(1, "img", RestartPolicy::Always),
    );
    let seen = [observed(&a, "c0", ContainerState::Running)];
    let actions = plan(NODE, ip(), &[a, b], &seen, &Book::new(), 0);
    assert_eq!(kinds(&actions), ["create web-1"]);
    let Action::Create { spec, .. } = &actions[0] else {
        unreachable!()
    };
    assert_eq!(spec.name, "weeble-n1-default-web-1-web");
    assert_eq!(spec.labels[LABEL_NODE], NODE);
    assert_eq!(spec.labels[LABEL_DEPLOYMENT], "default/web");
    assert_eq!(spec.publish_ip, ip());
}

#[test]
fn a_node_holding_back_keeps_what_it_runs_and_starts_nothing_new() {
    let (a, b) = (
        pod(0, "img", RestartPolicy::Always),
        pod(1, "img", RestartPolicy::Always),
    );
    let seen = [observed(&a, "c0", ContainerState::Exited { code: 1 })];
    let kept = already_running(vec![a.clone(), b], &seen);
    assert_eq!(kept, [a]);
    // The kept pod's container is restarted as usual; nothing is created or removed.
    let actions = plan(NODE, ip(), &kept, &seen, &Book::new(), 0);
    assert_eq!(kinds(&actions), ["start c0"]);
}

#[test]
fn exited_containers_restart_as_the_restart_policy_says() {
    for (policy, code, restarts) in [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::OnFailure, 0, false),
        (RestartPolicy::OnFailure, 137, true),
        (RestartPolicy::Never, 1, false),
    ] {
        let p = pod(0, "img", policy);
        let seen = [observed(&p, "c0", ContainerState::Exited { code })];
        let actions = plan(NODE, ip(), &[p], &seen, &Book::new(), 0);
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
    let actions = plan(NODE, ip(), &[new], &seen, &Book::new(), 0);
    assert_eq!(kinds(&actions), ["remove c0", "remove c5", "create web-0"]);
}

#[test]
fn restarts_back_off_after_quick_failures_and_statuses_say_why() {
    let p = pod(0, "img", RestartPolicy::Always);
    let seen = [observed(&p, "c0", ContainerState::Exited { code: 1 })];
    let mut book = Book::new();
    let mut now = 10_000;
    let mut started = 0;
    for _ in 0..20 {
        for action in plan(NODE, ip(), std::slice::from_ref(&p), &seen, &book, now) {
            record(&mut book, &action, &Ok(()), &seen, now);
            started += 1;
        }
        now += 100;
    }
    // 2 s of quick crashes: immediate, immediate, then 1 s apart.
    assert_eq!(started, 3, "{book:?}");
    let status = &pod_statuses(NODE, ip(), &[p], &seen, &book, now)[0];
    assert_eq!(status.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(status.restarts, 3);
    assert_eq!(backoff_ms(30), 60_000, "capped");
}

#[test]
fn a_missing_image_is_reported_and_retried_later_not_in_a_loop() {
    let p = pod(0, "nowhere:latest", RestartPolicy::Always);
    let mut book = Book::new();
    let actions = plan(NODE, ip(), std::slice::from_ref(&p), &[], &book, 0);
    record(
        &mut book,
        &actions[0],
        &Err(RuntimeError::ImageMissing("nowhere:latest".into())),
        &[],
        0,
    );
    assert!(
        plan(NODE, ip(), std::slice::from_ref(&p), &[], &book, 500).is_empty(),
        "waits"
    );
    assert_eq!(
        plan(NODE, ip(), std::slice::from_ref(&p), &[], &book, 1_000).len(),
        1,
        "retries"
    );
    let status = &pod_statuses(NODE, ip(), &[p], &[], &book, 500)[0];
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (Phase::Pending, Some("ErrImageNeverPull"))
    );
}
