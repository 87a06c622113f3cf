//! The frames peers exchange on the one request-response protocol (`/weeble/rpc/3`): what a
//! [`Request`] and its [`Response`] carry, and their bytes (bincode, standard config). The
//! transport adds only a length before each frame; decoding is here, pure, so that the fuzz
//! targets (`fuzz/`) run the very code a node runs on what a peer sent. Byte strings go as
//! bytes (`serde_bytes`: one copy, where serde's sequence took them a byte at a time, 4 MiB
//! parts of images included); on the wire they are what the sequence was.

use crate::gossip::Digest;
use crate::status::StatusMessage;
use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::{Deserialize, Serialize};

/// The largest frame either way (a whole document in one sync message).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How every message a peer sends is encoded: bincode's standard configuration, with
/// [`MAX_MESSAGE`] as the most a decode may claim in all. Without the limit, a length of 2⁶⁰
/// before a string or a list was taken at its word and allocated (the fuzz targets `frame`,
/// `status` and `datagram` found it in a few seconds each).
pub const BINCODE: Configuration<LittleEndian, Varint, Limit<MAX_MESSAGE>> =
    bincode::config::standard().with_limit::<MAX_MESSAGE>();

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Membership {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        digest: Digest,
    },
    Status(StatusMessage),
    Sync(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Up to `len` bytes from `offset` of image `id` as its holder's engine writes it out
    /// (`docker save`): answered with [`Response::Image`].
    Image {
        id: String,
        offset: u64,
        len: u32,
    },
    /// A pod's logs or its removal, asked of the node that runs it by the node an API client
    /// asked (a client may ask any node, with its token, and be answered there): answered
    /// with [`Response::Pod`].
    Pod(PodRequest),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Ack,
    /// The membership datagram the request's own datagram called for at once (SWIM's ack to
    /// a ping), and what the answering node holds: one exchange instead of two.
    Membership {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        digest: Digest,
    },
    Status(StatusMessage),
    Sync(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The peer could not take the sync message in (it cannot persist it): why.
    SyncRefused(String),
    Image(ImagePart),
    Pod(PodAnswer),
}

/// What a node asks of a pod's node for its API's client (`GET pods/NAME/log`, `DELETE
/// pods/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodRequest {
    /// The output of one of the pod's containers, a part at a time: answered with the first
    /// [`PodAnswer::Log`] (part 0) and the session the rest is asked for by.
    Log { pod: PodRef, log: PodLog },
    /// Part `part` of a log session this node opened: the one after the last answered, or
    /// that one again (its answer was lost), so that no byte is lost or sent twice.
    More { session: u64, part: u64 },
    /// Remove the pod's containers: its deployment makes them again, as a new pod.
    Delete { pod: PodRef },
}

/// A pod as its node finds its containers: by their pod and deployment labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    pub name: String,
    /// The deployment the pod is of, as its containers' label says it.
    pub deployment: Option<String>,
}

/// `pods/NAME/log`'s parameters, as Kubernetes names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodLog {
    /// Which container; the pod's only one if `None`.
    pub container: Option<String>,
    pub follow: bool,
    pub tail_lines: Option<usize>,
    /// Only what was written in the last so many seconds (by the pod's node's clock).
    pub since_seconds: Option<i64>,
    /// Only what was written since this time (Unix seconds; `sinceTime`).
    pub since_time: Option<i64>,
    pub timestamps: bool,
    /// At most this many bytes (`limitBytes`; the last line may be cut).
    pub limit_bytes: Option<u64>,
}

/// The most bytes of a log one [`PodAnswer::Log`] carries.
pub const MAX_LOG_PART: usize = 256 * 1024;

/// A pod's node's answer to [`Request::Pod`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodAnswer {
    /// The next bytes of log session `session` (none if the container wrote nothing for a
    /// while); `end`: there are no more.
    Log {
        session: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        end: bool,
    },
    Deleted,
    /// Not done: the HTTP status and the message the asking node answers its client with.
    Refused {
        status: u16,
        message: String,
    },
}

/// The most bytes one [`ImagePart::Bytes`] carries.
pub const MAX_IMAGE_PART: u32 = 4 * 1024 * 1024;

/// A holder's answer to [`Request::Image`].
#[derive(Debug, Serialize, Deserialize)]
pub enum ImagePart {
    /// The holder's engine is writing the image out: ask again in a moment.
    Preparing,
    /// The bytes asked for (fewer at the end, none past it) of the image's tar, which is
    /// `size` bytes with this sha256 (hex) in all: a transfer that goes on from another holder
    /// keeps what it has only if that holder's tar is the same.
    Bytes {
        size: u64,
        sha256: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The holder sends to enough peers now: ask another holder, or again in a moment.
    Busy(String),
    /// The holder will not serve it: why (it does not hold it, it keeps enough images
    /// already, its engine failed).
    Refused(String),
}

/// Why a frame was not read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("a frame of {0} bytes is over the limit of {MAX_MESSAGE}")]
    TooLarge(usize),
    #[error("a frame that does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("a frame that does not encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

/// A frame's bytes, refused past [`MAX_MESSAGE`].
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let bytes = bincode::serde::encode_to_vec(value, BINCODE)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// A frame read from its bytes (trailing bytes are ignored, as they always were).
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(bytes.len()));
    }
    Ok(bincode::serde::decode_from_slice(bytes, BINCODE)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `frame` and `status` fuzz targets found (kept in their corpus).
    #[test]
    fn a_length_past_the_limit_is_an_error_not_an_allocation() {
        let frame = include_bytes!("../../../fuzz/corpus/frame/regression-length-2e60");
        assert!(decode::<Request>(frame).is_err());
        let status = include_bytes!("../../../fuzz/corpus/status/regression-length-2e60");
        let err = decode::<StatusMessage>(status).unwrap_err();
        assert!(err.to_string().contains("does not decode"), "{err}");
    }

    #[test]
    fn frames_read_back_as_written_and_refuse_more_than_the_limit() {
        let request = Request::Sync(vec![7; 100]);
        let again: Request = decode(&encode(&request).unwrap()).unwrap();
        assert!(matches!(again, Request::Sync(m) if m == vec![7; 100]));
        let err = encode(&Request::Sync(vec![0; MAX_MESSAGE])).unwrap_err();
        assert!(matches!(err, WireError::TooLarge(_)), "{err}");
    }

    #[test]
    fn byte_strings_go_as_bytes_and_read_as_the_sequence_they_were() {
        let data: Vec<u8> = (0..=255).collect();
        let as_sequence = bincode::serde::encode_to_vec(&data, BINCODE).unwrap();
        let request = Request::Sync(data.clone());
        let frame = encode(&request).unwrap();
        // The variant's index, then the bytes as a sequence of them would be.
        assert_eq!(&frame[1..], &as_sequence[..]);
        let part = Response::Image(ImagePart::Bytes {
            size: 256,
            sha256: "x".into(),
            bytes: data.clone(),
        });
        match decode::<Response>(&encode(&part).unwrap()).unwrap() {
            Response::Image(ImagePart::Bytes { bytes, .. }) => assert_eq!(bytes, data),
            other => panic!("{other:?}"),
        }
    }
}
