//! `GET /metrics`: the Prometheus text exposition format (0.0.4), encoded by the `prometheus`
//! crate from a registry built fresh per scrape out of the [`View`] (the cores' figures are
//! already aggregated; nothing here is updated on the packet path).
//!
//! Every name starts `muster_`; counters end `_total`. Game names come from the network, so
//! `muster_servers` carries at most [`MAX_GAME_LABELS`] games, the rest summed under
//! `game="(other)"`: a flood of invented game names cannot blow up the scraper's series.

use super::view::View;
use crate::master::DropReason;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Games given their own `muster_servers` series.
pub const MAX_GAME_LABELS: usize = 50;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Reg(Registry);

impl Reg {
    fn counter(&self, name: &str, help: &str, v: u64) {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(v);
            let _ = self.0.register(Box::new(c));
        }
    }

    fn gauge(&self, name: &str, help: &str, v: i64) {
        if let Ok(g) = IntGauge::new(name, help) {
            g.set(v);
            let _ = self.0.register(Box::new(g));
        }
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str], values: &[(Vec<String>, u64)]) {
        if let Ok(c) = IntCounterVec::new(Opts::new(name, help), labels) {
            for (l, v) in values {
                let l: Vec<&str> = l.iter().map(String::as_str).collect();
                if let Ok(m) = c.get_metric_with_label_values(&l) {
                    m.inc_by(*v);
                }
            }
            let _ = self.0.register(Box::new(c));
        }
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str], values: &[(Vec<String>, i64)]) {
        if let Ok(g) = IntGaugeVec::new(Opts::new(name, help), labels) {
            for (l, v) in values {
                let l: Vec<&str> = l.iter().map(String::as_str).collect();
                if let Ok(m) = g.get_metric_with_label_values(&l) {
                    m.set(*v);
                }
            }
            let _ = self.0.register(Box::new(g));
        }
    }
}

fn int(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// Each HTTP listener's connections and requests, labelled `listener="operator"|"public"`.
fn http(r: &Reg, view: &View) {
    use std::sync::atomic::Ordering::Relaxed;
    let each = |f: &dyn Fn(&super::conns::ConnCounters) -> u64| -> Vec<(Vec<String>, u64)> {
        view.http
            .iter()
            .map(|(name, c)| (vec![(*name).to_owned()], f(c)))
            .collect()
    };
    let l = &["listener"];
    r.counters(
        "muster_http_connections_total",
        "HTTP connections accepted.",
        l,
        &each(&|c| c.accepted.load(Relaxed)),
    );
    r.counters(
        "muster_http_evicted_total",
        "Idle HTTP connections closed to make room for a new one (a cap was reached).",
        l,
        &each(&|c| c.evicted.load(Relaxed)),
    );
    r.counters(
        "muster_http_refused_total",
        "HTTP connections refused: every connection at the cap was busy.",
        l,
        &each(&|c| c.refused.load(Relaxed)),
    );
    r.counters(
        "muster_http_timeouts_total",
        "HTTP connections closed by a timeout (request head, idle, slow reader).",
        l,
        &each(&|c| c.timed_out.load(Relaxed)),
    );
    r.counters(
        "muster_http_requests_total",
        "HTTP requests answered.",
        l,
        &each(&|c| c.requests.load(Relaxed)),
    );
    r.counters(
        "muster_http_bodies_refused_total",
        "HTTP requests refused for announcing a body (413).",
        l,
        &each(&|c| c.bodies_refused.load(Relaxed)),
    );
    let open: Vec<(Vec<String>, i64)> = view
        .http
        .iter()
        .map(|(name, c)| (vec![(*name).to_owned()], int(c.open.load(Relaxed))))
        .collect();
    r.gauges(
        "muster_http_open_connections",
        "HTTP connections open now.",
        l,
        &open,
    );
}

/// Down alerts (`[[watch]]`): transitions seen, alerts posted, failed, dropped; watched servers.
/// Zeros without a watch (the series exist either way).
fn watch(r: &Reg, view: &View) {
    let s = view.watch_summary();
    let t = s.as_ref().map(|s| s.transitions).unwrap_or_default();
    r.counters(
        "muster_watch_transitions_total",
        "Watched servers that stopped being listed (down) or were listed again (up).",
        &["direction"],
        &[(vec!["down".into()], t.down), (vec!["up".into()], t.up)],
    );
    r.counter(
        "muster_alerts_sent_total",
        "Down alerts (messages) delivered to their webhooks.",
        s.as_ref().map_or(0, |s| s.alerts_sent),
    );
    r.counter(
        "muster_alerts_failed_total",
        "Webhook POSTs that failed (connection error, timeout, non-2xx); each retry counts.",
        s.as_ref().map_or(0, |s| s.alerts_failed),
    );
    let dropped: Vec<(Vec<String>, u64)> = view
        .alerts_dropped()
        .iter()
        .map(|(why, n)| (vec![(*why).to_owned()], *n))
        .collect();
    r.counters(
        "muster_alerts_dropped_total",
        "Transitions or alerts never posted, by reason (channel_full, queue_full: transitions; gave_up: messages).",
        &["reason"],
        &dropped,
    );
    let watched = |f: &dyn Fn(&super::view::WatchSummary) -> usize| int(s.as_ref().map_or(0, f));
    r.gauges(
        "muster_watched_servers",
        "Watched servers by state (never_listed: not listed since start).",
        &["state"],
        &[
            (vec!["up".into()], watched(&|s| s.up)),
            (vec!["down".into()], watched(&|s| s.down)),
            (vec!["never_listed".into()], watched(&|s| s.never_listed)),
        ],
    );
}

/// The exposition text.
pub fn render(view: &View) -> String {
    let r = Reg(Registry::new());
    let t = view.totals();
    let (c, e) = (&t.c, &t.e);

    let mut games: Vec<(Vec<String>, i64)> = Vec::new();
    let mut other = [0i64; 2];
    for (i, g) in view.games().into_iter().enumerate() {
        if i < MAX_GAME_LABELS {
            games.push((vec![g.family.to_owned(), g.game], int(g.servers)));
        } else {
            other[usize::from(g.family == "dp")] += int(g.servers);
        }
    }
    for (f, n) in ["valve", "dp"].iter().zip(other) {
        if n > 0 {
            games.push((vec![(*f).to_owned(), "(other)".to_owned()], n));
        }
    }
    r.gauges(
        "muster_servers",
        "Game servers listed, by family and game.",
        &["family", "game"],
        &games,
    );
    r.counter(
        "muster_registrations_total",
        "Game servers newly listed.",
        c.registered,
    );
    r.counter(
        "muster_refreshes_total",
        "Heartbeats that refreshed a listed server.",
        c.refreshed,
    );
    r.counter(
        "muster_expired_total",
        "Servers delisted after their timeout.",
        c.expired,
    );
    r.counter(
        "muster_restored_total",
        "Servers listed from the state file at start.",
        c.restored,
    );
    r.counter(
        "muster_delisted_total",
        "Servers delisted by a config reload (bans, game policy).",
        c.delisted,
    );
    r.counter(
        "muster_challenges_sent_total",
        "Challenges sent to registering servers.",
        c.challenges_sent,
    );
    let xash = c.xash_queries;
    r.counters(
        "muster_queries_total",
        "List queries answered, by protocol.",
        &["protocol"],
        &[
            (vec!["valve".into()], c.valve_queries.saturating_sub(xash)),
            (vec!["xash".into()], xash),
            (vec!["dp".into()], c.dp_queries),
        ],
    );
    r.counter(
        "muster_xash_bursts_reused_total",
        "Xash3D queries answered with a burst built for an earlier query of the same filter and list.",
        c.xash_bursts_reused,
    );
    let drops: Vec<(Vec<String>, u64)> = DropReason::ALL
        .iter()
        .map(|d| (vec![d.name().to_owned()], c.dropped(*d)))
        .collect();
    r.counters(
        "muster_dropped_total",
        "Datagrams dropped without effect, by reason.",
        &["reason"],
        &drops,
    );
    r.counter(
        "muster_valve_walks_total",
        "Valve walks begun by sources off the trusted networks (first pages hold 3x the query).",
        c.walks,
    );
    r.counter(
        "muster_valve_walk_proofs_total",
        "Valve walks proven by a continuation from the exact end of their first page.",
        c.walk_proofs,
    );
    r.counter(
        "muster_valve_wrong_continuations_total",
        "Valve continuations from no page end sent: guesses; the source was barred from proving.",
        c.wrong_continuations,
    );
    r.counter(
        "muster_unproven_bytes_total",
        "Reply bytes admitted to unproven addresses (DarkPlaces, Xash3D): the master-wide budget.",
        c.unproven_bytes,
    );
    r.counter(
        "muster_probes_sent_total",
        "Liveness probes sent to listed servers (A2S_INFO, its challenge step, getinfo; resends included).",
        c.probes_sent,
    );
    r.counter(
        "muster_probes_answered_total",
        "Liveness probes answered.",
        c.probes_answered,
    );
    r.counter(
        "muster_probe_timeouts_total",
        "Liveness probes missed (every attempt unanswered).",
        c.probe_timeouts,
    );
    let hidden: Vec<(Vec<String>, u64)> = crate::master::probe::Hidden::ALL
        .iter()
        .zip(c.hidden)
        .map(|(h, n)| (vec![h.name().to_owned()], n))
        .collect();
    r.counters(
        "muster_servers_hidden_total",
        "Servers taken out of the lists by their probes, by reason.",
        &["reason"],
        &hidden,
    );
    r.counter(
        "muster_forwarded_servers_total",
        "Servers listed or refreshed on a peer's word (peering).",
        c.forwarded_in,
    );
    r.counter(
        "muster_forwarded_gone_total",
        "Servers listed on a peer's word removed because their origin stopped listing them.",
        c.forwarded_gone,
    );
    r.counter(
        "muster_servers_shown_total",
        "Hidden servers listed again after answering a probe.",
        c.shown,
    );
    let now_hidden: Vec<(Vec<String>, i64)> = view
        .hidden()
        .into_iter()
        .map(|(why, n)| (vec![why.to_owned()], int(n)))
        .collect();
    r.gauges(
        "muster_servers_hidden",
        "Servers in the table but in no list now, by reason.",
        &["reason"],
        &now_hidden,
    );
    if let Some(p) = &view.peering {
        let peers = p.json();
        let by_peer = |f: fn(&super::peering::PeerJson) -> u64,
                       g: fn(&super::peering::PeerJson) -> u64| {
            peers
                .iter()
                .flat_map(|j| {
                    [
                        (vec![j.address.clone(), "in".to_owned()], f(j)),
                        (vec![j.address.clone(), "out".to_owned()], g(j)),
                    ]
                })
                .collect::<Vec<_>>()
        };
        r.counters(
            "muster_peer_datagrams_total",
            "Peering datagrams received (verified) from and sent to each peer.",
            &["peer", "direction"],
            &by_peer(|j| j.datagrams_in, |j| j.datagrams_out),
        );
        r.counters(
            "muster_peer_bytes_total",
            "Peering bytes (UDP payload) received from and sent to each peer.",
            &["peer", "direction"],
            &by_peer(|j| j.bytes_in, |j| j.bytes_out),
        );
        r.counters(
            "muster_peer_entries_total",
            "Servers received from and sent to each peer.",
            &["peer", "direction"],
            &by_peer(|j| j.entries_in, |j| j.entries_out),
        );
        let rejected: Vec<(Vec<String>, u64)> = p
            .rejected()
            .into_iter()
            .map(|(k, v)| (vec![k.to_owned()], v))
            .collect();
        r.counters(
            "muster_peer_rejected_total",
            "Peering datagrams refused (mac, replay, unknown_peer, malformed) or batches dropped.",
            &["reason"],
            &rejected,
        );
        let heard: Vec<(Vec<String>, i64)> = peers
            .iter()
            .map(|j| {
                (
                    vec![j.address.clone()],
                    int(j.last_heard_unix_ms.unwrap_or(0) / 1000),
                )
            })
            .collect();
        r.gauges(
            "muster_peer_last_heard_timestamp_seconds",
            "When each peer was last heard (Unix seconds; 0: never).",
            &["peer"],
            &heard,
        );
    }
    r.counter(
        "muster_received_total",
        "Datagrams handled by the master.",
        c.received,
    );
    r.counter(
        "muster_datagrams_received_total",
        "Datagrams read from the sockets.",
        e.datagrams_received,
    );
    r.counter(
        "muster_datagrams_sent_total",
        "Datagrams sent.",
        e.datagrams_sent,
    );
    r.counter(
        "muster_bytes_sent_total",
        "UDP payload bytes sent.",
        e.bytes_sent,
    );
    r.counter(
        "muster_send_errors_total",
        "Sends the kernel refused.",
        e.send_errors,
    );
    r.counter(
        "muster_paced_total",
        "Multi-packet replies paced beyond their window.",
        c.paced,
    );

    let tracked = view.tracked();
    let refused = view.cumulative().refused;
    r.counter(
        "muster_refused_total",
        "Queries and challenges refused by admission control or a ban.",
        refused,
    );
    r.gauge(
        "muster_admission_tracked_sources",
        "Sources admission control keeps budgets for.",
        int(tracked.0),
    );
    r.gauge(
        "muster_admission_tracked_networks",
        "Networks (/24, /48) admission control keeps budgets for.",
        int(tracked.1),
    );
    r.gauge(
        "muster_flood",
        "1 while refusals exceed the flood threshold (see README).",
        i64::from(view.flood()),
    );

    let per_core = |f: &dyn Fn(&crate::engine::CoreStatus) -> i64| -> Vec<(Vec<String>, i64)> {
        view.status
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((vec![i.to_string()], f(s.as_ref()?))))
            .collect()
    };
    r.gauges(
        "muster_core_shard_servers",
        "Servers in each core's own shard.",
        &["core"],
        &per_core(&|s| int(s.shard_servers)),
    );
    r.gauges(
        "muster_core_list_servers",
        "Servers in the list each core serves (Valve IPv4 + DP).",
        &["core"],
        &per_core(&|s| int(s.valve_listed + s.dp_listed)),
    );
    r.gauges(
        "muster_core_received",
        "Datagrams each core handled since start.",
        &["core"],
        &per_core(&|s| int(s.counters.received)),
    );
    let ages: Vec<(Vec<String>, i64)> = view
        .report_seen_unix_ms
        .iter()
        .enumerate()
        .map(|(i, at)| {
            (
                vec![i.to_string()],
                int(view.now_unix_ms.saturating_sub(*at)),
            )
        })
        .collect();
    r.gauges(
        "muster_core_report_age_milliseconds",
        "Since each core last reported (it reports every tick).",
        &["core"],
        &ages,
    );

    r.counter(
        "muster_state_writes_total",
        "State file writes.",
        view.state.writes,
    );
    r.counter(
        "muster_state_write_errors_total",
        "State file writes that failed.",
        view.state.write_errors,
    );
    r.gauge(
        "muster_state_last_write_timestamp_seconds",
        "When the state file was last written (0: never).",
        int(view.state.last_write_unix.unwrap_or(0)),
    );
    r.counter(
        "muster_config_reloads_total",
        "Config reloads taken (SIGHUP).",
        view.config.reloads,
    );
    r.counter(
        "muster_config_reload_errors_total",
        "Config reloads refused (the old config kept).",
        view.config.reload_errors,
    );
    http(&r, view);
    watch(&r, view);
    r.gauge(
        "muster_start_time_seconds",
        "When this process started, Unix seconds.",
        int(view.started_unix_ms / 1000),
    );
    if let Ok(g) = IntGaugeVec::new(
        Opts::new("muster_build_info", "The running version."),
        &["version"],
    ) {
        if let Ok(m) = g.get_metric_with_label_values(&[view.version]) {
            m.set(1);
        }
        let _ = r.0.register(Box::new(g));
    }

    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&r.0.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_series_exist_without_a_watch_and_count_with_one() {
        let text = render(&View::default());
        for line in [
            "muster_alerts_sent_total 0",
            "muster_alerts_failed_total 0",
            "muster_watch_transitions_total{direction=\"down\"} 0",
            "muster_alerts_dropped_total{reason=\"queue_full\"} 0",
            "muster_watched_servers{state=\"never_listed\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let spec = super::super::watch::WatchSpec {
            watched: super::super::watch::Watched::Servers(vec![([192, 0, 2, 1], 1).into()]),
            webhook: super::super::webhook::Webhook::parse("http://h/x").unwrap(),
        };
        let w = super::super::watch::Watcher::new(&[spec], 0);
        let v = View {
            watch: Some(std::sync::Arc::new(w.status())),
            ..View::default()
        };
        let text = render(&v);
        assert!(
            text.contains("muster_watched_servers{state=\"never_listed\"} 1"),
            "{text}"
        );
    }
}
