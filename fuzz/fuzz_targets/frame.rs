//! A frame off the p2p protocol, read as a request and as a response; what decodes encodes
//! again and reads back the same.
#![no_main]
use weeble_core::wire::{self, Request, Response};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(request) = wire::decode::<Request>(data) {
        let again: Request = wire::decode(&wire::encode(&request).unwrap()).unwrap();
        assert_eq!(format!("{request:?}"), format!("{again:?}"));
    }
    if let Ok(response) = wire::decode::<Response>(data) {
        let again: Response = wire::decode(&wire::encode(&response).unwrap()).unwrap();
        assert_eq!(format!("{response:?}"), format!("{again:?}"));
    }
});
