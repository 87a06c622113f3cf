//! Images passed between peers, over the cluster's own connections: a node that lacks an
//! image and cannot pull it fetches it from peers that hold it ([`fetch`]), and a node
//! serves the images its report lists to peers that ask ([`shelf`]). What is sent is the
//! engine's own tar of the image (`docker save`), checked before it is loaded
//! ([`tarball`]). Both sides work in the node's `images/` directory.

pub mod fetch;
pub mod shelf;
pub mod tarball;

#[cfg(test)]
mod tests;
