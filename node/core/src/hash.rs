//! Fixed, portable hashes: every node must compute the same value from the same input, in
//! any build and on any machine (std's hasher promises neither).

/// FNV-1a of the concatenation of `parts`.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// A hasher for keys that are well-mixed hashes already ([`mix`]'s): it passes a `u64` through.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(&[&self.0.to_le_bytes(), bytes]);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by hashes ([`mix`]'s), hashed no further. Its order is the hashes': for
/// lookups, never to iterate.
pub(crate) type ByHash<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<Prehashed>>;

/// SplitMix64's finalizer: spreads every input bit over the whole output.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A name's first 16 bytes as a number, padded with zeros: ordered as the names are, but for
/// names that share those 16 bytes. Names sorted by it, then by the whole name where it is
/// equal, are read through their pointers once each, not at every comparison.
pub(crate) fn name_prefix(name: &str) -> u128 {
    let mut bytes = [0u8; 16];
    let n = name.len().min(16);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    u128::from_be_bytes(bytes)
}
