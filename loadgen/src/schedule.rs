//! When to start the next operation: closed loop (keep `concurrency` in flight) or open loop
//! (`rate` per second on a fixed timetable). Sans-IO: times are nanoseconds since the run began.
//!
//! Open-loop latency is measured from the *intended* start, so a master that falls behind cannot
//! hide it by slowing the load generator down (no coordinated omission).

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    Closed { concurrency: usize },
    Open { rate: f64, max_in_flight: usize },
}

#[derive(Debug)]
pub struct Scheduler {
    load: Load,
    /// Stop starting after this many (or never, `u64::MAX`).
    limit: u64,
    /// Stop starting at this time.
    until_ns: u64,
    started: u64,
    in_flight: usize,
}

impl Scheduler {
    pub fn new(load: Load, limit: Option<u64>, until_ns: u64) -> Self {
        Self {
            load,
            limit: limit.unwrap_or(u64::MAX),
            until_ns,
            started: 0,
            in_flight: 0,
        }
    }

    #[cfg(test)]
    pub fn started(&self) -> u64 {
        self.started
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The intended start time of an operation to begin now, if one is due; the caller must start
    /// it (the scheduler counts it as in flight).
    pub fn start(&mut self, now: u64) -> Option<u64> {
        if self.started >= self.limit {
            return None;
        }
        let intended = match self.load {
            Load::Closed { concurrency } => {
                if self.in_flight >= concurrency.max(1) || now >= self.until_ns {
                    return None;
                }
                now
            }
            Load::Open {
                rate,
                max_in_flight,
            } => {
                let t = self.intended(rate, self.started);
                if t > now || t >= self.until_ns || self.in_flight >= max_in_flight.max(1) {
                    return None;
                }
                t
            }
        };
        self.started += 1;
        self.in_flight += 1;
        Some(intended)
    }

    pub fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Whether nothing more will start and nothing is in flight.
    pub fn done(&self, now: u64) -> bool {
        self.in_flight == 0
            && (self.started >= self.limit || now >= self.until_ns || self.open_exhausted())
    }

    fn open_exhausted(&self) -> bool {
        match self.load {
            Load::Open { rate, .. } => self.intended(rate, self.started) >= self.until_ns,
            Load::Closed { .. } => false,
        }
    }

    /// When the next start is due (open loop), for the caller's poll timeout.
    pub fn next_due(&self) -> Option<u64> {
        match self.load {
            Load::Open { rate, .. } if self.started < self.limit => {
                Some(self.intended(rate, self.started))
            }
            _ => None,
        }
    }

    fn intended(&self, rate: f64, n: u64) -> u64 {
        (n as f64 * 1e9 / rate.max(1e-9)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn closed_loop_keeps_concurrency_in_flight_up_to_the_limit() {
        let mut s = Scheduler::new(Load::Closed { concurrency: 3 }, Some(5), u64::MAX);
        let started: Vec<_> = (0..10).filter_map(|_| s.start(7)).collect();
        assert_eq!(started, [7, 7, 7]);
        s.finish();
        assert_eq!(s.start(9), Some(9));
        assert_eq!(s.start(9), None);
        s.finish();
        s.finish();
        assert_eq!(s.start(10), Some(10));
        assert_eq!(s.start(10), None, "limit of 5 reached");
        assert!(!s.done(10));
        for _ in 0..3 {
            s.finish();
        }
        assert!(s.done(10));
    }

    #[test]
    fn open_loop_follows_the_timetable_and_reports_intended_times() {
        // 1000/s: one every millisecond, whatever the caller's lateness.
        let mut s = Scheduler::new(
            Load::Open {
                rate: 1000.0,
                max_in_flight: 100,
            },
            None,
            10 * MS,
        );
        assert_eq!(s.start(0), Some(0));
        assert_eq!(s.start(0), None, "the next is due at 1 ms");
        assert_eq!(s.next_due(), Some(MS));
        // Woken late at 3.5 ms: the three overdue starts come out with their intended times.
        let late: Vec<_> = std::iter::from_fn(|| s.start(3 * MS + MS / 2)).collect();
        assert_eq!(late, [MS, 2 * MS, 3 * MS]);
        // Nothing is started at or after the end of the run.
        let rest: Vec<_> = std::iter::from_fn(|| s.start(20 * MS)).collect();
        assert_eq!(rest.len(), 6, "4 ms .. 9 ms");
        assert_eq!(s.started(), 10);
        for _ in 0..10 {
            s.finish();
        }
        assert!(s.done(20 * MS));
    }

    #[test]
    fn open_loop_in_flight_cap_delays_but_keeps_intended_times() {
        let mut s = Scheduler::new(
            Load::Open {
                rate: 1000.0,
                max_in_flight: 1,
            },
            Some(3),
            u64::MAX,
        );
        assert_eq!(s.start(5 * MS), Some(0));
        assert_eq!(s.start(5 * MS), None, "one in flight");
        s.finish();
        // Started late, measured from when it should have started.
        assert_eq!(s.start(6 * MS), Some(MS));
    }
}
