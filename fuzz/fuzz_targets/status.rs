//! A status message off the wire (bincode, as the frame carries it) into a fresh core.
#![no_main]
use std::time::Duration;
use weeble_core::node::Input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(message) = weeble_core::wire::decode(data) else {
        return;
    };
    let mut core = weeble_fuzz::core(0);
    weeble_fuzz::step(
        &mut core,
        Duration::from_millis(10),
        Input::Status {
            from: "p1".into(),
            message,
        },
    );
});
