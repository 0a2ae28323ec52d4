//! When a core naps before it waits for datagrams again: receive coalescing, as a NIC moderates
//! its interrupts.
//!
//! A core that finds one or two datagrams per wake-up pays a sleep, a wake-up and a `recvmmsg`
//! for each, and for each reply it sends it also pays the wake-up of the peer's sleeping reader
//! (on one host the sender's CPU delivers a datagram into the receiver's socket). Under a
//! registration storm of 20,000 servers a second that is most of the core's work. Napping a
//! fixed, short time lets the datagrams gather, so that one wake-up reads and answers many.
//!
//! Only game-server traffic is worth delaying: a heartbeat's challenge or an info reply a few
//! hundred microseconds late changes nothing for a game server, whose handshake crosses the
//! Internet. A client waits for its list, so a wake-up that brought any client datagram is
//! followed by the usual wait (one client datagram that arrives during a nap waits for that nap,
//! at most [`MAX_COALESCE`]). And a nap is taken only when the arrivals seen say it will gather
//! something: at least two datagrams in a nap at the rate of the last wake-up, and not more than
//! a receive batch (past that, the load batches the core's reads by itself, and a deliberately
//! deeper queue would look like saturation and shed clients' queries).

use std::time::Duration;

/// The default nap (`[sockets] coalesce_us`): at 20,000 registrations a second (40,000 datagrams
/// in), about ten datagrams per wake-up.
pub const DEFAULT_COALESCE: Duration = Duration::from_micros(250);
/// The longest nap the configuration accepts: the most a handshake's reply or a client's query
/// waits for it.
pub const MAX_COALESCE: Duration = Duration::from_millis(1);
/// Fewest datagrams a nap must be expected to gather, at the last wake-up's rate.
pub const MIN_GATHERED: u64 = 2;

/// What the last wake-up brought, for [`nap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// Datagrams read in all.
    pub datagrams: u64,
    /// Of which from clients (list queries and anything else not from a game server).
    pub from_clients: u64,
    /// Time since the wake-up before it that read something.
    pub since_last: Duration,
}

/// How long to nap before waiting for datagrams again, after a wake-up that left the sockets
/// empty; `None`: wait at once (no game-server burst to gather, a client waiting, or a load
/// heavy enough to batch itself). `coalesce` zero turns napping off; `batch` is the datagrams one
/// `recvmmsg` reads; `until_due` caps the nap at the core's next timer.
pub fn nap(w: Wake, coalesce: Duration, batch: usize, until_due: Duration) -> Option<Duration> {
    if coalesce.is_zero() || w.datagrams == 0 || w.from_clients > 0 {
        return None;
    }
    // Datagrams expected in one nap at the last wake-up's rate: datagrams × nap / interval.
    let interval = w.since_last.as_nanos().max(1);
    let expected = u128::from(w.datagrams).saturating_mul(coalesce.as_nanos()) / interval;
    if expected < u128::from(MIN_GATHERED) || expected > batch as u128 {
        return None;
    }
    let nap = coalesce.min(until_due);
    (!nap.is_zero()).then_some(nap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Duration = DEFAULT_COALESCE;
    const FAR: Duration = Duration::from_millis(50);

    fn wake(datagrams: u64, from_clients: u64, since_last_us: u64) -> Wake {
        Wake {
            datagrams,
            from_clients,
            since_last: Duration::from_micros(since_last_us),
        }
    }

    #[test]
    fn a_registration_storm_naps() {
        // 40,000 datagrams a second: one every 25 µs, ten in a 250 µs nap.
        assert_eq!(nap(wake(1, 0, 25), C, 64, FAR), Some(C));
        // After a nap: ten datagrams over the nap and the work, still a storm.
        assert_eq!(nap(wake(10, 0, 270), C, 64, FAR), Some(C));
    }

    #[test]
    fn a_client_is_never_kept_waiting_after_its_query() {
        assert_eq!(nap(wake(1, 1, 25), C, 64, FAR), None);
        assert_eq!(nap(wake(40, 1, 100), C, 64, FAR), None);
    }

    #[test]
    fn a_light_load_waits_at_once() {
        // 1,000 datagrams a second: a nap would gather a quarter of one, and cost a wake-up.
        assert_eq!(nap(wake(1, 0, 1000), C, 64, FAR), None);
        // 4,000 a second: one per nap, nothing gained.
        assert_eq!(nap(wake(1, 0, 250), C, 64, FAR), None);
        // 8,000 a second: two per nap.
        assert_eq!(nap(wake(1, 0, 125), C, 64, FAR), Some(C));
        assert_eq!(nap(wake(0, 0, 10), C, 64, FAR), None);
    }

    #[test]
    fn a_load_that_fills_batches_by_itself_is_not_napped() {
        // 64 datagrams in 100 µs: 160 in a nap, more than a batch.
        assert_eq!(nap(wake(64, 0, 100), C, 64, FAR), None);
        assert_eq!(nap(wake(64, 0, 250), C, 64, FAR), Some(C));
    }

    #[test]
    fn the_nap_ends_by_the_next_timer_and_can_be_turned_off() {
        let due = Duration::from_micros(40);
        assert_eq!(nap(wake(1, 0, 25), C, 64, due), Some(due));
        assert_eq!(nap(wake(1, 0, 25), C, 64, Duration::ZERO), None);
        assert_eq!(nap(wake(1, 0, 25), Duration::ZERO, 64, FAR), None);
        // A wake-up right after the last one (no measurable interval) does not divide by zero.
        assert_eq!(nap(wake(1, 0, 0), C, 64, FAR), None);
        assert_eq!(nap(wake(1, 0, 0), C, 1 << 20, FAR), Some(C));
    }
}
