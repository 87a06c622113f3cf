//! The API's request bodies besides manifests (those are the `manifest` target): the first
//! byte picks the endpoint, the rest is the body, as `PUT .../scale` and `POST
//! .../rollout/undo` read it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    match which % 2 {
        0 => {
            if let Ok(n) = weeble_core::objects::scale_replicas(body) {
                assert!(i64::from(n) <= weeble_crdt::validate::MAX_REPLICAS);
            }
        }
        _ => {
            if let Ok(Some(revision)) = weeble_core::objects::undo_revision(body) {
                assert!(revision > 0);
            }
        }
    }
});
