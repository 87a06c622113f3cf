//! Every node's reported pods: the core's status types (`weeble_core::status`), kept by the
//! node's core and published by its driver.

pub use weeble_core::status::*;
