//! Peer addresses, packed: a node keeps every address it has met (one per member), to find
//! the cluster again after a restart or a partition, so the set grows with the cluster at
//! every node. An IPv4 address and port take 8 bytes here; a `SocketAddr` in a `BTreeSet`
//! took about 50 (48 MB of the heap at 1,000 simulated nodes, 5 GB at 10,000).

use std::collections::BTreeSet;
use std::net::{SocketAddr, SocketAddrV4};

/// A set of peer addresses, in `SocketAddr`'s order (IPv4 first, by address then port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// IPv4 addresses and ports, [`pack`]ed.
    v4: BTreeSet<u64>,
    v6: BTreeSet<SocketAddr>,
}

/// An IPv4 address and port in one integer that sorts as they do.
fn pack(a: &SocketAddrV4) -> u64 {
    (u64::from(a.ip().to_bits()) << 16) | u64::from(a.port())
}

fn unpack(packed: u64) -> SocketAddr {
    let ip = std::net::Ipv4Addr::from_bits((packed >> 16) as u32);
    SocketAddr::V4(SocketAddrV4::new(ip, packed as u16))
}

impl Addresses {
    /// True if it was not there yet.
    pub fn insert(&mut self, addr: SocketAddr) -> bool {
        match addr {
            SocketAddr::V4(a) => self.v4.insert(pack(&a)),
            v6 => self.v6.insert(v6),
        }
    }

    pub fn remove(&mut self, addr: &SocketAddr) -> bool {
        match addr {
            SocketAddr::V4(a) => self.v4.remove(&pack(a)),
            v6 => self.v6.remove(v6),
        }
    }

    pub fn contains(&self, addr: &SocketAddr) -> bool {
        match addr {
            SocketAddr::V4(a) => self.v4.contains(&pack(a)),
            v6 => self.v6.contains(v6),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let v4 = self.v4.iter().map(|p| unpack(*p));
        v4.chain(self.v6.iter().copied())
    }
}

impl FromIterator<SocketAddr> for Addresses {
    fn from_iter<I: IntoIterator<Item = SocketAddr>>(addrs: I) -> Self {
        let mut set = Addresses::default();
        for a in addrs {
            set.insert(a);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_kept_once_and_listed_in_socket_addr_order() {
        let addrs: Vec<SocketAddr> = [
            "[::1]:7000",
            "10.0.0.2:7000",
            "10.0.0.1:7001",
            "255.255.255.255:65535",
            "10.0.0.1:7000",
            "0.0.0.0:0",
            "[fe80::1%2]:7000",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let mut set: Addresses = addrs.iter().copied().collect();
        let mut sorted = addrs.clone();
        sorted.sort();
        assert_eq!(set.iter().collect::<Vec<_>>(), sorted);
        assert_eq!(set.len(), 7);
        assert!(!set.insert(addrs[1]), "already there");
        assert!(set.contains(&addrs[0]) && set.contains(&addrs[3]));
        assert!(set.remove(&addrs[1]) && set.remove(&addrs[0]));
        assert!(!set.contains(&addrs[1]) && !set.contains(&addrs[0]));
        assert_eq!(set.len(), 5);
        assert!(!set.is_empty());
    }
}
