//! The state file's format: a magic header, then frames, each a length, a CRC-32 and that
//! many bytes. The first frame is a full save of the document, the rest incremental saves
//! appended after each change.
//!
//! A crash or a full disk during an append leaves part of a frame at the end of the file.
//! That frame was never acknowledged (it is fsynced before the write is answered), so
//! [`read`] keeps every whole frame before it and reports the length of the torn tail, which
//! the node's store cuts off when it opens the file. A frame whose checksum fails ends the good part the same way.

/// The file's first bytes: a Weeble state file, format 1.
pub const MAGIC: &[u8; 8] = b"WEEBLE\x00\x01";

/// Bytes before each frame's payload: its length and its CRC-32, both little-endian u32.
const HEADER: usize = 8;

/// A file holding one frame: `payload`, a full save of the document.
pub fn file(payload: &[u8]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend(frame(payload));
    bytes
}

/// One frame, to append to the file.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a saved chunk is far below 4 GiB");
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend(len.to_le_bytes());
    bytes.extend(crc32fast::hash(payload).to_le_bytes());
    bytes.extend(payload);
    bytes
}

/// What a state file holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Contents<'a> {
    /// The payloads of its whole frames, in order; `good_len` bytes of the file hold them
    /// (with the header), and the `torn` bytes after them are an incomplete or damaged frame.
    Framed {
        payloads: Vec<&'a [u8]>,
        good_len: usize,
        torn: usize,
    },
    /// A file written before frames existed: one automerge save and its appended changes.
    Unframed(&'a [u8]),
}

/// Splits a state file into its frames, stopping at the first that is incomplete or fails
/// its checksum.
pub fn read(bytes: &[u8]) -> Contents<'_> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Contents::Unframed(bytes);
    };
    let mut payloads = Vec::new();
    while rest.len() >= HEADER {
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..HEADER].try_into().expect("4 bytes"));
        let Some(payload) = rest.get(HEADER..HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        payloads.push(payload);
        rest = &rest[HEADER + len..];
    }
    Contents::Framed {
        payloads,
        good_len: bytes.len() - rest.len(),
        torn: rest.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = file(payloads[0]);
        for p in &payloads[1..] {
            bytes.extend(frame(p));
        }
        bytes
    }

    #[test]
    fn whole_frames_read_back_in_order() {
        let bytes = framed(&[b"full save", b"", b"change"]);
        assert_eq!(
            read(&bytes),
            Contents::Framed {
                payloads: vec![b"full save".as_slice(), b"", b"change"],
                good_len: bytes.len(),
                torn: 0,
            }
        );
    }

    #[test]
    fn a_file_cut_anywhere_keeps_every_whole_frame_before_the_cut() {
        let bytes = framed(&[b"full save", b"first change", b"second change"]);
        let ends = [
            MAGIC.len() + HEADER + 9,
            MAGIC.len() + 2 * HEADER + 9 + 12,
            bytes.len(),
        ];
        for cut in MAGIC.len()..=bytes.len() {
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            let good_len = ends[..whole].last().copied().unwrap_or(MAGIC.len());
            let Contents::Framed {
                payloads,
                good_len: read_len,
                torn,
            } = read(&bytes[..cut])
            else {
                panic!("framed");
            };
            assert_eq!(payloads.len(), whole, "cut at {cut}");
            assert_eq!((read_len, torn), (good_len, cut - good_len), "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_frame_ends_the_good_part() {
        let mut bytes = framed(&[b"full save", b"change", b"later"]);
        let second = MAGIC.len() + HEADER + 9 + HEADER;
        bytes[second] ^= 0x40;
        let Contents::Framed { payloads, torn, .. } = read(&bytes) else {
            panic!("framed");
        };
        assert_eq!(payloads, vec![b"full save".as_slice()]);
        assert_eq!(torn, 2 * HEADER + 6 + 5);
    }

    #[test]
    fn a_file_without_the_header_is_unframed() {
        assert_eq!(
            read(b"\x85\x6f\x4a\x83rest"),
            Contents::Unframed(b"\x85\x6f\x4a\x83rest")
        );
    }
}
