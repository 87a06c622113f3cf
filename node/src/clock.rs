//! The node's one clock: time since the Unix epoch, which its decisions and reports carry.
//! Only timeouts and sleeps (how long to wait, never what time it is) use tokio's timer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, since the Unix epoch (zero if the clock is before 1970).
pub(crate) fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    now().as_millis() as i64
}
