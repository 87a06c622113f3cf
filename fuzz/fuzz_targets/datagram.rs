//! A membership datagram (SWIM's, or a member pull's: the first byte says which) from peer
//! `p1`, into a fresh core, as a request and then its timers a few seconds on.
#![no_main]
use std::time::Duration;
use weeble_core::gossip::Digest;
use weeble_core::node::Input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut core = weeble_fuzz::core(0);
    let input = Input::Datagram {
        from: "p1".into(),
        data: data.to_vec(),
        digest: Digest::default(),
        request: true,
    };
    weeble_fuzz::step(&mut core, Duration::from_millis(10), input);
});
