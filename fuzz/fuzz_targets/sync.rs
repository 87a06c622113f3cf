//! An automerge sync message from peer `p1` into a fresh core: decoded, applied, persisted,
//! answered.
#![no_main]
use std::time::Duration;
use weeble_core::node::Input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut core = weeble_fuzz::core(0);
    let input = Input::SyncRequest {
        id: 1,
        from: "p1".into(),
        message: data.to_vec(),
    };
    weeble_fuzz::step(&mut core, Duration::from_millis(10), input);
});
