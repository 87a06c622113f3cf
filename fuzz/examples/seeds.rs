//! Writes the seed corpus (`fuzz/corpus/<target>/`) from real traffic: three cores form a
//! cluster, take a deployment and scale it, every datagram, status message and sync message
//! they send kept as a seed; the manifests are the repository's examples; the state files
//! are a node's file after each change. Run by `cargo run --example seeds` in `fuzz/`; the same run writes the
//! same files.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use weeble_core::document::Op;
use weeble_core::document::Persist;
use weeble_core::membership::MemberId;
use weeble_core::node::{Answer, Effect, Input, NodeCore, Timer};
use weeble_core::wire;

const NODES: usize = 3;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Seeds::default();
    for example in std::fs::read_dir(root.join("../examples")).expect("examples") {
        let text = std::fs::read(example.expect("an entry").path()).expect("an example");
        seeds.keep("manifest", text);
    }
    for body in [
        &b"\x00{\"spec\": {\"replicas\": 3}}"[..],
        b"\x01{\"toRevision\": 2}",
        b"\x01",
    ] {
        seeds.keep("api_bodies", body.to_vec());
    }
    run(&mut seeds);
    for (target, files) in &seeds.files {
        let dir = root.join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("the corpus folder");
        for bytes in files {
            let name = format!("seed-{:016x}", fnv(bytes));
            std::fs::write(dir.join(name), bytes).expect("a seed");
        }
        println!("{target}: {} seeds", files.len());
    }
}

#[derive(Default)]
struct Seeds {
    files: BTreeMap<&'static str, Vec<Vec<u8>>>,
}

impl Seeds {
    /// Keeps `bytes` for `target`: the first 64 distinct of each target.
    fn keep(&mut self, target: &'static str, bytes: Vec<u8>) {
        let files = self.files.entry(target).or_default();
        if files.len() < 64 && !files.contains(&bytes) {
            files.push(bytes);
        }
    }
}

/// FNV-1a: a seed's file name.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Three cores on a network with 1 ms of latency and no loss, for 8 virtual seconds: they
/// form, node 0 takes a deployment at 2 s and a scale at 4 s. An answer goes back to the
/// node that asked, 1 ms later.
fn run(seeds: &mut Seeds) {
    let mut cores: Vec<NodeCore> = (0..NODES).map(weeble_fuzz::core).collect();
    let mut files: Vec<Vec<u8>> = vec![Vec::new(); NODES];
    let mut due = Due::default();
    for i in 0..NODES {
        due.at(0, i, Input::Timer(Timer::Announce), None);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("../examples/nginx.yaml")).expect("nginx");
    let objects = weeble_crdt::parse_manifests(&manifest)
        .expect("it parses")
        .objects;
    let key = objects[0].meta().key();
    due.at(
        2000,
        0,
        Input::Write {
            id: 1,
            op: Op::Apply(objects),
        },
        None,
    );
    due.at(
        4000,
        0,
        Input::Write {
            id: 2,
            op: Op::Scale(key, 5),
        },
        None,
    );
    let by_addr = |to: &MemberId| (0..NODES).find(|&i| weeble_fuzz::addr(i) == to.p2p);
    while let Some(((ms, _), (i, input, asker))) = due.0.pop_first() {
        if ms > 8000 {
            break;
        }
        let me = cores[i].me().clone();
        let status_asks = matches!(&input, Input::Status { message, .. } if message.asks());
        let mut answered = false;
        for effect in cores[i].step(Duration::from_millis(ms), input) {
            match effect {
                Effect::Membership { to, data } => {
                    seeds.keep("datagram", data.clone());
                    let digest = Default::default();
                    let frame = wire::Request::Membership {
                        data: data.clone(),
                        digest,
                    };
                    seeds.keep("frame", wire::encode(&frame).expect("it encodes"));
                    if let Some(j) = by_addr(&to) {
                        let from = me.peer_id.clone();
                        let input = Input::Datagram {
                            from,
                            data,
                            digest,
                            request: true,
                        };
                        due.at(ms + 1, j, input, Some(i));
                    }
                }
                Effect::Answer(Answer::Membership(Some(data))) => {
                    seeds.keep("datagram", data.clone());
                    let from = me.peer_id.clone();
                    let digest = Default::default();
                    let input = Input::Datagram {
                        from,
                        data,
                        digest,
                        request: false,
                    };
                    due.at(ms + 1, asker.expect("an asker"), input, None);
                }
                Effect::Answer(Answer::Status(answer)) if status_asks => {
                    if let Some(answer) = &answer {
                        seeds.keep("status", wire::encode(answer).expect("it encodes"));
                    }
                    answered = true;
                    let input = Input::StatusAnswer {
                        peer: me.clone(),
                        answer,
                    };
                    due.at(ms + 1, asker.expect("an asker"), input, None);
                }
                Effect::Status(send) => {
                    seeds.keep("status", wire::encode(&send.message).expect("it encodes"));
                    if let Some(j) = by_addr(&send.to) {
                        due.at(
                            ms + 1,
                            j,
                            Input::Status {
                                from: me.peer_id.clone(),
                                message: send.message,
                            },
                            Some(i),
                        );
                    }
                }
                Effect::Sync { to, message } => {
                    seeds.keep("sync", message.clone());
                    let frame = wire::Request::Sync(message.clone());
                    seeds.keep("frame", wire::encode(&frame).expect("it encodes"));
                    if let Some(j) = by_addr(&to) {
                        let from = me.peer_id.clone();
                        let id = due.1;
                        due.at(ms + 1, j, Input::SyncRequest { id, from, message }, Some(i));
                    }
                }
                Effect::SyncAnswer { answer, .. } => {
                    if let Ok(Some(reply)) = &answer {
                        seeds.keep("sync", reply.clone());
                    }
                    let input = Input::SyncReply {
                        peer: me.peer_id.clone(),
                        reply: answer,
                    };
                    due.at(ms + 1, asker.expect("an asker"), input, None);
                }
                Effect::Persist(persist) => {
                    match persist {
                        Persist::Append { frame, .. } => files[i].extend(frame),
                        Persist::Replace(file) => files[i] = file,
                    }
                    seeds.keep("state_file", files[i].clone());
                    due.at(ms, i, Input::Persisted(Ok(())), asker);
                }
                Effect::Schedule { after, timer } => {
                    due.at(ms + after.as_millis() as u64, i, Input::Timer(timer), None);
                }
                _ => {}
            }
        }
        if status_asks && !answered {
            let input = Input::StatusAnswer {
                peer: me,
                answer: None,
            };
            due.at(ms + 1, asker.expect("an asker"), input, None);
        }
    }
}

/// Inputs by (virtual ms, the order they were made in): the node, the input, and the node
/// whose request it is (its answer goes there).
#[derive(Default)]
struct Due(BTreeMap<(u64, u64), (usize, Input, Option<usize>)>, u64);

impl Due {
    fn at(&mut self, ms: u64, node: usize, input: Input, asker: Option<usize>) {
        self.1 += 1;
        self.0.insert((ms, self.1), (node, input, asker));
    }
}
