//! `weeble node allow|deny PEER` and `weeble node join-token`: which peers the cluster
//! admits, changed through any node's API (kept in the desired state).

use crate::client::Client;
use clap::Subcommand;
use serde::Deserialize;

#[derive(Subcommand)]
pub enum Action {
    /// Admit a peer (its peer id, as `weeble get peers` shows it). The first peer allowed
    /// closes the cluster to every peer not allowed: the live members are allowed with it.
    Allow { peer: String },
    /// Turn a peer away: every node declares it down, closes its connections and takes
    /// nothing it sends.
    Deny { peer: String },
    /// Make a key for a new node, allow it, and print the token the new node starts with
    /// (`weeble node --join-token TOKEN ...`): the key, the cluster key and a peer to join.
    JoinToken,
}

#[derive(Deserialize)]
struct Admitted {
    peers: Vec<Outcome>,
}

#[derive(Deserialize)]
struct Outcome {
    peer: String,
    outcome: String,
}

#[derive(Deserialize)]
struct Token {
    peer: String,
    token: String,
}

pub fn run(client: &Client, action: Action) -> anyhow::Result<()> {
    let admit = |peer: &str, action: &str| -> anyhow::Result<()> {
        let path = format!("/apis/weeble.io/v1/peers/{peer}/{action}");
        let answer: Admitted = client.post_text(&path, "")?;
        for item in answer.peers {
            println!("peer/{} {}", item.peer, item.outcome);
        }
        Ok(())
    };
    match action {
        Action::Allow { peer } => admit(&peer, "allow"),
        Action::Deny { peer } => admit(&peer, "deny"),
        Action::JoinToken => {
            let answer: Token = client.post_text("/apis/weeble.io/v1/jointokens", "")?;
            eprintln!(
                "peer/{} allowed. Start the new node with an empty data directory:\n  \
                 weeble node --name NAME --data-dir DIR --p2p ADDR --join-token TOKEN\n\
                 The token (a secret: it holds the node's key and the cluster key) follows.",
                answer.peer
            );
            println!("{}", answer.token);
            Ok(())
        }
    }
}
