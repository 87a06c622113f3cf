//! A state file as a node reads it at start: the journal's frames, then the document.
//! automerge's loader can panic on a crafted document; `DesiredState::load` catches that and
//! says the file does not load. libFuzzer's panic hook would abort at the caught panic, so
//! this target leaves panics to the harness instead: one that escapes the load still fails
//! the run (libfuzzer-sys catches it and aborts), one the load caught does not.
#![no_main]
use weeble_crdt::ActorId;

libfuzzer_sys::fuzz_target!(
    init: {
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        let _ = weeble_core::document::load(Some(data), ActorId::from([1; 16]));
    }
);
