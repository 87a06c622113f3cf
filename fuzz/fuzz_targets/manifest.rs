//! A manifest file as `weeble apply` and `POST /apply` read it: parsed, then validated into
//! model objects, every error with its field path.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = weeble_crdt::parse_manifests(text)
    {
        // An error names where: rendering it must not panic either.
        let _ = e.to_string();
    }
});
