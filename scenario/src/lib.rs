//! Resilience experiments as data. A scenario file ([`spec`]) names a cluster, the manifests
//! it starts with, a timeline of faults and writes, and the expectations a run is judged by;
//! the runner ([`run`]) carries it out on a [`backend::Backend`] and writes a [`report`]
//! (markdown and JSON) and a timeline ([`svg`]).
//!
//! - [`spec`]: the file format, read and checked before anything starts.
//! - [`backend`]: what a cluster must offer the runner; [`sim`] is the simulator's.
//! - [`run`]: the timeline carried out, sampled and measured.
//! - [`report`], [`svg`]: what a run shows.
//! - [`library`]: the scenarios that come with Weeble (`scenarios/`).

pub mod backend;
pub mod library;
pub mod report;
pub mod run;
pub mod sim;
pub mod spec;
pub mod svg;

#[cfg(test)]
mod tests;
