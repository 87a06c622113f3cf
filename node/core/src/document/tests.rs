//! The document on an in-test file whose space can run out: persist before send, rollback,
//! the queue behind a persist, compaction and the retry.

use super::*;
use weeble_crdt::parse_manifests;

fn deployment(name: &str) -> Object {
    let text = format!(
        "kind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - \
         {{name: c, image: img}}\n"
    );
    parse_manifests(&text).expect("valid").objects.remove(0)
}

fn member(i: u8) -> MemberId {
    MemberId::test(i.into())
}

/// A file as a disk holds it: appends past `capacity` tear and are cut off (unless
/// `cut_fails`), replacements past it fail and leave the old file.
#[derive(Default)]
struct File {
    bytes: Vec<u8>,
    capacity: Option<usize>,
    cut_fails: bool,
}

impl File {
    fn room(&self, len: usize) -> bool {
        self.capacity.is_none_or(|c| len <= c)
    }

    fn carry(&mut self, persist: &Persist) -> Result<(), PersistFailure> {
        let full = |torn| PersistFailure {
            why: "No space left on device".into(),
            torn,
        };
        match persist {
            Persist::Append { frame, whole } => {
                assert_eq!(
                    *whole as usize,
                    self.bytes.len(),
                    "the file's length is known"
                );
                if self.room(self.bytes.len() + frame.len()) {
                    self.bytes.extend(frame);
                    return Ok(());
                }
                self.bytes.extend(&frame[..frame.len() / 2]);
                if self.cut_fails {
                    return Err(full(true));
                }
                self.bytes.truncate(*whole as usize);
                Err(full(false))
            }
            Persist::Replace(bytes) if self.room(bytes.len()) => {
                self.bytes = bytes.clone();
                Ok(())
            }
            Persist::Replace(_) => Err(full(false)),
        }
    }

    /// The names of the deployments the file loads as (with no torn frame).
    fn names(&self) -> Vec<String> {
        let mut loaded = load(Some(&self.bytes), ActorId::from([9; 16])).unwrap();
        assert_eq!(loaded.torn, 0, "no torn frame");
        names(&loaded.state.snapshot())
    }
}

fn names(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .deployments
        .keys()
        .map(|k| k.name.clone())
        .collect()
}

/// A document on `file`, and the effects of its last step.
struct Node {
    i: u8,
    doc: Document,
    file: File,
    peers: Peers,
}

impl Node {
    fn new(i: u8) -> Self {
        let mut state = DesiredState::new(ActorId::from([i + 1; 16]));
        let bytes = journal::file(&state.save());
        let stored = Stored {
            state,
            len: bytes.len() as u64,
            failing: None,
        };
        Node {
            i,
            doc: Document::new(stored, 3, 2, i as u64),
            file: File {
                bytes,
                ..File::default()
            },
            peers: Peers::of([member(i + 1), member(i + 2)]),
        }
    }

    /// A node that pushes its changes to no peer (the tests run its exchanges).
    fn alone(i: u8) -> Self {
        Node {
            peers: Peers::default(),
            ..Node::new(i)
        }
    }

    /// Carries out every persist among `effects` (and those that follow from it), and
    /// returns the rest.
    fn settle(&mut self, mut effects: Vec<DocEffect>) -> Vec<DocEffect> {
        let mut rest = Vec::new();
        while !effects.is_empty() {
            let mut more = Vec::new();
            for effect in effects {
                match effect {
                    DocEffect::Persist(p) => {
                        let result = self.file.carry(&p);
                        self.doc.persisted(result, &self.peers, &mut more);
                    }
                    other => rest.push(other),
                }
            }
            effects = more;
        }
        rest
    }

    fn write(&mut self, id: u64, name: &str) -> Vec<DocEffect> {
        let mut out = Vec::new();
        let op = Op::Apply(vec![deployment(name)]);
        self.doc.write(id, op, 0, &self.peers.clone(), &mut out);
        self.settle(out)
    }
}

fn written(effects: &[DocEffect], id: u64) -> &Result<Vec<Outcome>, WriteError> {
    effects
        .iter()
        .find_map(|e| match e {
            DocEffect::Written { id: i, result } if *i == id => Some(result),
            _ => None,
        })
        .expect("the write is answered")
}

#[test]
fn a_write_that_cannot_be_persisted_is_refused_undone_and_reported() {
    let mut node = Node::new(0);
    let kept = node.write(1, "kept");
    assert_eq!(written(&kept, 1), &Ok(vec![Outcome::Created]));
    let file_before = node.file.bytes.clone();
    // Full: the append of the next frame tears, and is cut off.
    node.file.capacity = Some(file_before.len() + 10);
    let refused = node.write(2, "refused");
    assert!(
        matches!(written(&refused, 2), Err(WriteError::NotPersisted(why)) if why.contains("No space")),
        "{refused:?}"
    );
    assert!(
        !refused.iter().any(|e| matches!(e, DocEffect::Changed(_))),
        "nothing published"
    );
    assert!(refused.contains_retry());
    assert_eq!(names(node.doc.snapshot()), ["kept"]);
    assert_eq!(names(&node.doc.state.snapshot()), ["kept"], "no trace");
    assert_eq!(node.file.bytes, file_before, "the torn append is cut off");
    assert!(node.doc.failing().unwrap().contains("No space"));

    // Space again: the next write goes through and clears the report.
    node.file.capacity = None;
    let accepted = node.write(3, "accepted");
    assert!(written(&accepted, 3).is_ok());
    assert_eq!(node.doc.failing(), None);
    assert_eq!(names(node.doc.snapshot()), ["accepted", "kept"]);
    assert_eq!(
        node.file.names(),
        ["accepted", "kept"],
        "the refused write is not on disk"
    );
}

trait Effects {
    fn contains_retry(&self) -> bool;
}

impl Effects for Vec<DocEffect> {
    fn contains_retry(&self) -> bool {
        self.iter()
            .any(|e| matches!(e, DocEffect::RetryIn(d) if *d == RETRY_PERSIST))
    }
}

#[test]
fn a_failed_append_that_cannot_be_cut_off_makes_the_next_change_rewrite_the_file() {
    let mut node = Node::new(0);
    node.file.capacity = Some(node.file.bytes.len() + 10);
    node.file.cut_fails = true;
    assert!(written(&node.write(1, "refused"), 1).is_err());
    assert!(node.doc.file.rewrite, "the torn append stays: rewrite next");
    node.file.capacity = None;
    let mut out = Vec::new();
    node.doc.write(
        2,
        Op::Apply(vec![deployment("accepted")]),
        0,
        &Peers::default(),
        &mut out,
    );
    assert!(
        matches!(&out[..], [DocEffect::Persist(Persist::Replace(_))]),
        "{out:?}"
    );
    node.settle(out);
    assert!(!node.doc.file.rewrite);
    assert_eq!(node.file.names(), ["accepted"]);
}

#[test]
fn a_sync_that_brings_a_change_is_answered_only_once_it_is_on_disk() {
    let (mut a, mut b) = (Node::alone(0), Node::alone(1));
    a.write(1, "web");
    // a begins an exchange with b, as a digest that differs would make it.
    let mut out = Vec::new();
    a.doc.differs(&member(1), &Peers::of([member(1)]), &mut out);
    let Some(DocEffect::Send { message, .. }) = out.pop() else {
        panic!("a sends: {out:?}");
    };
    let mut answers = Vec::new();
    // The first round carries heads only; go on until b's answer waits for its disk.
    let mut message = message;
    for _ in 0..MAX_ROUNDS {
        let mut out = Vec::new();
        b.doc.request(
            7,
            member(0).peer_id.clone(),
            message,
            &Peers::default(),
            &mut out,
        );
        if let [DocEffect::Persist(_)] = &out[..] {
            answers = out;
            break;
        }
        let [
            DocEffect::Answer {
                answer: Ok(Some(reply)),
                ..
            },
        ] = &out[..]
        else {
            panic!("b answers at once when nothing changed: {out:?}");
        };
        let mut out = Vec::new();
        a.doc.reply(
            member(1).peer_id.clone(),
            Ok(Some(reply.clone())),
            &Peers::default(),
            &mut out,
        );
        let Some(DocEffect::Send { message: next, .. }) = out.pop() else {
            panic!("a goes on: {out:?}");
        };
        message = next;
    }
    assert!(
        !answers.is_empty(),
        "b's change goes to disk before it answers"
    );
    // While the persist is out, b's document waits: a write is queued.
    let mut out = Vec::new();
    b.doc.write(
        8,
        Op::Apply(vec![deployment("later")]),
        0,
        &Peers::default(),
        &mut out,
    );
    assert!(out.is_empty(), "queued behind the persist: {out:?}");
    let Some(DocEffect::Persist(p)) = answers.pop() else {
        unreachable!()
    };
    let result = b.file.carry(&p);
    let mut out = Vec::new();
    b.doc.persisted(result, &Peers::default(), &mut out);
    let answer = out.iter().position(|e| {
        matches!(
            e,
            DocEffect::Answer {
                id: 7,
                answer: Ok(_)
            }
        )
    });
    let changed = out.iter().position(|e| matches!(e, DocEffect::Changed(_)));
    assert!(answer.is_some() && changed.is_some(), "{out:?}");
    assert!(
        matches!(out.last(), Some(DocEffect::Persist(_))),
        "then the queued write runs: {out:?}"
    );
    let rest = b.settle(out);
    assert!(written(&rest, 8).is_ok(), "the write is answered: {rest:?}");
    assert_eq!(b.file.names(), ["later", "web"]);
}

/// `a` sends `b` a change that `b`'s full disk refuses (`a` does not hear of it), then `b`'s
/// disk has room again.
fn refused_by_a_full_disk() -> (Node, Node) {
    let (mut a, mut b) = (Node::alone(0), Node::alone(1));
    a.write(1, "web");
    b.file.capacity = Some(b.file.bytes.len());
    let mut out = Vec::new();
    a.doc.differs(&member(1), &Peers::of([member(1)]), &mut out);
    let mut message = match out.pop() {
        Some(DocEffect::Send { message, .. }) => message,
        other => panic!("{other:?}"),
    };
    let mut refused = None;
    for _ in 0..MAX_ROUNDS {
        let mut out = Vec::new();
        b.doc.request(
            7,
            member(0).peer_id.clone(),
            message.clone(),
            &Peers::default(),
            &mut out,
        );
        let out = b.settle(out);
        match &out[..] {
            [
                DocEffect::Answer {
                    answer: Ok(Some(reply)),
                    ..
                },
            ] => {
                let mut next = Vec::new();
                a.doc.reply(
                    member(1).peer_id.clone(),
                    Ok(Some(reply.clone())),
                    &Peers::default(),
                    &mut next,
                );
                match next.pop() {
                    Some(DocEffect::Send { message: m, .. }) => message = m,
                    other => panic!("{other:?}"),
                }
            }
            _ => {
                refused = Some(out);
                break;
            }
        }
    }
    let refused = refused.expect("b's disk is full");
    assert!(
        refused.iter().any(|e| matches!(e, DocEffect::Answer { id: 7, answer: Err(why) } if why.contains("No space"))),
        "{refused:?}"
    );
    assert!(names(&b.doc.state.snapshot()).is_empty(), "no trace at b");
    assert!(b.doc.failing().is_some());

    // The disk has room again: b retries, and the next exchange brings the change.
    b.file.capacity = None;
    let mut out = Vec::new();
    b.doc.retry(&mut out);
    b.settle(out);
    assert_eq!(b.doc.failing(), None, "the retry cleared the report");
    (a, b)
}

#[test]
fn a_sync_that_cannot_be_persisted_is_refused_and_the_peers_asked_to_resend() {
    let (mut a, mut b) = refused_by_a_full_disk();
    // a has not heard of the refusal and believes b holds its change; b's next message asks
    // it to send again.
    sync(&mut b, &mut a);
    assert_eq!(names(b.doc.snapshot()), ["web"]);
    assert_eq!(b.file.names(), ["web"]);
}

#[test]
fn a_peer_met_anew_after_a_rollback_is_asked_to_resend() {
    let (mut a, mut b) = refused_by_a_full_disk();
    // b syncs with as many other peers as it keeps the progress of: a's is dropped.
    for i in 2..2 + MAX_SYNC_PEERS as u8 {
        sync(&mut b, &mut Node::alone(i));
    }
    assert!(!b.doc.peers.by_peer.contains_key(&member(0).peer_id));
    sync(&mut b, &mut a);
    assert_eq!(names(b.doc.snapshot()), ["web"], "a sent it again");
}

/// A whole exchange begun by `a` with `b`; every persist lands.
fn sync(a: &mut Node, b: &mut Node) {
    let mut out = Vec::new();
    let (a_id, b_member) = (member(a.i).peer_id.clone(), member(b.i));
    let b_id = b_member.peer_id.clone();
    a.doc.differs(&b_member, &Peers::default(), &mut out);
    let mut out = a.settle(out);
    for _ in 0..=MAX_ROUNDS {
        let Some(DocEffect::Send { message, .. }) = out.pop() else {
            return;
        };
        let mut answered = Vec::new();
        b.doc
            .request(1, a_id.clone(), message, &Peers::default(), &mut answered);
        let reply = b.settle(answered).into_iter().find_map(|e| match e {
            DocEffect::Answer { answer, .. } => Some(answer),
            _ => None,
        });
        let mut next = Vec::new();
        a.doc.reply(
            b_id.clone(),
            reply.expect("answered"),
            &Peers::default(),
            &mut next,
        );
        out = a.settle(next);
    }
    panic!("the exchange did not end within {MAX_ROUNDS} rounds");
}

#[test]
fn jobs_past_the_queue_s_bound_are_refused() {
    let mut node = Node::new(0);
    let mut out = Vec::new();
    for id in 0..=MAX_WAITING as u64 + 1 {
        let op = Op::Apply(vec![deployment(&format!("d{id}"))]);
        node.doc.write(id, op, 0, &Peers::default(), &mut out);
    }
    let busy: Vec<_> = out
        .iter()
        .filter(|e| {
            matches!(
                e,
                DocEffect::Written {
                    result: Err(WriteError::Busy),
                    ..
                }
            )
        })
        .collect();
    assert_eq!(busy.len(), 1, "one write past the queue's bound");
    assert_eq!(out.len(), 2, "the first write's persist, and the refusal");
}

#[test]
fn a_long_file_is_rewritten_whole_and_loads_the_same() {
    let mut node = Node::alone(0);
    let rewritten = (0..5_000).find(|&i| {
        let before = node.file.bytes.len();
        node.write(i, &format!("deployment-{i}"));
        node.file.bytes.len() < before
    });
    let last = rewritten.expect("the file is rewritten once it grows long");
    assert_eq!(
        node.file.names().len() as u64,
        last + 1,
        "every write in it"
    );
    assert_eq!(node.doc.file.appended, 0);
    assert_eq!(node.doc.file.len, node.file.bytes.len() as u64);
}

#[test]
fn a_node_that_starts_unable_to_persist_retries_until_it_can() {
    let mut state = DesiredState::new(ActorId::from([1; 16]));
    let stored = Stored {
        state: DesiredState::load(&state.save(), ActorId::from([2; 16])).unwrap(),
        len: 0,
        failing: Some("No space left on device".into()),
    };
    let mut node = Node {
        i: 0,
        doc: Document::new(stored, 3, 2, 0),
        file: File {
            capacity: Some(0),
            ..File::default()
        },
        peers: Peers::default(),
    };
    let mut out = Vec::new();
    node.doc.start(&mut out);
    assert!(out.contains_retry());
    let mut out = Vec::new();
    node.doc.retry(&mut out);
    let out = node.settle(out);
    assert!(out.contains_retry(), "failed again: once more later");
    assert!(node.doc.failing().is_some());
    node.file.capacity = None;
    let mut out = Vec::new();
    node.doc.retry(&mut out);
    assert!(node.settle(out).is_empty());
    assert_eq!(node.doc.failing(), None);
    assert!(
        node.file.names().is_empty(),
        "the file holds the (empty) document"
    );
}

#[test]
fn a_node_keeps_the_sync_progress_of_its_last_peers_only_and_still_syncs_with_the_others() {
    let mut hub = Node::alone(0);
    let mut others: Vec<Node> = (1..=MAX_SYNC_PEERS as u8 + 4).map(Node::alone).collect();
    hub.write(1, "web");
    for other in &mut others {
        sync(&mut hub, other);
        assert_eq!(names(other.doc.snapshot()), ["web"]);
    }
    assert_eq!(
        hub.doc.peers.by_peer.len(),
        MAX_SYNC_PEERS,
        "the last ones kept"
    );
    let first = member(others[0].i).peer_id.clone();
    assert!(
        !hub.doc.peers.by_peer.contains_key(&first),
        "the first dropped"
    );
    // The first one, whose progress the hub dropped, writes; the hub pulls it anew, then
    // pushes its own next change to it.
    others[0].write(2, "api");
    sync(&mut others[0], &mut hub);
    assert_eq!(names(hub.doc.snapshot()), ["api", "web"]);
    hub.write(3, "db");
    sync(&mut hub, &mut others[0]);
    assert_eq!(names(others[0].doc.snapshot()), ["api", "db", "web"]);
    assert_eq!(hub.doc.peers.by_peer.len(), MAX_SYNC_PEERS);
}
