//! Time as the master core sees it: milliseconds on a monotonic clock the caller owns.
//!
//! The core never reads a clock. The engine passes `Time` from its monotonic clock; simulations pass
//! a virtual one. Only differences matter, so the epoch is the caller's choice.

/// A point on the caller's monotonic clock, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub const fn from_secs(s: u64) -> Self {
        Time(s.saturating_mul(1000))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Time(ms)
    }

    pub const fn millis(self) -> u64 {
        self.0
    }

    /// Whole seconds, saturated to `u32` (136 years), the resolution records store.
    pub const fn secs_u32(self) -> u32 {
        let s = self.0 / 1000;
        if s > u32::MAX as u64 {
            u32::MAX
        } else {
            s as u32
        }
    }

    pub const fn plus_millis(self, ms: u64) -> Self {
        Time(self.0.saturating_add(ms))
    }

    pub const fn plus_secs(self, s: u64) -> Self {
        Time(self.0.saturating_add(s.saturating_mul(1000)))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
