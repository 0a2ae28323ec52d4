//! One webhook's outbox, sans-IO: [`Notifier::push`] a transition, [`Notifier::poll`] for the next
//! POST to make, tell [`Notifier::done`] how it went. The alert thread ([`super::alert`]) does the
//! HTTP and the clock.
//!
//! - **Bursts become one digest.** A transition waits until no other has come for [`QUIET_MS`]
//!   (at most [`MAX_HOLD_MS`] after the first waiting one), so a burst is seen whole. Then, if more
//!   than [`DIGEST_AFTER`] transitions came in the last [`DIGEST_WINDOW_MS`] (those already sent
//!   count) and more than one waits, everything waiting goes in one digest message; otherwise the
//!   first waiting one goes alone.
//! - **A rate limit.** At most [`MAX_PER_MINUTE`] messages in any minute.
//!   A message over the limit waits — its transitions stay queued and join the next digest — so
//!   nothing is lost to the limit; only a queue over [`MAX_HELD`] drops transitions (counted).
//! - **Retries.** One POST at a time, in order. A connection error, a timeout, a 5xx, 408 or 429 is
//!   retried after 1, 2, 4, 8 s (or the `Retry-After` the 429 asked for, at most
//!   [`MAX_RETRY_AFTER_MS`]), [`MAX_ATTEMPTS`] attempts in all; another 4xx or a redirect means the
//!   webhook will not take it (deleted, malformed): no retry.

use super::message;
use super::watch::Transition;
use bytes::Bytes;
use serde::Serialize;
use std::collections::VecDeque;

/// A transition waits until none has come for this long.
pub const QUIET_MS: u64 = 5_000;
/// …and never longer than this after the first waiting one (a steady trickle still goes out).
pub const MAX_HOLD_MS: u64 = 60_000;
/// More than this many transitions within [`DIGEST_WINDOW_MS`] make a digest.
pub const DIGEST_AFTER: usize = 5;
pub const DIGEST_WINDOW_MS: u64 = 60_000;
/// Messages per minute per webhook, at most (Discord allows 30, Slack about 60).
pub const MAX_PER_MINUTE: u64 = 10;
/// POSTs of one message at most, the first included.
pub const MAX_ATTEMPTS: u32 = 5;
/// The first retry's wait; each next one doubles it.
pub const RETRY_BASE_MS: u64 = 1_000;
/// The longest wait a `Retry-After` can ask for.
pub const MAX_RETRY_AFTER_MS: u64 = 300_000;
/// Transitions waiting per webhook at most; more are dropped (a digest counts this many at most).
pub const MAX_HELD: usize = 10_000;

/// A POST to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    pub body: Bytes,
    /// Transitions it tells of.
    pub transitions: usize,
    /// 1 for the first try.
    pub attempt: u32,
}

/// How a POST went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Worth another try: connection error, timeout, 5xx, 408, 429 (with its `Retry-After`).
    Failed { retry_after_ms: Option<u64> },
    /// The webhook will not take it (another 4xx, a redirect): no retry.
    Refused,
}

impl Outcome {
    /// The outcome of an HTTP answer: its status and `Retry-After` (delay-seconds; an HTTP date
    /// is not honoured: the backoff applies).
    pub fn of_reply(status: u16, retry_after: Option<&str>) -> Outcome {
        match status {
            200..=299 => Outcome::Delivered,
            408 | 429 | 500..=599 => Outcome::Failed {
                retry_after_ms: retry_after
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| (s.min(MAX_RETRY_AFTER_MS as f64 / 1000.0) * 1000.0).ceil() as u64),
            },
            _ => Outcome::Refused,
        }
    }
}

/// What a webhook's outbox did since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Messages delivered.
    pub sent: u64,
    /// Transitions those messages told of.
    pub transitions_sent: u64,
    /// POSTs that failed (each retry counts).
    pub failed: u64,
    /// Messages given up on (every attempt failed, or refused).
    pub gave_up: u64,
    /// Transitions dropped because [`MAX_HELD`] were waiting.
    pub queue_full: u64,
}

#[derive(Debug)]
struct Current {
    post: Post,
    /// When to try again; `None` while a POST is out.
    retry_at: Option<u64>,
}

#[derive(Debug)]
pub struct Notifier {
    discord: bool,
    held: VecDeque<Transition>,
    first_held_ms: u64,
    last_push_ms: u64,
    /// When the last [`DIGEST_AFTER`] + 1 transitions came: enough to tell a burst.
    recent: VecDeque<u64>,
    /// When the messages of the last minute were first posted (at most [`MAX_PER_MINUTE`]).
    sent_at: VecDeque<u64>,
    current: Option<Current>,
    counts: Counts,
}

impl Notifier {
    /// `discord`: the body Discord takes rather than Slack's.
    pub fn new(discord: bool) -> Notifier {
        Notifier {
            discord,
            held: VecDeque::new(),
            first_held_ms: 0,
            last_push_ms: 0,
            recent: VecDeque::with_capacity(DIGEST_AFTER + 1),
            sent_at: VecDeque::with_capacity(MAX_PER_MINUTE as usize),
            current: None,
            counts: Counts::default(),
        }
    }

    /// Queues a transition; `false` if it was dropped ([`MAX_HELD`] already wait).
    pub fn push(&mut self, now_ms: u64, t: Transition) -> bool {
        if self.recent.len() > DIGEST_AFTER {
            self.recent.pop_front();
        }
        self.recent.push_back(now_ms);
        if self.held.len() >= MAX_HELD {
            self.counts.queue_full += 1;
            return false;
        }
        if self.held.is_empty() {
            self.first_held_ms = now_ms;
        }
        self.last_push_ms = now_ms;
        self.held.push_back(t);
        true
    }

    /// The POST to make now, if any (then none until [`Notifier::done`]).
    pub fn poll(&mut self, now_ms: u64) -> Option<Post> {
        if let Some(c) = &mut self.current {
            return match c.retry_at {
                Some(at) if now_ms >= at => {
                    c.retry_at = None;
                    c.post.attempt += 1;
                    Some(c.post.clone())
                }
                _ => None,
            };
        }
        if self.held.is_empty() {
            return None;
        }
        let settled = now_ms >= self.last_push_ms.saturating_add(QUIET_MS)
            || now_ms >= self.first_held_ms.saturating_add(MAX_HOLD_MS);
        if !settled || !self.take_token(now_ms) {
            return None;
        }
        let burst = self.recent.len() > DIGEST_AFTER
            && self
                .recent
                .front()
                .is_some_and(|t| now_ms.saturating_sub(*t) <= DIGEST_WINDOW_MS);
        let (text, n) = if self.held.len() > DIGEST_AFTER || (burst && self.held.len() > 1) {
            let all: Vec<Transition> = self.held.drain(..).collect();
            (message::digest(&all, self.discord), all.len())
        } else {
            let t = self.held.pop_front()?;
            (message::transition(&t, self.discord), 1)
        };
        let post = Post {
            body: Bytes::from(message::body(&text, self.discord)),
            transitions: n,
            attempt: 1,
        };
        self.current = Some(Current {
            post: post.clone(),
            retry_at: None,
        });
        Some(post)
    }

    /// How the POST [`Notifier::poll`] gave went, at `now_ms`.
    pub fn done(&mut self, now_ms: u64, outcome: Outcome) {
        let Some(c) = &mut self.current else {
            return;
        };
        if c.retry_at.is_some() {
            return;
        }
        let attempt = c.post.attempt;
        match outcome {
            Outcome::Delivered => {
                self.counts.sent += 1;
                self.counts.transitions_sent += c.post.transitions as u64;
                self.current = None;
            }
            Outcome::Failed { retry_after_ms } if attempt < MAX_ATTEMPTS => {
                self.counts.failed += 1;
                let wait = match retry_after_ms {
                    Some(ms) => ms.min(MAX_RETRY_AFTER_MS),
                    None => RETRY_BASE_MS << attempt.saturating_sub(1).min(16),
                };
                c.retry_at = Some(now_ms.saturating_add(wait));
            }
            Outcome::Failed { .. } | Outcome::Refused => {
                self.counts.failed += 1;
                self.counts.gave_up += 1;
                self.current = None;
            }
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Transitions waiting, plus one for a message being sent or retried.
    pub fn pending(&self) -> usize {
        self.held.len() + usize::from(self.current.is_some())
    }

    /// A place in the rate limit: fewer than [`MAX_PER_MINUTE`] messages in the last minute.
    fn take_token(&mut self, now_ms: u64) -> bool {
        while self
            .sent_at
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= 60_000)
        {
            self.sent_at.pop_front();
        }
        if self.sent_at.len() as u64 >= MAX_PER_MINUTE {
            return false;
        }
        self.sent_at.push_back(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16, up: bool) -> Transition {
        Transition {
            hook: 0,
            address: ([192, 0, 2, 1], port).into(),
            name: format!("s{port}"),
            game: "g".to_owned(),
            up,
            after_ms: 60_000,
            at_unix_ms: 0,
        }
    }

    fn text(p: &Post) -> String {
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        v["text"].as_str().unwrap().to_owned()
    }

    /// Polls every 100 ms from `from` to `to`, answering every POST with `answer`; the posts.
    fn run(n: &mut Notifier, from: u64, to: u64, answer: Outcome) -> Vec<(u64, Post)> {
        let mut out = Vec::new();
        let mut now = from;
        while now <= to {
            if let Some(p) = n.poll(now) {
                n.done(now, answer);
                out.push((now, p));
            }
            now += 100;
        }
        out
    }

    #[test]
    fn one_transition_waits_for_quiet_then_goes_alone() {
        let mut n = Notifier::new(false);
        assert!(n.push(1_000, t(1, false)));
        assert_eq!(n.poll(1_000 + QUIET_MS - 1), None, "still quiet time");
        let p = n.poll(1_000 + QUIET_MS).unwrap();
        assert_eq!(text(&p), "s1 (192.0.2.1:1) is down after 1m up");
        assert_eq!((p.transitions, p.attempt), (1, 1));
        assert_eq!(n.poll(1_000 + QUIET_MS), None, "one POST at a time");
        assert_eq!(n.pending(), 1);
        n.done(7_000, Outcome::Delivered);
        assert_eq!(n.poll(100_000), None);
        assert_eq!(n.pending(), 0);
        let c = n.counts();
        assert_eq!((c.sent, c.transitions_sent, c.failed), (1, 1, 0));
    }

    #[test]
    fn discord_gets_content() {
        let mut n = Notifier::new(true);
        n.push(0, t(1, true));
        let p = n.poll(QUIET_MS).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["content"], "s1 (192.0.2.1:1) is back after 1m down");
    }

    #[test]
    fn a_burst_is_one_digest() {
        let mut n = Notifier::new(false);
        // Twelve servers go down over 3 s (expiries spread over dumps): one message.
        for i in 0..12 {
            n.push(10_000 + i * 200, t(i as u16, false));
        }
        let posts = run(&mut n, 10_000, 200_000, Outcome::Delivered);
        assert_eq!(posts.len(), 1, "{posts:?}");
        let (at, p) = &posts[0];
        assert_eq!(*at, 10_000 + 11 * 200 + QUIET_MS);
        assert_eq!(p.transitions, 12);
        assert!(
            text(p).starts_with("12 servers down, 0 up in the last minute: s0 (192.0.2.1:0), "),
            "{}",
            text(p)
        );
        assert!(text(p).ends_with("… and 2 more"));
        // The same twelve come back 30 s later: still within the minute of the burst, one digest.
        for i in 0..12 {
            n.push(40_000 + i * 100, t(i as u16, true));
        }
        let posts = run(&mut n, 40_000, 200_000, Outcome::Delivered);
        assert_eq!(posts.len(), 1);
        assert!(text(&posts[0].1).starts_with("0 servers down, 12 up"));
        assert_eq!(n.counts().transitions_sent, 24);
    }

    #[test]
    fn a_few_transitions_go_one_by_one_and_a_burst_after_them_is_a_digest() {
        let mut n = Notifier::new(false);
        n.push(0, t(1, false));
        n.push(1_000, t(1, true));
        n.push(2_000, t(2, false));
        let posts = run(&mut n, 0, 30_000, Outcome::Delivered);
        let texts: Vec<String> = posts.iter().map(|(_, p)| text(p)).collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts[0].contains("s1") && texts[0].contains("down"));
        assert!(texts[1].contains("s1") && texts[1].contains("back"));
        assert!(texts[2].contains("s2"));
        // Within the same minute, three more: six in a minute, so those three are a digest...
        for i in 3..6 {
            n.push(40_000, t(i, false));
        }
        let posts = run(&mut n, 40_000, 50_000, Outcome::Delivered);
        assert_eq!(posts.len(), 1);
        assert!(text(&posts[0].1).starts_with("3 servers down"));
        // ...but a single one later still goes alone, saying more than a digest would.
        n.push(50_000, t(9, false));
        let posts = run(&mut n, 50_000, 60_000, Outcome::Delivered);
        assert_eq!(posts.len(), 1);
        assert!(text(&posts[0].1).contains("is down after"));
    }

    #[test]
    fn a_steady_trickle_still_goes_out_within_the_hold() {
        let mut n = Notifier::new(false);
        let mut sent = Vec::new();
        // One transition every 2 s for 3 minutes: never quiet for 5 s.
        for step in 0..900u64 {
            let now = step * 200;
            if step % 10 == 0 {
                n.push(now, t((step / 10) as u16, false));
            }
            if let Some(p) = n.poll(now) {
                n.done(now, Outcome::Delivered);
                sent.push((now, p.transitions));
            }
        }
        assert!(!sent.is_empty());
        assert_eq!(
            sent[0].0, MAX_HOLD_MS,
            "the first goes when the hold is over"
        );
        assert!(sent.iter().all(|(_, n)| *n > 1), "digests: {sent:?}");
    }

    #[test]
    fn the_rate_limit_delays_and_merges_rather_than_drops() {
        let mut n = Notifier::new(false);
        let mut pushed = 0;
        let mut posts = Vec::new();
        // One every 5.1 s (each alone after its quiet time) for ten minutes.
        for step in 0..6_000u64 {
            let now = step * 100;
            if step % 51 == 0 {
                n.push(now, t(step as u16, false));
                pushed += 1;
            }
            if let Some(p) = n.poll(now) {
                n.done(now, Outcome::Delivered);
                posts.push((now, p.transitions));
            }
        }
        posts.extend(
            run(&mut n, 600_000, 1_000_000, Outcome::Delivered)
                .iter()
                .map(|(a, p)| (*a, p.transitions)),
        );
        for (i, (at, _)) in posts.iter().enumerate() {
            let in_minute = posts[i..]
                .iter()
                .take_while(|(b, _)| *b < at + 60_000)
                .count();
            assert!(in_minute as u64 <= MAX_PER_MINUTE, "{in_minute} at {at}");
        }
        let told: usize = posts.iter().map(|(_, n)| n).sum();
        assert_eq!(told, pushed, "every transition told, none dropped");
        assert_eq!(n.counts().queue_full, 0);
    }

    #[test]
    fn failures_are_retried_with_backoff_then_given_up() {
        let mut n = Notifier::new(false);
        n.push(0, t(1, false));
        let failed = Outcome::Failed {
            retry_after_ms: None,
        };
        let p = n.poll(QUIET_MS).unwrap();
        n.done(QUIET_MS, failed);
        let mut at = QUIET_MS;
        for (wait, attempt) in [(1_000, 2), (2_000, 3), (4_000, 4), (8_000, 5)] {
            assert_eq!(n.poll(at + wait - 1), None);
            let again = n.poll(at + wait).unwrap();
            assert_eq!(
                (again.body.clone(), again.attempt),
                (p.body.clone(), attempt)
            );
            at += wait;
            n.done(at, failed);
        }
        assert_eq!(
            n.poll(at + 1_000_000),
            None,
            "given up after {MAX_ATTEMPTS}"
        );
        let c = n.counts();
        assert_eq!((c.sent, c.failed, c.gave_up), (0, 5, 1));
        assert_eq!(n.pending(), 0);
    }

    #[test]
    fn a_failure_then_success_is_delivered_once_and_retry_after_is_honoured() {
        let mut n = Notifier::new(false);
        n.push(0, t(1, false));
        n.poll(QUIET_MS).unwrap();
        n.done(
            QUIET_MS,
            Outcome::Failed {
                retry_after_ms: Some(30_000),
            },
        );
        assert_eq!(n.poll(QUIET_MS + 29_999), None);
        let p = n.poll(QUIET_MS + 30_000).unwrap();
        assert_eq!(p.attempt, 2);
        n.done(QUIET_MS + 30_000, Outcome::Delivered);
        assert_eq!(n.poll(1_000_000), None);
        assert_eq!((n.counts().sent, n.counts().failed), (1, 1));
        // An absurd Retry-After is capped.
        n.push(1_000_000, t(2, false));
        n.poll(1_000_000 + QUIET_MS).unwrap();
        n.done(
            1_005_000,
            Outcome::Failed {
                retry_after_ms: Some(u64::MAX),
            },
        );
        assert!(n.poll(1_005_000 + MAX_RETRY_AFTER_MS).is_some());
    }

    #[test]
    fn replies_map_to_outcomes() {
        let failed = |ms| Outcome::Failed { retry_after_ms: ms };
        assert_eq!(Outcome::of_reply(204, None), Outcome::Delivered);
        assert_eq!(Outcome::of_reply(200, Some("5")), Outcome::Delivered);
        assert_eq!(Outcome::of_reply(500, None), failed(None));
        assert_eq!(Outcome::of_reply(503, Some("2")), failed(Some(2_000)));
        assert_eq!(Outcome::of_reply(429, Some(" 0.25 ")), failed(Some(250)));
        assert_eq!(
            Outcome::of_reply(429, Some("1e9")),
            failed(Some(MAX_RETRY_AFTER_MS))
        );
        assert_eq!(
            Outcome::of_reply(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            failed(None)
        );
        assert_eq!(Outcome::of_reply(429, Some("-1")), failed(None));
        assert_eq!(Outcome::of_reply(408, None), failed(None));
        for refused in [301, 400, 401, 404, 413, 100] {
            assert_eq!(
                Outcome::of_reply(refused, None),
                Outcome::Refused,
                "{refused}"
            );
        }
    }

    #[test]
    fn a_refusal_is_not_retried_and_the_queue_is_bounded() {
        let mut n = Notifier::new(false);
        n.push(0, t(1, false));
        n.poll(QUIET_MS).unwrap();
        n.done(QUIET_MS, Outcome::Refused);
        assert_eq!(n.poll(1_000_000), None);
        assert_eq!((n.counts().failed, n.counts().gave_up), (1, 1));
        for i in 0..MAX_HELD + 5 {
            n.push(2_000_000, t(i as u16, false));
        }
        assert_eq!(n.counts().queue_full, 5);
        assert_eq!(n.pending(), MAX_HELD);
        let p = n.poll(2_000_000 + QUIET_MS).unwrap();
        assert_eq!(p.transitions, MAX_HELD);
        // A done with nothing out is ignored.
        n.done(2_000_000 + QUIET_MS, Outcome::Delivered);
        n.done(2_000_000 + QUIET_MS, Outcome::Delivered);
        assert_eq!(n.counts().sent, 1);
    }
}
