//! A fetch between in-memory engines over the in-memory transport: holders that serve from
//! their shelves (or lie, or stop halfway), and a fetcher that must end with the image.

use super::fetch::fetch;
use super::pull::Puller;
use super::shelf::Shelf;
use super::tarball;
use crate::membership::{MemberId, MemberInfo};
use crate::runtime::ContainerRuntime;
use crate::runtime::memory::{Call, MemoryRuntime};
use crate::transport::memory::{MemoryTransport, Switchboard};
use crate::transport::{ImagePart, Inbound, LocalDigest, NetEvent, Response};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use weeble_core::images::Holder;
use weeble_core::reconcile::pulls::ImagePull;

const IMAGE: &str = "app:v1";

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9700 + u16::from(i)))
}

fn member(i: u8) -> MemberId {
    MemberId::from(MemberInfo {
        name: format!("h{i}"),
        peer_id: format!("peer-{i}"),
        p2p: addr(i),
        api: addr(i),
        labels: Default::default(),
        capacity: Default::default(),
        max_pods: 0,
        bump: 0,
    })
}

/// A test's directory, removed when it is dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let name = format!("weeble-images-{}-{test}", std::process::id());
        Dir(std::env::temp_dir().join(name))
    }

    /// Node `i`'s images directory: the fetcher's is 0's.
    fn of(&self, i: u8) -> PathBuf {
        let dir = self.0.join(format!("node-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The offsets each holder was asked for, by holder.
type Asked = Arc<Mutex<Vec<(u8, u64)>>>;

/// Holder `i` on `board`: it answers from its shelf over `runtime`, the first `parts` parts
/// it is asked for at most (then it is gone: its line stays, unanswered).
fn holder(dir: &Dir, board: &Switchboard, i: u8, runtime: MemoryRuntime, parts: u64, asked: Asked) {
    let (_, mut events) = board.attach(addr(i), format!("peer-{i}"), Arc::default());
    let shelf = Shelf::new(runtime, dir.of(i), None).unwrap();
    let served = AtomicU64::new(0);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let NetEvent::Request {
                request: Inbound::Image { id, offset, len },
                reply,
                ..
            } = event
            else {
                continue;
            };
            let part = shelf.part("fetcher", &id, offset, len).await;
            if matches!(part, ImagePart::Bytes { .. }) {
                asked.lock().unwrap().push((i, offset));
                if served.fetch_add(1, Ordering::Relaxed) >= parts {
                    return;
                }
            }
            let _ = reply.send(Response::Image(part));
        }
    });
}

/// Holders `hs` of image `id`.
fn holders_of(hs: &[u8], id: &str) -> Vec<Holder> {
    let holder = |&i: &u8| Holder {
        member: member(i),
        id: id.to_string(),
    };
    hs.iter().map(holder).collect()
}

fn fetcher(board: &Switchboard) -> MemoryTransport {
    board
        .attach(addr(0), "peer-0".into(), Arc::new(LocalDigest::default()))
        .0
}

/// A pull of `IMAGE`, as a pod's.
fn pull() -> ImagePull {
    ImagePull {
        image: IMAGE.into(),
        pushed: None,
    }
}

/// An engine with `IMAGE`, large enough to take several parts.
fn engine_with_image() -> (MemoryRuntime, String) {
    let runtime = MemoryRuntime::new();
    runtime.add_image_of_size(IMAGE, 1_500_000);
    let id = futures::executor::block_on(runtime.image_id(IMAGE))
        .unwrap()
        .unwrap();
    (runtime, id)
}

#[tokio::test]
async fn an_image_comes_from_a_peer_verified_and_named_as_asked() {
    let (board, dir) = (Switchboard::default(), Dir::new("fetched"));
    let (source, id) = engine_with_image();
    let asked = Asked::default();
    holder(&dir, &board, 1, source, u64::MAX, asked.clone());
    let (transport, engine) = (fetcher(&board), MemoryRuntime::new());
    let holders = holders_of(&[1], &id);
    let work = dir.of(0);
    fetch(&transport, &engine, &work, &pull(), &|| holders.to_vec())
        .await
        .unwrap();
    assert_eq!(engine.image_id(IMAGE).await.unwrap(), Some(id));
    assert!(asked.lock().unwrap().len() >= 2, "one part only: {asked:?}");
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(left.is_empty(), "the tar is deleted once loaded: {left:?}");
}

#[tokio::test]
async fn a_holder_gone_halfway_is_followed_by_the_next_from_where_it_stopped() {
    let (board, dir) = (Switchboard::default(), Dir::new("resumed"));
    let (source, id) = engine_with_image();
    let asked = Asked::default();
    holder(&dir, &board, 1, source.clone(), 2, asked.clone());
    holder(&dir, &board, 2, source, u64::MAX, asked.clone());
    let (transport, engine) = (fetcher(&board), MemoryRuntime::new());
    let holders = holders_of(&[1, 2], &id);
    let work = dir.of(0);
    fetch(&transport, &engine, &work, &pull(), &|| holders.to_vec())
        .await
        .unwrap();
    assert_eq!(engine.image_id(IMAGE).await.unwrap(), Some(id));
    let asked = asked.lock().unwrap().clone();
    let first_of_2 = asked.iter().find(|(h, _)| *h == 2).expect("h2 served");
    assert!(first_of_2.1 > 0, "h2 began again at 0: {asked:?}");
}

#[tokio::test]
async fn a_tar_that_is_not_the_image_is_refused_and_nothing_is_named() {
    let (board, dir) = (Switchboard::default(), Dir::new("lied"));
    let (_, id) = engine_with_image();
    // A holder that sends another image's tar, with that tar's own hash.
    let (_, mut events) = board.attach(addr(1), "peer-1".into(), Arc::default());
    let lie = tarball::write(br#"{"architecture":"evil"}"#, &[]);
    let sha256 = tarball::hex(&<sha2::Sha256 as sha2::Digest>::digest(&lie));
    tokio::spawn(async move {
        while let Some(NetEvent::Request { reply, .. }) = events.recv().await {
            let part = ImagePart::Bytes {
                size: lie.len() as u64,
                sha256: sha256.clone(),
                bytes: lie.clone(),
            };
            let _ = reply.send(Response::Image(part));
        }
    });
    let (transport, engine) = (fetcher(&board), MemoryRuntime::new());
    let holders = holders_of(&[1], &id);
    let work = dir.of(0);
    let why = fetch(&transport, &engine, &work, &pull(), &|| holders.to_vec())
        .await
        .unwrap_err();
    assert!(
        why.contains("refused") && why.contains("its config is"),
        "{why}"
    );
    assert_eq!(engine.image_id(IMAGE).await.unwrap(), None);
}

#[tokio::test]
async fn every_holder_failing_says_why_for_each() {
    let (board, dir) = (Switchboard::default(), Dir::new("failed"));
    let (_, id) = engine_with_image();
    // h1 holds nothing: its shelf's engine lacks the image.
    holder(
        &dir,
        &board,
        1,
        MemoryRuntime::new(),
        u64::MAX,
        Asked::default(),
    );
    let (transport, engine) = (fetcher(&board), MemoryRuntime::new());
    let holders = holders_of(&[1, 3], &id);
    let work = dir.of(0);
    let why = fetch(&transport, &engine, &work, &pull(), &|| holders.to_vec())
        .await
        .unwrap_err();
    assert!(
        why.contains("h1: ") && why.contains("no such image"),
        "{why}"
    );
    assert!(why.contains("h3: ") && why.contains("unreachable"), "{why}");
}

#[tokio::test]
async fn a_holder_sends_to_two_peers_at_once_and_a_third_is_told_it_is_busy() {
    let dir = Dir::new("busy");
    let (source, id) = engine_with_image();
    let shelf = Shelf::new(source, dir.of(1), None).unwrap();
    let part = |from: &'static str, offset: u64, len: u32| {
        let (shelf, id) = (shelf.clone(), id.clone());
        async move { shelf.part(from, &id, offset, len).await }
    };
    // The tar is written out first (the answer meanwhile: Preparing).
    let size = loop {
        match part("a", 0, 16).await {
            ImagePart::Bytes { size, .. } => break size,
            ImagePart::Preparing => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            other => panic!("{other:?}"),
        }
    };
    assert!(matches!(part("b", 0, 16).await, ImagePart::Bytes { .. }));
    assert!(matches!(part("c", 0, 16).await, ImagePart::Busy(_)));
    assert!(
        matches!(part("a", 16, 16).await, ImagePart::Bytes { .. }),
        "a goes on"
    );
    // a takes its last part: c's turn.
    let rest = u32::try_from(size - 16).unwrap();
    assert!(matches!(part("a", 16, rest).await, ImagePart::Bytes { .. }));
    assert!(matches!(part("c", 0, 16).await, ImagePart::Bytes { .. }));
}

#[tokio::test]
async fn while_no_holder_is_free_a_pushed_image_waits_for_it_to_spread() {
    let (board, dir) = (Switchboard::default(), Dir::new("spread"));
    let (source, id) = engine_with_image();
    // h1 is busy whenever asked; h2 holds the image but is not known at first.
    let (_, mut events) = board.attach(addr(1), "peer-1".into(), Arc::default());
    tokio::spawn(async move {
        while let Some(NetEvent::Request { reply, .. }) = events.recv().await {
            let busy = ImagePart::Busy("sending images to 2 peers already".into());
            let _ = reply.send(Response::Image(busy));
        }
    });
    holder(&dir, &board, 2, source, u64::MAX, Asked::default());
    // A pushed image: no holder is known at first (the report of the node that took the
    // push is on its way), then h1, then both.
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let holders = || {
        let known: &[u8] = match asked.fetch_add(1, Ordering::Relaxed) {
            0 => &[],
            1 => &[1],
            _ => &[1, 2],
        };
        holders_of(known, &id)
    };
    let (transport, engine) = (fetcher(&board), MemoryRuntime::new());
    let pushed = ImagePull {
        pushed: Some(id.clone()),
        ..pull()
    };
    fetch(&transport, &engine, &dir.of(0), &pushed, &holders)
        .await
        .unwrap();
    assert_eq!(engine.image_id(IMAGE).await.unwrap(), Some(id));
    assert!(
        asked.load(Ordering::Relaxed) >= 3,
        "it asked for the holders again"
    );
}

#[tokio::test]
async fn a_pull_tries_the_registry_then_the_peers_the_peers_first_when_told_and_only_them_when_pushed()
 {
    let (board, dir) = (Switchboard::default(), Dir::new("order"));
    let (source, id) = engine_with_image();
    let asked = Asked::default();
    holder(&dir, &board, 1, source, u64::MAX, asked.clone());
    let transport = fetcher(&board);
    let holders = holders_of(&[1], &id);
    let puller = |engine: &MemoryRuntime, peers_first| {
        let known = holders.clone();
        Puller {
            runtime: engine.clone(),
            transport: transport.clone(),
            credentials: None,
            dir: dir.of(0),
            holders: Arc::new(move |_: &ImagePull| known.clone()),
            peers_first,
        }
    };
    let registry_pulls = |engine: &MemoryRuntime| {
        let calls = engine.calls();
        calls
            .iter()
            .filter(|c| matches!(c, Call::Pull { .. }))
            .count()
    };
    let with_registry = || {
        let engine = MemoryRuntime::new();
        engine.add_to_registry(IMAGE, None);
        engine
    };
    // The registry has it: from there, no peer asked.
    let engine = with_registry();
    puller(&engine, false)
        .pull(&pull(), &holders)
        .await
        .unwrap();
    assert_eq!(registry_pulls(&engine), 1);
    assert!(asked.lock().unwrap().is_empty());
    // --peers-first: from the peer, the registry not asked.
    let engine = with_registry();
    puller(&engine, true).pull(&pull(), &holders).await.unwrap();
    assert_eq!(registry_pulls(&engine), 0);
    assert!(!asked.lock().unwrap().is_empty());
    // The registry lacks it: from the peer, after the registry.
    let engine = MemoryRuntime::new();
    puller(&engine, false)
        .pull(&pull(), &holders)
        .await
        .unwrap();
    assert_eq!(registry_pulls(&engine), 1);
    assert_eq!(engine.image_id(IMAGE).await.unwrap(), Some(id.clone()));
    // Pushed: from the peers only.
    let engine = with_registry();
    let pushed = ImagePull {
        pushed: Some(id.clone()),
        ..pull()
    };
    puller(&engine, false)
        .pull(&pushed, &holders)
        .await
        .unwrap();
    assert_eq!(registry_pulls(&engine), 0);
    assert_eq!(engine.image_id(IMAGE).await.unwrap(), Some(id));
}
