//! `flood`: attack traffic, bounded in count and time, from many simulated sources — and what the
//! target sends back to each (the amplification a spoofer would get from it).

use crate::report::Progress;
use crate::schedule::{Load, Scheduler};
use crate::sources;
use mio::{Events, Poll};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Valve heartbeats and DP infoResponses carrying wrong challenges.
    BadChallenge,
    /// Challenge requests: `q` and DP `heartbeat`.
    Challenge,
    /// List queries: Valve first pages and DP `getservers Nexuiz 3 empty full`, alternating.
    Query,
    /// DP `getservers Nexuiz 3 empty full` only (for masters that speak no Valve).
    DpQuery,
    /// Known message headers with broken bodies.
    Malformed,
    /// Random bytes of random length.
    Random,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<SocketAddr>,
    pub kind: Kind,
    pub sources: usize,
    pub rate: f64,
    pub count: Option<u64>,
    pub duration: Duration,
    pub source_base: u8,
    pub seed: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub kind: Option<Kind>,
    pub sources: usize,
    pub sent_datagrams: u64,
    pub sent_bytes: u64,
    pub reply_datagrams: u64,
    pub reply_bytes: u64,
    /// Reply bytes over sent bytes, all sources together.
    pub amplification: f64,
    /// The largest reply-bytes / sent-bytes of any one source.
    pub max_source_amplification: f64,
    /// Sources that got at least one reply.
    pub sources_answered: usize,
    /// Bytes sent and received back in each second of the run.
    pub per_second: Vec<Second>,
    /// Reply bytes over sent bytes from the fifth second on (what a sustained flood earns once
    /// the first bursts are spent).
    pub amplification_after_5s: f64,
    pub duration_secs: f64,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Second {
    pub sent_bytes: u64,
    pub reply_bytes: u64,
}

/// xorshift64*: deterministic, seedable, good enough for junk.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Datagram `n` of a flood of `kind`; `odd` picks between a kind's two forms.
fn payload_of(kind: Kind, odd: bool, n: u64, rng: &mut Rng, out: &mut Vec<u8>) {
    out.clear();
    match kind {
        Kind::BadChallenge if odd => {
            out.extend_from_slice(b"\xFF\xFF\xFF\xFFinfoResponse\n");
            out.extend_from_slice(
                format!(
                    "\\gamename\\Nexuiz\\protocol\\3\\clients\\0\\sv_maxclients\\8\\challenge\\{:010x}",
                    rng.next() & 0xFF_FFFF_FFFF
                )
                .as_bytes(),
            );
        }
        Kind::BadChallenge => out.extend_from_slice(
            format!(
                "0\n\\challenge\\{}\\protocol\\48\\gamedir\\cstrike\\map\\de_dust2\\max\\16\\players\\0\n",
                rng.next() as u32
            )
            .as_bytes(),
        ),
        Kind::Challenge if odd => out.extend_from_slice(b"\xFF\xFF\xFF\xFFheartbeat DarkPlaces\n"),
        Kind::Challenge => out.extend_from_slice(b"q"),
        Kind::Query if odd => out.extend_from_slice(b"\xFF\xFF\xFF\xFFgetservers Nexuiz 3 empty full"),
        Kind::Query => out.extend_from_slice(b"1\xff0.0.0.0:0\0\0"),
        Kind::DpQuery => out.extend_from_slice(b"\xFF\xFF\xFF\xFFgetservers Nexuiz 3 empty full"),
        Kind::Malformed => {
            const CASES: [&[u8]; 8] = [
                b"1\xff999.1.2.3:1\0\0",
                b"1\xff0.0.0.0:0",
                b"\xFF\xFF\xFF\xFFgetservers",
                b"\xFF\xFF\xFF\xFFgetserversExt Nexuiz x empty",
                b"0\n\\challenge",
                b"\xFF\xFF\xFF\xFFinfoResponse\n\\a",
                b"\xFF\xFF\xFF\xFFheartbeat \n",
                b"q\xFF\xFF",
            ];
            out.extend_from_slice(CASES[(n % CASES.len() as u64) as usize]);
        }
        Kind::Random => {
            let len = 1 + (rng.next() % 1400) as usize;
            out.extend((0..len).map(|_| rng.next() as u8));
        }
    }
}

pub fn run(cfg: &Config) -> Result<Report, String> {
    let start = Instant::now();
    let n = cfg.sources.max(1);
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let first = *cfg.targets.first().ok_or("no --target")?;
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        let host = sources::host(cfg.source_base, i);
        socks.push(sources::bind_registered(&poll, host, first, i)?);
    }
    let mut sent = vec![0u64; n];
    let mut got = vec![0u64; n];
    let mut r = Report {
        kind: Some(cfg.kind),
        sources: n,
        ..Report::default()
    };
    let end = cfg.duration.as_nanos() as u64;
    let mut sched = Scheduler::new(
        Load::Open {
            rate: cfg.rate,
            max_in_flight: usize::MAX,
        },
        cfg.count,
        end,
    );
    let mut rng = Rng(cfg.seed | 1);
    let mut out = Vec::with_capacity(1500);
    let mut buf = vec![0u8; 65536];
    let mut events = Events::with_capacity(1024);
    let mut progress = Progress::new();
    // After the last send, replies still in flight are collected for this long.
    let grace = Duration::from_millis(500);
    let mut last_send = Instant::now();
    loop {
        let now = start.elapsed().as_nanos() as u64;
        // Send what is due (at most 1024 per round, so replies are read in between).
        for _ in 0..1024 {
            if sched.start(now).is_none() {
                break;
            }
            sched.finish();
            let k = r.sent_datagrams;
            let i = (k % n as u64) as usize;
            // Each source alternates between the kinds (round by round over the sources).
            let round = k / n as u64;
            payload_of(cfg.kind, (round + k) % 2 == 1, k, &mut rng, &mut out);
            let second = (now / 1_000_000_000) as usize;
            let target = cfg.targets[(k as usize / n) % cfg.targets.len()];
            if socks[i].send_to(&out, target).is_ok() {
                r.sent_datagrams += 1;
                r.sent_bytes += out.len() as u64;
                sent[i] += out.len() as u64;
                second_mut(&mut r.per_second, second).sent_bytes += out.len() as u64;
                last_send = Instant::now();
            } else {
                // A full socket buffer: this datagram is skipped, not retried (counted as unsent).
                r.sent_datagrams += 1;
            }
        }
        if sched.done(now) && last_send.elapsed() >= grace {
            break;
        }
        let wait = sched
            .next_due()
            .map(|d| d.saturating_sub(now))
            .unwrap_or(10_000_000)
            .min(10_000_000);
        sources::wait(&mut poll, &mut events, Duration::from_nanos(wait))?;
        let second = (start.elapsed().as_nanos() / 1_000_000_000) as usize;
        for ev in &events {
            let i = ev.token().0;
            let Some(s) = socks.get(i) else { continue };
            let _ = sources::drain(s, &mut buf, 4096, |d, _| {
                r.reply_datagrams += 1;
                r.reply_bytes += d.len() as u64;
                got[i] += d.len() as u64;
                second_mut(&mut r.per_second, second).reply_bytes += d.len() as u64;
            });
        }
        progress.tick(|| {
            format!(
                "flood: {} sent, {} replies ({} bytes)",
                r.sent_datagrams, r.reply_datagrams, r.reply_bytes
            )
        });
    }
    progress.finish();
    r.duration_secs = start.elapsed().as_secs_f64();
    r.amplification = ratio(r.reply_bytes, r.sent_bytes);
    r.max_source_amplification = sent
        .iter()
        .zip(&got)
        .map(|(&s, &g)| ratio(g, s))
        .fold(0.0, f64::max);
    r.sources_answered = got.iter().filter(|&&g| g > 0).count();
    let later = r.per_second.iter().skip(5);
    let (s5, g5) = later.fold((0, 0), |(s, g), x| (s + x.sent_bytes, g + x.reply_bytes));
    r.amplification_after_5s = ratio(g5, s5);
    Ok(r)
}

fn second_mut(v: &mut Vec<Second>, i: usize) -> &mut Second {
    if v.len() <= i {
        v.resize(i + 1, Second::default());
    }
    &mut v[i]
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster::wire::{Kind as W, classify};

    #[test]
    fn payloads_are_what_they_claim() {
        let mut rng = Rng(7);
        let mut out = Vec::new();
        let mut kinds = Vec::new();
        for (kind, n) in [
            (Kind::BadChallenge, 0),
            (Kind::BadChallenge, 1),
            (Kind::Challenge, 0),
            (Kind::Challenge, 1),
            (Kind::Query, 0),
            (Kind::Query, 1),
        ] {
            payload_of(kind, n % 2 == 1, n, &mut rng, &mut out);
            kinds.push(classify(&out));
        }
        assert_eq!(
            kinds,
            [
                W::ValveHeartbeat,
                W::DpInfoResponse,
                W::ValveChallengeRequest,
                W::DpHeartbeat,
                W::ValveListQuery,
                W::DpGetServers
            ]
        );
        for n in 0..100 {
            payload_of(Kind::Random, false, n, &mut rng, &mut out);
            assert!((1..=1400).contains(&out.len()));
        }
        assert_eq!(ratio(30, 10), 3.0);
        assert_eq!(ratio(30, 0), 0.0);
    }
}
