//! The last hour in memory: one point of rates every sample interval, for the status page's charts.

use crate::engine::EngineCounters;
use crate::master::Counters;
use serde::Serialize;
use std::collections::VecDeque;

/// Points kept: an hour at the default 10-second interval.
pub const MAX_HISTORY: usize = 360;
/// The default interval between points.
pub const DEFAULT_SAMPLE_EVERY_SECS: u64 = 10;

/// The cumulative figures a point is the difference of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cumulative {
    pub registrations: u64,
    pub queries: u64,
    pub bytes_out: u64,
    pub drops: u64,
    pub refused: u64,
}

impl Cumulative {
    pub fn of(c: &Counters, e: &EngineCounters) -> Self {
        use crate::master::DropReason;
        Self {
            registrations: c.registered,
            queries: c.valve_queries.wrapping_add(c.dp_queries),
            bytes_out: e.bytes_sent,
            drops: c.dropped_total(),
            refused: DropReason::ALL
                .iter()
                .filter(|d| d.is_refusal())
                .fold(0u64, |a, d| a.wrapping_add(c.dropped(*d))),
        }
    }
}

/// Rates over one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// Unix seconds (millisecond precision) at the end of the interval.
    pub t: f64,
    pub registrations: f64,
    pub queries: f64,
    pub bytes_out: f64,
    pub drops: f64,
    pub refused: f64,
    pub servers: u64,
}

/// Rates per second between two cumulative readings `secs` apart (counters only grow; a core
/// that restarted its count would read as zero, not negative).
pub fn rates(from: &Cumulative, to: &Cumulative, secs: f64, t: f64, servers: u64) -> Point {
    let r = |a: u64, b: u64| {
        if secs > 0.0 {
            b.saturating_sub(a) as f64 / secs
        } else {
            0.0
        }
    };
    Point {
        t,
        registrations: r(from.registrations, to.registrations),
        queries: r(from.queries, to.queries),
        bytes_out: r(from.bytes_out, to.bytes_out),
        drops: r(from.drops, to.drops),
        refused: r(from.refused, to.refused),
        servers,
    }
}

/// A ring of at most [`MAX_HISTORY`] points, oldest first.
#[derive(Clone, Debug, Default)]
pub struct History {
    points: VecDeque<Point>,
}

impl History {
    pub fn push(&mut self, p: Point) {
        if self.points.len() == MAX_HISTORY {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    pub fn last(&self) -> Option<&Point> {
        self.points.back()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_a_bounded_ring() {
        let a = Cumulative {
            registrations: 10,
            queries: 100,
            bytes_out: 1000,
            drops: 0,
            refused: 0,
        };
        let b = Cumulative {
            registrations: 30,
            queries: 150,
            bytes_out: 6000,
            drops: 5,
            refused: 2,
        };
        let p = rates(&a, &b, 10.0, 7.0, 3);
        assert_eq!(
            (p.registrations, p.queries, p.bytes_out, p.drops, p.refused),
            (2.0, 5.0, 500.0, 0.5, 0.2)
        );
        assert_eq!(rates(&b, &a, 10.0, 7.0, 3).queries, 0.0, "never negative");
        let mut h = History::default();
        for t in 0..(MAX_HISTORY + 5) {
            h.push(Point { t: t as f64, ..p });
        }
        assert_eq!(h.len(), MAX_HISTORY);
        assert_eq!(h.points().next().unwrap().t, 5.0, "the oldest went first");
        assert_eq!(h.last().unwrap().t, (MAX_HISTORY + 4) as f64);
    }
}
