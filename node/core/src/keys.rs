//! A node's key and what it signs. A node's libp2p key is an ed25519 key, and its peer id
//! holds the public key whole (libp2p's identity multihash of the key's protobuf form), so a
//! signature is checked against a peer id with nothing else to look up.
//!
//! What a node gossips that others pass on is signed by it: its status report
//! ([`crate::status::NodeStatus::signature`]). What travels only from the node itself needs
//! no signature: the transport authenticates every connection by its peer id (noise), and a
//! membership datagram's sender must be the connection's peer (`NodeCore`).

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use std::sync::OnceLock;

/// The bytes before the public key in an ed25519 peer id: the identity multihash (code 0,
/// length 36) of the protobuf `PublicKey { Type: Ed25519, Data: 32 bytes }`.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// A node's signing key (the secret half of its libp2p ed25519 key).
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.peer_id())
    }
}

impl NodeKey {
    /// The key of these 32 secret bytes (libp2p's `ed25519::SecretKey`).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        NodeKey(SigningKey::from_bytes(&secret))
    }

    /// Node `i`'s key in the tests and the simulator: made from `i`, so anyone can make it.
    /// Never a real node's.
    pub fn numbered(i: usize) -> Self {
        let mut secret = [0x5e; 32];
        secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
        NodeKey::from_secret(secret)
    }

    /// The peer id of this key, base58, as libp2p writes it.
    pub fn peer_id(&self) -> String {
        let mut bytes = PEER_ID_PREFIX.to_vec();
        bytes.extend_from_slice(self.0.verifying_key().as_bytes());
        bs58::encode(bytes).into_string()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature::of(self.0.sign(message).to_bytes())
    }
}

/// Whether `text` is an ed25519 peer id (the kind every node has).
pub fn is_peer_id(text: &str) -> bool {
    public_key(text).is_some()
}

/// The public key a peer id holds, if it is an ed25519 peer id.
fn public_key(peer_id: &str) -> Option<VerifyingKey> {
    let mut bytes = [0u8; 38];
    let len = bs58::decode(peer_id).onto(&mut bytes[..]).ok()?;
    let key = bytes[..len].strip_prefix(&PEER_ID_PREFIX)?;
    VerifyingKey::from_bytes(key.try_into().ok()?).ok()
}

/// An ed25519 signature (empty: none), and the peer id it was last found good for: the
/// simulator hands one report to thousands of cores, which check it once between them.
/// Two signatures are equal if their bytes are; a copy is checked again.
#[derive(Default)]
pub struct Signature {
    bytes: Vec<u8>,
    good_for: OnceLock<String>,
}

impl Signature {
    fn of(bytes: [u8; 64]) -> Self {
        Signature {
            bytes: bytes.to_vec(),
            good_for: OnceLock::new(),
        }
    }

    /// Whether this is `peer_id`'s key's signature of `message` (the first check with a
    /// peer id is remembered: a signature is checked for the one message it came with).
    pub fn is_by(&self, peer_id: &str, message: impl FnOnce() -> Vec<u8>) -> bool {
        if self.good_for.get().is_some_and(|good| good == peer_id) {
            return true;
        }
        let good = public_key(peer_id).is_some_and(|key| {
            let Ok(bytes) = <[u8; 64]>::try_from(self.bytes.as_slice()) else {
                return false;
            };
            let signature = ed25519_dalek::Signature::from_bytes(&bytes);
            key.verify(&message(), &signature).is_ok()
        });
        if good {
            let _ = self.good_for.set(peer_id.to_string());
        }
        good
    }
}

impl Clone for Signature {
    fn clone(&self) -> Self {
        Signature {
            bytes: self.bytes.clone(),
            good_for: OnceLock::new(),
        }
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Signature {}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bytes.get(..4) {
            Some(head) => write!(f, "Signature({:02x?}..)", head),
            None => write!(f, "Signature(none)"),
        }
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.bytes.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Vec::<u8>::deserialize(deserializer)?;
        Ok(Signature {
            bytes,
            good_for: OnceLock::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_good_for_its_key_and_message_only() {
        let (a, b) = (NodeKey::numbered(1), NodeKey::numbered(2));
        assert!(a.peer_id().starts_with("12D3KooW"), "{}", a.peer_id());
        let signature = a.sign(b"report");
        assert!(signature.is_by(&a.peer_id(), || b"report".to_vec()));
        assert!(signature.clone().is_by(&a.peer_id(), || b"report".to_vec()));
        assert!(!signature.clone().is_by(&b.peer_id(), || b"report".to_vec()));
        assert!(!signature.clone().is_by(&a.peer_id(), || b"forged".to_vec()));
        assert!(!Signature::default().is_by(&a.peer_id(), || b"report".to_vec()));
        assert!(!signature.clone().is_by("p1", || b"report".to_vec()));
        assert!(!signature.is_by("", || b"report".to_vec()));
    }
}
