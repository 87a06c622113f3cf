//! Unit tests of the desired-state document: genesis, apply/scale/delete, merge semantics.

use super::*;
use crate::manifest::parse_manifests;

pub(crate) fn talk_deployment(image: &str) -> Object {
    let text = format!(
        "kind: Deployment\nmetadata: {{name: nginx}}\nspec:\n  replicas: 3\n  template:\n    \
         metadata: {{labels: {{app: nginx}}}}\n    spec:\n      containers:\n      - {{name: nginx, \
         image: {image}, ports: [{{containerPort: 80}}]}}\n"
    );
    parse_manifests(&text).expect("valid").objects.remove(0)
}

fn peer(n: u8) -> DesiredState {
    DesiredState::new(ActorId::from([n; 16]))
}

/// Syncs two documents until neither has anything more to say.
fn sync_pair(a: &mut DesiredState, b: &mut DesiredState) {
    let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
    for _ in 0..20 {
        let ab = a.sync_message(&mut sa);
        let ba = b.sync_message(&mut sb);
        if ab.is_none() && ba.is_none() {
            return;
        }
        if let Some(m) = ab {
            b.receive_sync(&mut sb, &m).unwrap();
        }
        if let Some(m) = ba {
            a.receive_sync(&mut sa, &m).unwrap();
        }
    }
    panic!("sync did not settle in 20 rounds");
}

fn key() -> ObjectKey {
    ObjectKey::new("default", "nginx")
}

fn image(s: &mut DesiredState) -> String {
    s.snapshot().deployments[&key()].spec.template.containers[0]
        .image
        .clone()
}

#[test]
fn genesis_is_shared_so_independent_documents_merge_without_losing_keys() {
    let (mut a, mut b) = (peer(1), peer(2));
    assert_eq!(
        a.heads(),
        b.heads(),
        "fresh documents start from the same genesis"
    );
    a.apply(&talk_deployment("nginx")).unwrap();
    let mut svc = talk_deployment("x");
    if let Object::Deployment(d) = &mut svc {
        d.meta.name = "other".into();
    }
    b.apply(&svc).unwrap();
    sync_pair(&mut a, &mut b);
    assert_eq!(a.heads(), b.heads());
    let names: Vec<_> = a
        .snapshot()
        .deployments
        .keys()
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(names, ["nginx", "other"]);
    assert_eq!(a.snapshot(), b.snapshot());
}

#[test]
fn apply_create_update_unchanged_and_generation() {
    let mut a = peer(1);
    assert_eq!(
        a.apply(&talk_deployment("nginx")).unwrap(),
        Outcome::Created
    );
    assert_eq!(
        a.apply(&talk_deployment("nginx")).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(a.snapshot().deployments[&key()].meta.generation, 1);
    assert_eq!(
        a.apply(&talk_deployment("nginx:2")).unwrap(),
        Outcome::Configured
    );
    let d = &a.snapshot().deployments[&key()];
    assert_eq!(d.meta.generation, 2);
    assert_eq!(d.spec.template.containers[0].image, "nginx:2");
}

#[test]
fn scale_and_delete_report_missing_objects() {
    let mut a = peer(1);
    assert!(matches!(
        a.scale(&key(), 2),
        Err(StateError::NotFound { .. })
    ));
    assert!(matches!(
        a.delete(Kind::Deployment, &key()),
        Err(StateError::NotFound { .. })
    ));
    a.apply(&talk_deployment("nginx")).unwrap();
    assert_eq!(a.scale(&key(), 5).unwrap(), Outcome::Scaled);
    assert_eq!(a.scale(&key(), 5).unwrap(), Outcome::Unchanged);
    assert_eq!(a.snapshot().deployments[&key()].spec.replicas, 5);
    assert_eq!(
        a.delete(Kind::Deployment, &key()).unwrap(),
        Outcome::Deleted
    );
    assert!(a.snapshot().deployments.is_empty());
}

#[test]
fn concurrent_scale_and_image_change_both_survive() {
    let (mut a, mut b) = (peer(1), peer(2));
    a.apply(&talk_deployment("nginx")).unwrap();
    sync_pair(&mut a, &mut b);
    a.scale(&key(), 5).unwrap();
    b.apply(&talk_deployment("nginx:2")).unwrap();
    sync_pair(&mut a, &mut b);
    for s in [&mut a, &mut b] {
        let d = &s.snapshot().deployments[&key()];
        assert_eq!(d.spec.replicas, 5, "the scale survives");
        assert_eq!(
            d.spec.template.containers[0].image, "nginx:2",
            "the image change survives"
        );
        assert_eq!(d.meta.generation, 3, "each concurrent spec change counts");
    }
}

#[test]
fn delete_wins_over_a_concurrent_update_and_a_later_apply_recreates() {
    let (mut a, mut b) = (peer(1), peer(2));
    a.apply(&talk_deployment("nginx")).unwrap();
    sync_pair(&mut a, &mut b);
    a.delete(Kind::Deployment, &key()).unwrap();
    b.scale(&key(), 7).unwrap();
    b.apply(&talk_deployment("nginx:2")).unwrap();
    sync_pair(&mut a, &mut b);
    assert!(
        a.snapshot().deployments.is_empty(),
        "delete wins over concurrent updates"
    );
    assert_eq!(a.snapshot(), b.snapshot());
    b.apply(&talk_deployment("nginx:3")).unwrap();
    sync_pair(&mut a, &mut b);
    assert_eq!(image(&mut a), "nginx:3");
    assert_eq!(
        a.snapshot().deployments[&key()].meta.generation,
        1,
        "a new object"
    );
}

#[test]
fn an_object_has_one_uid_at_every_node_a_creation_time_and_a_new_uid_when_made_again() {
    let (mut a, mut b) = (peer(1), peer(2));
    a.set_time(1_700_000_000_000);
    a.apply(&talk_deployment("nginx")).unwrap();
    b.set_time(1_700_000_000_500);
    b.apply(&talk_deployment("nginx")).unwrap();
    sync_pair(&mut a, &mut b);
    let meta = |s: &mut DesiredState| s.snapshot().deployments[&key()].meta.clone();
    let first = meta(&mut a);
    assert_eq!(
        first.uid,
        meta(&mut b).uid,
        "two concurrent creations: one winner"
    );
    assert!(
        [1_700_000_000_000, 1_700_000_000_500].contains(&first.created_ms),
        "the winner's creation time, got {}",
        first.created_ms
    );
    let uuid = first.uid.as_bytes();
    assert_eq!(
        (first.uid.len(), uuid[14], uuid[8]),
        (36, b'8', b'-'),
        "{}",
        first.uid
    );
    b.set_time(1_700_000_001_000);
    b.apply(&talk_deployment("nginx:2")).unwrap();
    assert_eq!(meta(&mut b).uid, first.uid, "an update keeps the uid");
    assert_eq!(
        meta(&mut b).created_ms,
        first.created_ms,
        "and the creation time"
    );
    b.delete(Kind::Deployment, &key()).unwrap();
    b.apply(&talk_deployment("nginx")).unwrap();
    sync_pair(&mut a, &mut b);
    let again = meta(&mut a);
    assert_ne!(again.uid, first.uid, "made again: a new object");
    assert_eq!(
        (again.created_ms, meta(&mut b).uid),
        (1_700_000_001_000, again.uid)
    );
}

#[test]
fn deleting_a_namespace_deletes_what_is_in_it_and_nothing_else() {
    let text = "kind: Namespace\nmetadata: {name: team, labels: {a: b}}\n---\n\
                kind: Service\nmetadata: {name: web, namespace: team}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";
    let mut s = peer(1);
    for object in parse_manifests(text).expect("valid").objects {
        s.apply(&object).unwrap();
    }
    let mut in_team = talk_deployment("nginx");
    if let Object::Deployment(d) = &mut in_team {
        d.meta.namespace = "team".into();
    }
    s.apply(&in_team).unwrap();
    s.apply(&talk_deployment("nginx")).unwrap();
    let snapshot = s.snapshot();
    let team = ObjectKey::new("", "team");
    assert_eq!(snapshot.namespaces[&team].meta.labels["a"], "b");
    assert_eq!(
        (snapshot.deployments.len(), snapshot.services.len()),
        (2, 1)
    );
    assert_eq!(s.delete(Kind::Namespace, &team).unwrap(), Outcome::Deleted);
    let after = s.snapshot();
    assert!(after.namespaces.is_empty() && after.services.is_empty());
    assert_eq!(
        after.deployments.keys().collect::<Vec<_>>(),
        [&key()],
        "default's stays"
    );
    // A namespace no one made, holding objects, goes the same way; an empty one is not found.
    let default = ObjectKey::new("", "default");
    assert_eq!(
        s.delete(Kind::Namespace, &default).unwrap(),
        Outcome::Deleted
    );
    assert!(s.snapshot().deployments.is_empty());
    assert!(matches!(
        s.delete(Kind::Namespace, &default),
        Err(StateError::NotFound { .. })
    ));
}

/// Found by the convergence property test: a node sees a peer's object win over its own,
/// then in one sync learns that the peer deleted it and that a third node created one too.
/// Automerge 0.12's incremental diff reported that last step as a conflict only, not as a new
/// winning value; a snapshot kept by `refresh` must still show its own object again.
#[test]
fn refresh_sees_an_object_uncovered_by_a_delete() {
    let (mut first, mut own, mut winner) = (peer(1), peer(3), peer(4));
    let replicas = |doc: &mut DesiredState, n: u32| {
        let Object::Deployment(mut d) = talk_deployment("nginx") else {
            unreachable!()
        };
        d.spec.replicas = n;
        doc.apply(&Object::Deployment(d)).unwrap();
    };
    replicas(&mut own, 0);
    let mut view = own.snapshot();
    replicas(&mut winner, 2);
    own.doc.merge(&mut winner.doc).unwrap();
    own.refresh(&mut view);
    assert_eq!(view.deployments[&key()].spec.replicas, 2, "actor 4 wins");
    winner.delete(Kind::Deployment, &key()).unwrap();
    replicas(&mut first, 0);
    first.doc.merge(&mut winner.doc).unwrap();
    own.doc.merge(&mut first.doc).unwrap();
    own.refresh(&mut view);
    assert_eq!(view, own.snapshot());
    assert_eq!(view.deployments[&key()].spec.replicas, 0);
}

#[test]
fn save_load_and_incremental_save_round_trip() {
    let mut a = peer(1);
    a.apply(&talk_deployment("nginx")).unwrap();
    let mut file = a.save();
    a.scale(&key(), 4).unwrap();
    file.extend(a.save_incremental());
    a.apply(&talk_deployment("nginx:2")).unwrap();
    file.extend(a.save_incremental());
    let mut loaded = DesiredState::load(&file, ActorId::from([9; 16])).unwrap();
    assert_eq!(loaded.heads(), a.heads());
    assert_eq!(loaded.snapshot(), a.snapshot());
    loaded.scale(&key(), 1).unwrap();
    assert_eq!(loaded.snapshot().deployments[&key()].spec.replicas, 1);
}

#[test]
fn load_rejects_a_document_that_is_not_weeble_state() {
    let mut other = AutoCommit::new();
    other.put(ROOT, "hello", "world").unwrap();
    let err = DesiredState::load(&other.save(), ActorId::random()).unwrap_err();
    assert!(
        err.to_string().contains("not a Weeble state document"),
        "{err}"
    );
    assert!(DesiredState::load(b"garbage", ActorId::random()).is_err());
}

#[test]
fn bad_sync_message_is_an_error_not_a_panic() {
    let mut a = peer(1);
    let err = a
        .receive_sync(&mut PeerSync::default(), b"\x01\x02nonsense")
        .unwrap_err();
    assert!(matches!(err, StateError::BadSyncMessage(_)), "{err}");
}

#[test]
fn a_rolled_back_write_leaves_no_trace_in_the_document_its_saves_or_its_peers() {
    let mut a = peer(1);
    a.apply(&talk_deployment("nginx")).unwrap();
    let mut file = a.save();
    let before = a.heads();
    let saved = a.snapshot();
    a.scale(&key(), 7).unwrap();
    a.apply(&talk_deployment("nginx:refused")).unwrap();
    let mut forgotten = saved.clone();
    a.refresh(&mut forgotten);
    a.rollback(&before, ActorId::from([2; 16])).unwrap();
    assert_eq!(a.heads(), before);
    assert_eq!(a.snapshot(), saved);
    a.refresh(&mut forgotten);
    assert_eq!(
        forgotten, saved,
        "a snapshot of forgotten changes is read again whole"
    );
    assert!(a.save_incremental().is_empty(), "nothing new to save");
    let mut b = peer(3);
    sync_pair(&mut a, &mut b);
    assert_eq!(b.snapshot().deployments[&key()].spec.replicas, 3);
    assert_eq!(image(&mut b), "nginx");
    // Writing on after the rollback works, and the file stays whole.
    a.scale(&key(), 2).unwrap();
    file.extend(a.save_incremental());
    let mut loaded = DesiredState::load(&file, ActorId::from([9; 16])).unwrap();
    assert_eq!(loaded.snapshot(), a.snapshot());
    assert_eq!(image(&mut loaded), "nginx");
}

/// Runs sync rounds between `a` and `b` on their given states until both are quiet (true),
/// or for 20 rounds (false).
fn sync_with_states(
    a: &mut DesiredState,
    sa: &mut PeerSync,
    b: &mut DesiredState,
    sb: &mut PeerSync,
) -> bool {
    for _ in 0..20 {
        let ab = a.sync_message(sa);
        let ba = b.sync_message(sb);
        if ab.is_none() && ba.is_none() {
            return true;
        }
        if let Some(m) = ab {
            b.receive_sync(sb, &m).unwrap();
        }
        if let Some(m) = ba {
            a.receive_sync(sa, &m).unwrap();
        }
    }
    false
}

#[test]
fn a_node_that_rolled_back_a_received_change_gets_it_again_by_asking_for_a_resend() {
    for (resend, arrives) in [(true, true), (false, false)] {
        let (mut a, mut b) = (peer(1), peer(2));
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        assert!(sync_with_states(&mut a, &mut sa, &mut b, &mut sb));
        b.apply(&talk_deployment("nginx")).unwrap();
        a.save_incremental();
        let before = a.heads();
        let m = b.sync_message(&mut sb).unwrap();
        a.receive_sync(&mut sa, &m).unwrap();
        assert_ne!(a.heads(), before, "the change arrived");
        // It could not be persisted: undone, and the sync with b started over.
        a.rollback(&before, ActorId::from([3; 16])).unwrap();
        if resend {
            sa.ask_for_resend();
        } else {
            sa = PeerSync::default();
        }
        // Without the resend, `b` believes `a` has the change and never sends it again: the
        // two talk on without settling.
        let settled = sync_with_states(&mut a, &mut sa, &mut b, &mut sb);
        let got = a.snapshot().deployments.contains_key(&key());
        assert_eq!((settled, got), (arrives, arrives), "resend asked: {resend}");
    }
}

fn history(s: &mut DesiredState) -> (u64, Vec<(u64, String)>) {
    let d = s.snapshot().deployments[&key()].clone();
    let old = d.history.old.iter();
    let old = old.map(|r| (r.revision, r.template.containers[0].image.clone()));
    (d.history.revision, old.collect())
}

#[test]
fn a_template_change_keeps_the_old_one_numbered_and_undo_brings_it_back_as_the_next() {
    let mut a = peer(1);
    a.apply(&talk_deployment("v1")).unwrap();
    assert_eq!(history(&mut a), (1, vec![]));
    let mut v2 = talk_deployment("v2");
    if let Object::Deployment(d) = &mut v2 {
        d.meta
            .annotations
            .insert(CHANGE_CAUSE.into(), "to v2".into());
    }
    a.apply(&v2).unwrap();
    a.apply(&talk_deployment("v3")).unwrap();
    assert_eq!(
        history(&mut a),
        (3, vec![(1, "v1".into()), (2, "v2".into())])
    );
    let snapshot = a.snapshot();
    let d = &snapshot.deployments[&key()];
    assert_eq!(
        d.history.by_number(2).unwrap().change_cause.as_deref(),
        Some("to v2")
    );
    assert_eq!(
        d.history
            .by_hash(&d.history.old[0].template.hash())
            .unwrap()
            .revision,
        1
    );
    // A scale is no new revision.
    a.scale(&key(), 5).unwrap();
    assert_eq!(history(&mut a).0, 3);

    assert_eq!(a.undo(&key(), None).unwrap(), Outcome::RolledBack);
    assert_eq!(image(&mut a), "v2");
    assert_eq!(
        history(&mut a),
        (4, vec![(1, "v1".into()), (3, "v3".into())])
    );
    a.undo(&key(), Some(1)).unwrap();
    assert_eq!(image(&mut a), "v1");
    assert_eq!(
        history(&mut a),
        (5, vec![(3, "v3".into()), (4, "v2".into())])
    );
    let err = a.undo(&key(), Some(9)).unwrap_err().to_string();
    assert!(err.contains("no revision 9"), "{err}");
    // Applying an old manifest again is a rollback too.
    a.apply(&talk_deployment("v3")).unwrap();
    assert_eq!(
        history(&mut a),
        (6, vec![(4, "v2".into()), (5, "v1".into())])
    );
}

#[test]
fn old_revisions_past_the_limit_go_and_restart_pause_and_resume_are_recorded() {
    let mut a = peer(1);
    let with_limit = |image: &str| {
        let mut o = talk_deployment(image);
        if let Object::Deployment(d) = &mut o {
            d.spec.revision_history_limit = 2;
        }
        o
    };
    for image in ["v1", "v2", "v3", "v4"] {
        a.apply(&with_limit(image)).unwrap();
    }
    assert_eq!(
        history(&mut a),
        (4, vec![(2, "v2".into()), (3, "v3".into())])
    );
    assert_eq!(
        a.restart(&key(), "2026-12-06T15:00:00Z").unwrap(),
        Outcome::Restarted
    );
    let snapshot = a.snapshot();
    let d = &snapshot.deployments[&key()];
    assert_eq!(d.history.revision, 5);
    assert_eq!(
        d.spec.template.annotations[RESTARTED_AT],
        "2026-12-06T15:00:00Z"
    );
    assert_eq!(d.spec.template.containers[0].image, "v4");
    // A deployment never paused reads as running: resuming it changes nothing.
    assert_eq!(a.pause(&key(), false).unwrap(), Outcome::Unchanged);
    assert_eq!(a.pause(&key(), true).unwrap(), Outcome::Paused);
    assert_eq!(a.pause(&key(), true).unwrap(), Outcome::Unchanged);
    assert!(a.snapshot().deployments[&key()].spec.is_paused());
    // An apply that does not say leaves it paused; one that says `paused: false` resumes.
    a.apply(&with_limit("v5")).unwrap();
    assert!(a.snapshot().deployments[&key()].spec.is_paused());
    let mut resume = with_limit("v5");
    if let Object::Deployment(d) = &mut resume {
        d.spec.paused = Some(false);
    }
    a.apply(&resume).unwrap();
    assert!(!a.snapshot().deployments[&key()].spec.is_paused());
    a.pause(&key(), true).unwrap();
    assert_eq!(a.pause(&key(), false).unwrap(), Outcome::Resumed);
    assert!(!a.snapshot().deployments[&key()].spec.is_paused());
}

#[test]
fn two_concurrent_template_changes_keep_one_winner_and_the_template_both_replaced() {
    let (mut a, mut b) = (peer(1), peer(2));
    a.apply(&talk_deployment("v1")).unwrap();
    sync_pair(&mut a, &mut b);
    a.apply(&talk_deployment("from-a")).unwrap();
    b.apply(&talk_deployment("from-b")).unwrap();
    sync_pair(&mut a, &mut b);
    let (ha, hb) = (history(&mut a), history(&mut b));
    assert_eq!(ha, hb, "one result on both peers");
    assert_eq!(ha, (2, vec![(1, "v1".into())]));
    assert_eq!(image(&mut a), image(&mut b));
}

#[test]
fn a_revert_happens_once_says_why_and_is_forgotten_at_the_next_change() {
    let mut a = peer(1);
    a.set_time(1_000);
    a.apply(&talk_deployment("good")).unwrap();
    a.set_time(2_000);
    a.apply(&talk_deployment("broken")).unwrap();
    let broken = a.snapshot().deployments[&key()].spec.template.hash();
    assert_eq!(a.snapshot().deployments[&key()].history.changed_ms, 2_000);
    a.set_time(3_000);
    let why = "ProgressDeadlineExceeded: ErrImageNeverPull";
    assert_eq!(
        a.revert(&key(), &broken, 1, why).unwrap(),
        Outcome::RolledBack
    );
    // Asked again (another node saw it too): the template is no longer the broken one.
    assert_eq!(
        a.revert(&key(), &broken, 1, why).unwrap(),
        Outcome::Unchanged
    );
    let d = a.snapshot().deployments[&key()].clone();
    assert_eq!(d.spec.template.containers[0].image, "good");
    assert_eq!((d.history.revision, d.history.changed_ms), (3, 3_000));
    let reverted = d.history.reverted.clone().expect("the revert is recorded");
    assert_eq!(
        (reverted.from, reverted.to, reverted.reason.as_str()),
        (2, 1, why)
    );
    a.apply(&talk_deployment("fixed")).unwrap();
    assert_eq!(a.snapshot().deployments[&key()].history.reverted, None);
}

#[test]
fn fields_at_their_defaults_are_not_written_and_read_back_alike() {
    let mut a = peer(1);
    a.apply(&talk_deployment("v1")).unwrap();
    let root = a
        .doc
        .get(ROOT, root_key(Kind::Deployment, &key()))
        .unwrap()
        .unwrap()
        .1;
    let keys: Vec<String> = a.doc.keys(&root).collect();
    for unwritten in ["minReadySeconds", "paused", "annotations", "revision"] {
        assert!(
            !keys.contains(&unwritten.to_string()),
            "{unwritten} in {keys:?}"
        );
    }
    let mut slow = talk_deployment("v1");
    if let Object::Deployment(d) = &mut slow {
        d.spec.min_ready_seconds = 5;
    }
    assert_eq!(a.apply(&slow).unwrap(), Outcome::Configured);
    assert_eq!(a.snapshot().deployments[&key()].spec.min_ready_seconds, 5);
    assert_eq!(
        a.apply(&talk_deployment("v1")).unwrap(),
        Outcome::Configured
    );
    let d = a.snapshot().deployments[&key()].clone();
    assert_eq!(
        (d.spec.min_ready_seconds, d.spec.progress_deadline_seconds),
        (0, 600)
    );
    assert_eq!(a.apply(&talk_deployment("v1")).unwrap(), Outcome::Unchanged);
}

/// What the `state_file` fuzz target found (`fuzz/corpus/state_file/regression-*`): a
/// document that made automerge's column reader panic, and a bundle whose run lengths asked
/// for gigabytes. Both are a document that does not load, not a crash.
#[test]
fn a_crafted_state_document_is_an_error_not_a_crash() {
    let found = |name: &str| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/state_file");
        std::fs::read(format!("{dir}/{name}")).unwrap()
    };
    let err = DesiredState::load(&found("regression-bundle"), ActorId::random()).unwrap_err();
    assert!(err.to_string().contains("a bundle"), "{err}");
    let err = DesiredState::load(&found("regression-hexane-panic"), ActorId::random());
    assert!(err.is_err());
    // A document as Weeble saves it still loads.
    let mut a = peer(1);
    a.apply(&talk_deployment("nginx")).unwrap();
    assert!(DesiredState::load(&a.save(), ActorId::random()).is_ok());
}

/// The admission list: open until a peer is allowed, then only the allowed; a denied peer is
/// out either way. It travels by sync like any object, and a refreshed snapshot reads it as
/// a whole one does.
#[test]
fn peers_allowed_and_denied_travel_and_close_the_cluster() {
    let (mut a, mut b) = (peer(1), peer(2));
    let mut seen = b.snapshot();
    assert!(
        seen.peers.admits("x") && !seen.peers.is_closed(),
        "open at first"
    );
    let out = a.admit(&["bad".into()], Admission::Denied).unwrap();
    assert_eq!(out, [Outcome::Denied]);
    sync_pair(&mut a, &mut b);
    b.refresh(&mut seen);
    assert!(
        !seen.peers.admits("bad") && seen.peers.admits("x"),
        "denied, still open"
    );
    let peers = ["x".to_string(), "y".to_string()];
    assert_eq!(
        a.admit(&peers, Admission::Allowed).unwrap(),
        [Outcome::Allowed; 2]
    );
    assert_eq!(
        a.admit(&peers, Admission::Allowed).unwrap(),
        [Outcome::Unchanged; 2]
    );
    sync_pair(&mut a, &mut b);
    b.refresh(&mut seen);
    assert!(seen.peers.is_closed());
    assert!(seen.peers.admits("x") && seen.peers.admits("y") && !seen.peers.admits("z"));
    b.admit(&["y".into()], Admission::Denied).unwrap();
    b.refresh(&mut seen);
    assert!(!seen.peers.admits("y"));
    assert_eq!(seen, b.snapshot(), "a refresh reads what a whole read does");
    sync_pair(&mut a, &mut b);
    assert_eq!(a.snapshot().peers, b.snapshot().peers);
}

#[test]
fn a_pushed_image_reaches_every_copy_and_names_the_nodes_it_is_for() {
    let (mut a, mut b) = (peer(1), peer(2));
    let mut seen = b.snapshot();
    let image = PushedImage {
        id: format!("sha256:{}", "ab".repeat(32)),
        nodes: vec!["n2".into()],
        seed: "n1".into(),
    };
    let name = "127.0.0.1:5000/team/web:1";
    assert_eq!(a.push_image(name, &image).unwrap(), Outcome::Created);
    assert_eq!(a.push_image(name, &image).unwrap(), Outcome::Unchanged);
    sync_pair(&mut a, &mut b);
    b.refresh(&mut seen);
    let got = &seen.images[name];
    assert_eq!(got, &image);
    assert!(got.is_for("n1") && got.is_for("n2") && !got.is_for("n3"));
    let everywhere = PushedImage {
        nodes: vec![],
        ..image
    };
    assert!(everywhere.is_for("n3"));
    assert_eq!(
        b.push_image(name, &everywhere).unwrap(),
        Outcome::Configured
    );
    b.refresh(&mut seen);
    assert_eq!(seen, b.snapshot(), "a refresh reads what a whole read does");
    sync_pair(&mut a, &mut b);
    assert_eq!(a.snapshot().images[name], everywhere);
    // An id that is not one, from a broken or hostile peer, is not read.
    let hostile = PushedImage {
        id: "../../etc/passwd".into(),
        ..everywhere
    };
    a.push_image("evil:1", &hostile).unwrap();
    let read = a.snapshot();
    assert!(!read.images.contains_key("evil:1"));
    assert!(
        read.unreadable
            .iter()
            .any(|u| u.starts_with("images/evil:1: "))
    );
}
