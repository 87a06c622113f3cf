//! A membership datagram (SWIM's, or a member pull's: the first byte says which) into a
//! fresh core, as a request, from the peer it names as its sender (from `p1` if it names
//! none): a datagram in another's name is refused before it is read, and one from the peer
//! it names is read through.
#![no_main]
use std::time::Duration;
use weeble_core::gossip::Digest;
use weeble_core::membership;
use weeble_core::node::Input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut core = weeble_fuzz::core(0);
    let from = membership::sender(data).unwrap_or("p1").to_string();
    let input = Input::Datagram {
        from,
        data: data.to_vec(),
        digest: Digest::default(),
        request: true,
    };
    weeble_fuzz::step(&mut core, Duration::from_millis(10), input);
});
