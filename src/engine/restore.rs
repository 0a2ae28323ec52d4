//! A state file's servers at start: each core lists the share its steering sends it, as they
//! were (expiry times and first-seen kept, today's rules applied), before it reports ready.

use super::WallClock;
use crate::master::steer::shard_for;
use crate::master::{Master, Time};

/// Lists this core's share of a state file (the servers steered to it), as they were.
pub(super) fn restore(
    master: &mut Master,
    body: &crate::state::Body,
    wall: WallClock,
    now: Time,
    index: usize,
    cores: usize,
) {
    let (mut listed, mut gone, mut refused) = (0usize, 0usize, 0usize);
    for r in &body.records {
        if shard_for(r.addr.ip(), cores) != index {
            continue;
        }
        let Some((family, fields)) = body.fields(r) else {
            refused += 1;
            continue;
        };
        let expires = wall.time(r.expires_unix_ms);
        let first_seen = wall.time(r.first_seen_unix.saturating_mul(1000)).millis() / 1000;
        let first_seen = u32::try_from(first_seen).unwrap_or(u32::MAX);
        match master.restore(now, r.addr, family, &fields, expires, first_seen) {
            Ok(true) => listed += 1,
            Ok(false) => gone += 1,
            Err(why) => {
                refused += 1;
                tracing::debug!(core = index, addr = %r.addr, reason = why.name(), "not restored");
            }
        }
    }
    tracing::info!(
        core = index,
        restored = listed,
        expired = gone,
        refused,
        "listed from the state file"
    );
}
