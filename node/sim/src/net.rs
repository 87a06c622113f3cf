//! The simulated network: every link has a latency with jitter and a loss rate, with TCP's
//! retransmissions (a lost segment is sent again after a timeout that doubles); the nodes can
//! be split into groups that cannot reach each other, one direction of one link can be
//! cut, slowed or made lossy, and a node can be taken off the network altogether.

use rand::RngExt;
use rand::rngs::StdRng;
use std::collections::BTreeMap;

/// How the links behave (the same for every link).
#[derive(Debug, Clone)]
pub struct Links {
    /// One way, in microseconds.
    pub latency_us: u64,
    /// Added to the latency, uniformly from 0 to this.
    pub jitter_us: u64,
    /// The chance that one transmission is lost.
    pub loss: f64,
}

impl Default for Links {
    /// A LAN: 200 µs one way, up to 100 µs of jitter, no loss.
    fn default() -> Self {
        Links {
            latency_us: 200,
            jitter_us: 100,
            loss: 0.0,
        }
    }
}

/// What is wrong with one direction of one link, beyond what [`Links`] says of all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Nothing gets through (a one-way cut: requests arrive, their answers do not).
    pub cut: bool,
    /// Added to the latency, µs (a slow link).
    pub extra_us: u64,
    /// The chance that one transmission is lost, if higher than the links' own.
    pub loss: f64,
}

/// TCP's first retransmission timeout (Linux's minimum), doubling on each loss.
const RTO_US: u64 = 200_000;

/// Transmissions of one message before the connection gives up.
const ATTEMPTS: u32 = 6;

/// The network between the nodes.
#[derive(Debug, Clone)]
pub struct Net {
    pub links: Links,
    /// Each node's side of a partition: nodes on different sides cannot reach each other.
    side: Vec<u32>,
    /// Impaired directions of links: (from, to) → what is wrong.
    impaired: BTreeMap<(usize, usize), Impairment>,
    /// Nodes off the network: they reach no one, no one reaches them.
    off: Vec<bool>,
}

impl Net {
    pub fn new(nodes: usize, links: Links) -> Self {
        Net {
            links,
            side: vec![0; nodes],
            impaired: BTreeMap::new(),
            off: vec![false; nodes],
        }
    }

    /// Splits the nodes: node `i` is on side `sides[i]`.
    pub fn split(&mut self, sides: Vec<u32>) {
        assert_eq!(sides.len(), self.side.len(), "a side for every node");
        self.side = sides;
    }

    /// The direction from `from` to `to` behaves as `impairment` says, until [`Net::heal`].
    pub fn impair(&mut self, from: usize, to: usize, impairment: Impairment) {
        self.impaired.insert((from, to), impairment);
    }

    /// Node `i` off the network (`false`: back on it), until [`Net::heal`].
    pub fn set_off(&mut self, i: usize, off: bool) {
        self.off[i] = off;
    }

    /// Every node on one side and on the network again, every link whole.
    pub fn heal(&mut self) {
        self.side.iter_mut().for_each(|s| *s = 0);
        self.impaired.clear();
        self.off.iter_mut().for_each(|o| *o = false);
    }

    /// Whether anything sent from `from` can reach `to`: same side, both on the network, the
    /// direction not cut (a lossy or slow link still reaches).
    pub fn reaches(&self, from: usize, to: usize) -> bool {
        let cut = self.impaired.get(&(from, to)).is_some_and(|i| i.cut);
        from == to || (self.side[from] == self.side[to] && !self.off[from] && !self.off[to] && !cut)
    }

    /// How long a message from `from` takes to reach `to`, retransmissions included; `None`
    /// if it cannot (another side of a partition, or every transmission lost).
    pub fn transit(&self, rng: &mut StdRng, from: usize, to: usize) -> Option<u64> {
        if !self.reaches(from, to) {
            return None;
        }
        let impairment = self.impaired.get(&(from, to)).copied().unwrap_or_default();
        let loss = self.links.loss.max(impairment.loss);
        let mut waited = 0;
        for attempt in 0..ATTEMPTS {
            if loss == 0.0 || rng.random::<f64>() >= loss {
                let jitter = match self.links.jitter_us {
                    0 => 0,
                    j => rng.random_range(0..=j),
                };
                return Some(waited + self.links.latency_us + impairment.extra_us + jitter);
            }
            waited += RTO_US << attempt;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_partition_stops_messages_and_a_heal_lets_them_through() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut net = Net::new(3, Links::default());
        assert!(net.transit(&mut rng, 0, 2).is_some());
        net.split(vec![0, 0, 1]);
        assert_eq!(net.transit(&mut rng, 0, 2), None);
        assert!(net.transit(&mut rng, 0, 1).is_some());
        net.heal();
        assert!(net.transit(&mut rng, 0, 2).is_some());
        net.set_off(1, true);
        assert!(!net.reaches(0, 1) && !net.reaches(1, 2));
        assert!(net.reaches(0, 2), "the others still reach each other");
        net.heal();
        assert!(net.reaches(0, 1), "a heal puts it back on the network");
    }

    #[test]
    fn a_one_way_cut_stops_one_direction_and_a_slow_link_adds_its_delay() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut net = Net::new(2, Links::default());
        let cut = Impairment {
            cut: true,
            ..Impairment::default()
        };
        net.impair(0, 1, cut);
        assert_eq!(net.transit(&mut rng, 0, 1), None);
        assert!(net.transit(&mut rng, 1, 0).is_some(), "the other way works");
        let slow = Impairment {
            extra_us: 50_000,
            ..Impairment::default()
        };
        net.impair(0, 1, slow);
        assert!(net.transit(&mut rng, 0, 1).unwrap() >= 50_000);
        assert!(net.transit(&mut rng, 1, 0).unwrap() < 50_000);
        net.heal();
        assert!(net.transit(&mut rng, 0, 1).unwrap() < 50_000);
    }

    #[test]
    fn a_lossy_link_delays_by_retransmissions() {
        let mut rng = StdRng::seed_from_u64(1);
        let links = Links {
            loss: 0.5,
            ..Links::default()
        };
        let net = Net::new(2, links);
        let delays: Vec<_> = (0..1000).map(|_| net.transit(&mut rng, 0, 1)).collect();
        let late = delays.iter().flatten().filter(|&&d| d >= RTO_US).count();
        assert!(
            (400..600).contains(&late),
            "about half retransmitted: {late}"
        );
        assert!(delays.iter().any(Option::is_none), "some give up");
    }
}
