//! What the fuzz targets share: a node's core as `weeble node` builds it (node `n0` of a
//! cluster whose other members are `n1`, `n2`), fed one input at a time with every persist
//! it asks for carried out at once, as the driver would once the disk answered.

use std::net::SocketAddr;
use std::time::Duration;
use weeble_core::keys::NodeKey;
use weeble_core::membership::{Detection, MemberId};
use weeble_core::node::{Config, Effect, Input, NodeCore, Shared};
use weeble_core::reconcile::pass::Settings;
use weeble_crdt::{ActorId, DesiredState};

/// Where node `i` listens.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

/// Node `n{i}`'s core, fresh, knowing the addresses of `n0` and `n1`.
pub fn core(i: usize) -> NodeCore {
    let me = MemberId::numbered(i, addr(i));
    let config = Config {
        reconcile: Settings {
            node: me.name.clone(),
            host_ip: addr(i).ip(),
            service_ip: addr(i).ip(),
            resync_ms: 10_000,
            join_grace_ms: 3_000,
        },
        me,
        key: NodeKey::numbered(i),
        detection: Detection::default(),
        fanout: 3,
        replicate_to: 0,
        epoch: 1,
        seed: i as u64,
        known: [addr(0), addr(1)].into(),
        shared: Shared::default(),
    };
    let stored = weeble_core::document::Stored {
        state: DesiredState::new(ActorId::from([i as u8 + 1; 16])),
        len: 0,
        failing: None,
    };
    NodeCore::new(config, stored, Duration::ZERO)
}

/// Steps `core` with `input` at `now`, then with the outcome of each persist it asks for (a
/// success), and returns every effect.
pub fn step(core: &mut NodeCore, now: Duration, input: Input) -> Vec<Effect> {
    let mut effects = core.step(now, input);
    let mut done = 0;
    while done < effects.len() {
        if matches!(effects[done], Effect::Persist(_)) {
            effects.extend(core.step(now, Input::Persisted(Ok(()))));
        }
        done += 1;
    }
    effects
}
