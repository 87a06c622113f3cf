//! Join tokens: what a new node needs to be admitted, in one string that an operator copies
//! from `weeble node join-token` (run against any node) to the new node's `--join-token`.
//! A token holds a key made for the new node (the cluster allowed its peer id when it made
//! the token), the cluster key if the cluster has one, and the p2p address of the node that
//! made it, to join through. It is a secret: whoever holds it can join as that node.

use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

const PREFIX: &str = "weeble-join-1.";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// The new node's libp2p key, in libp2p's protobuf encoding, hex.
    key: String,
    /// The cluster key (`--cluster-key`), hex, if the cluster has one.
    cluster_key: Option<String>,
    /// Where to join.
    pub join: SocketAddr,
}

impl JoinToken {
    /// A token for a new node with a key of its own; also its peer id, to allow.
    pub fn for_new_node(cluster_key: Option<[u8; 32]>, join: SocketAddr) -> (Self, String) {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id().to_base58();
        let key = keypair
            .to_protobuf_encoding()
            .expect("an ed25519 key encodes");
        let token = JoinToken {
            key: hex(&key),
            cluster_key: cluster_key.map(|k| hex(&k)),
            join,
        };
        (token, peer_id)
    }

    /// The token as the operator copies it.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token serializes");
        format!("{PREFIX}{}", hex(&json))
    }

    /// A token read back; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            |why: &str| format!("not a join token ({why}): make one with `weeble node join-token`");
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("no weeble-join-1. prefix"))?;
        let json = unhex(body).ok_or_else(|| bad("not hexadecimal"))?;
        let token: JoinToken =
            serde_json::from_slice(&json).map_err(|_| bad("its fields do not read"))?;
        token.keypair().map_err(|_| bad("its key does not read"))?;
        token
            .cluster_key()
            .ok_or_else(|| bad("its cluster key does not read"))?;
        Ok(token)
    }

    /// The new node's key, as the node keeps it in its data directory.
    pub fn key_bytes(&self) -> Vec<u8> {
        unhex(&self.key).unwrap_or_default()
    }

    /// The new node's libp2p key.
    pub fn keypair(&self) -> Result<Keypair, String> {
        Keypair::from_protobuf_encoding(&self.key_bytes()).map_err(|e| e.to_string())
    }

    /// The cluster key; `Some(None)` for a cluster with none, `None` if it does not read.
    pub fn cluster_key(&self) -> Option<Option<[u8; 32]>> {
        match &self.cluster_key {
            None => Some(None),
            Some(hex) => unhex(hex)?.try_into().ok().map(Some),
        }
    }
}

/// Bytes as hexadecimal digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hexadecimal digits read as bytes.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_a_damaged_one_says_so() {
        let join = SocketAddr::from(([10, 0, 0, 1], 7946));
        let (token, peer_id) = JoinToken::for_new_node(Some([7; 32]), join);
        let read = JoinToken::parse(&token.encode()).unwrap();
        assert_eq!(read, token);
        assert_eq!(read.cluster_key(), Some(Some([7; 32])));
        let keypair = Keypair::from_protobuf_encoding(&read.key_bytes()).unwrap();
        assert_eq!(keypair.public().to_peer_id().to_base58(), peer_id);
        let (open, _) = JoinToken::for_new_node(None, join);
        assert_eq!(
            JoinToken::parse(&open.encode()).unwrap().cluster_key(),
            Some(None)
        );
        for bad in [
            "",
            "weeble-join-1.zz",
            "weeble-join-1.7b7d",
            &token.encode()[..40],
        ] {
            let err = JoinToken::parse(bad).unwrap_err();
            assert!(err.contains("not a join token"), "{err}");
        }
    }
}
