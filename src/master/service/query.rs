//! List queries: Valve pages of the client's walk (3× the query until the walk is proven),
//! Xash3D bursts and DarkPlaces replies (both under the master-wide budget for unproven replies),
//! each admitted, charged and sent through [`Master::send`].

use crate::master::admission::{Grant, Step, unproven_page_entries};
use crate::master::counters::{DropReason, add, inc};
use crate::master::list::{DpReply, DpStream, List, Packets, Scan, ValvePage};
use crate::master::time::Time;
use crate::master::transmit::Payload;
use crate::wire::dp_list::ListQuery as DpQuery;
use crate::wire::filter::Filter;
use crate::wire::valve_list::{
    ENTRY_LEN, ListQuery, MAX_PAGE_ENTRIES, NULL_ADDR, PAGE_HEADER, Region,
};
use crate::wire::xash::{BurstWriter, XashQuery, rekey_burst};

use super::xash_bursts::BurstKey;
use std::net::SocketAddr;
use std::sync::Arc;

use super::Master;

/// A query's answer, as the transmit queue takes it.
enum Answer {
    /// One datagram.
    One(Payload),
    /// Packets encoded already (shared or owned), paced as one flow.
    Packets(Arc<Packets>),
    /// A DP answer encoded as it is sent; charged its bound (what it can take at most).
    Stream(Box<DpStream>, usize),
}

impl Answer {
    fn bytes(&self) -> usize {
        match self {
            Answer::One(p) => p.len(),
            Answer::Packets(p) => p.bytes.len(),
            Answer::Stream(_, bound) => *bound,
        }
    }
}

/// Whose budget an answer draws on beyond its source's and network's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Budgets {
    /// The source's and network's only (Valve pages: they hold 3× the query until proven).
    Own,
    /// Also the master-wide budget for replies to unproven addresses (DarkPlaces, Xash3D).
    Unproven,
}

impl Master {
    /// Sends `answer` to `to` — the one way every list reply leaves: room in the transmit queue,
    /// then (for DarkPlaces and Xash3D) the master-wide budget, then the charge to every budget the
    /// query was admitted against, then the queue; what it did is counted.
    fn send(
        &mut self,
        now: Time,
        grant: Grant,
        to: SocketAddr,
        local: u8,
        answer: Answer,
        budgets: Budgets,
    ) -> Result<(), DropReason> {
        let bytes = answer.bytes();
        if !self.tx.has_room(bytes) {
            return Err(DropReason::TxFull);
        }
        if budgets == Budgets::Unproven {
            self.admission.admit_unproven(now, grant, bytes)?;
        }
        self.admission.charge(now, grant, bytes);
        let before = self.tx.stats();
        match answer {
            Answer::One(payload) => {
                inc(&mut self.counters.answered);
                self.tx.send(to, local, payload)
            }
            Answer::Packets(packets) => {
                add(&mut self.counters.answered, packets.ends.len() as u64);
                self.tx.send_packets(now, to, local, packets)
            }
            Answer::Stream(stream, bound) => {
                inc(&mut self.counters.dp_streams);
                self.tx.send_stream(now, to, local, stream, bound)
            }
        }
        .map_err(|_| DropReason::TxFull)?;
        let after = self.tx.stats();
        add(
            &mut self.counters.paced,
            after.paced.wrapping_sub(before.paced),
        );
        add(
            &mut self.counters.superseded,
            after.superseded.wrapping_sub(before.superseded),
        );
        Ok(())
    }

    /// Counts a scan and charges it to the budgets it was admitted against.
    pub(super) fn account_scan(&mut self, now: Time, grant: Grant, scan: Scan) {
        add(&mut self.counters.scanned, scan.examined as u64);
        if scan.capped {
            inc(&mut self.counters.scan_capped);
        }
        self.admission.charge_scan(now, grant, scan.units());
    }

    /// The empty final page (header and terminator: 12 bytes, under 3× the shortest query).
    pub(super) fn empty_final_page(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        grant: Grant,
    ) -> Result<(), DropReason> {
        let mut page = [0u8; PAGE_HEADER.len() + ENTRY_LEN];
        if let Some(h) = page.get_mut(..PAGE_HEADER.len()) {
            h.copy_from_slice(&PAGE_HEADER);
        }
        let payload = Payload::small(&page).ok_or(DropReason::Malformed)?;
        self.send(now, grant, from, local, Answer::One(payload), Budgets::Own)
    }

    /// A Valve query: a page of the client's walk ([`crate::master::admission`]: the QUIC rule until the walk is
    /// proven), or a Xash3D burst, or the empty final page for a filter muster cannot read.
    pub(super) fn valve_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let q = ListQuery::decode(datagram).map_err(|_| DropReason::Malformed)?;
        // One parse: the filter's neutral keys say whether a Xash3D client asks.
        let parsed = Filter::parse(q.filter)
            .ok()
            .and_then(|f| XashQuery::from_filter(&f).ok().map(|x| (f, x)));
        let grant = self.admission.admit_query(now, from)?;
        inc(&mut self.counters.valve_queries);
        let Some((filter, xash)) = parsed else {
            // A filter muster cannot read: the empty final page, so the client stops at once
            // instead of waiting out its timeout (Steam's master answers the same way).
            inc(&mut self.counters.bad_filters);
            return self.empty_final_page(now, from, local, grant);
        };
        if let Some(x) = xash {
            return self.xash_query(now, from, local, grant, &q, &filter, x);
        }
        let scans = !filter.is_empty() || !matches!(q.region, Region::All | Region::Unknown(_));
        if scans {
            let estimate = self.list.scan_estimate(q.region, &filter);
            self.admission.admit_scan(now, grant, estimate)?;
        }
        let seed = crate::master::table::record::AddrKey::new(q.seed.into()).v4_entry();
        let walk = self.challenges.walk_key(u8::from(q.region), q.filter);
        let continues = (q.seed != NULL_ADDR).then_some(seed);
        let step = match self.admission.valve_step(now, grant, walk, continues) {
            Step::NeedStart => {
                // A new walk starts at a random match, chosen by a keyed MAC of the client and
                // the instant: the end of its first page is one of M, whatever the spoofer knows.
                let random = self.challenges.walk_random(now, from);
                let (start, scan) = self.list.valve_walk_start(q.region, &filter, random);
                self.account_scan(now, grant, scan);
                if start.is_none() {
                    // Nothing matches (within MAX_SCAN, where a page's own scan would stop too):
                    // the empty final page, without scanning them all again.
                    return self.empty_final_page(now, from, local, grant);
                }
                let start = start.unwrap_or([0; 6]);
                self.admission.begin_walk(now, grant, walk, start);
                Step::Walk { start, full: false }
            }
            step => step,
        };
        let (start, capacity) = match step {
            Step::Walk { start, full: false } => (start, unproven_page_entries(datagram.len())),
            Step::Walk { start, full: true } => (start, MAX_PAGE_ENTRIES),
            Step::Plain | Step::NeedStart => ([0; 6], MAX_PAGE_ENTRIES),
        };
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let (page, scan) = self
            .list
            .valve_page(q.region, seed, start, &filter, capacity, &mut out);
        self.account_scan(now, grant, scan);
        let last_entry = |b: &[u8]| -> Option<[u8; ENTRY_LEN]> {
            b.len()
                .checked_sub(ENTRY_LEN)
                .and_then(|at| b.get(at..))
                .and_then(|e| e.try_into().ok())
        };
        let final_page = page.is_last();
        let (payload, end) = match page {
            ValvePage::Shared {
                entries,
                range,
                last,
            } => {
                let end = entries.get(range.clone()).and_then(last_entry);
                (
                    Payload::Page {
                        entries,
                        range,
                        last,
                    },
                    end,
                )
            }
            ValvePage::Written { .. } => {
                let end = last_entry(&out);
                (Payload::Owned(out.as_slice().into()), end)
            }
        };
        self.scratch = out;
        self.send(now, grant, from, local, Answer::One(payload), Budgets::Own)?;
        if step != Step::Plain {
            self.admission
                .page_sent(grant, walk, end.filter(|_| !final_page));
        }
        Ok(())
    }

    /// A Xash3D query: the whole filtered list at once, as a burst ([`crate::wire::xash`]); a
    /// client older than `xash.min_clver` gets only the configured update entry instead.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn xash_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        grant: Grant,
        q: &ListQuery<'_>,
        filter: &Filter<'_>,
        x: XashQuery<'_>,
    ) -> Result<(), DropReason> {
        inc(&mut self.counters.xash_queries);
        // Nothing built for a burst the master-wide budget would refuse.
        self.admission.unproven_open(now, grant)?;
        // A burst visits the whole candidate list: its size (in units) bounds the work.
        let candidates = if from.is_ipv6() {
            self.list.valve6_len()
        } else {
            self.list.valve_len()
        };
        let estimate = candidates
            .saturating_mul(crate::master::list::matcher::scan_weight(filter))
            .min(crate::master::list::MAX_SCAN);
        self.admission.admit_scan(now, grant, estimate)?;
        let v6 = from.is_ipv6();
        let mut packets = Packets::default();
        let burst: Arc<Packets>;
        let update = self
            .config
            .xash
            .min_clver
            .filter(|&min| x.older_than(min))
            .and(self.config.xash.update_addr);
        if let Some(addr) = update {
            let mut w = BurstWriter::new(v6, x.key, &mut packets.bytes, &mut packets.ends);
            let _ = w.push(addr);
            w.finish();
            inc(&mut self.counters.xash_updates);
            burst = Arc::new(std::mem::take(&mut packets));
        } else {
            // Built once per list and filter; each client gets it with its own key written in.
            let key = BurstKey::new(v6, q.region, x.key.is_some(), q.filter);
            let shared = match self.xash_bursts.get(&key) {
                Some((shared, scan)) => {
                    inc(&mut self.counters.xash_bursts_reused);
                    // Charged as if scanned: what a filter costs an untrusted source does not
                    // depend on who asked for it first.
                    self.admission.charge_scan(now, grant, scan.units());
                    shared
                }
                None => {
                    let scan =
                        self.list
                            .xash_burst(v6, q.region, filter, x.key.map(|_| 0), &mut packets);
                    self.account_scan(now, grant, scan);
                    let shared = Arc::new(std::mem::take(&mut packets));
                    self.xash_bursts.insert(key, shared.clone(), scan);
                    shared
                }
            };
            burst = match x.key {
                Some(k) => {
                    let mut own = Packets::clone(&shared);
                    rekey_burst(&mut own.bytes, &own.ends, k);
                    Arc::new(own)
                }
                // Unkeyed (xash3d-query without -k): the kept burst itself.
                None => shared,
            };
        }
        // No round trip proves a Xash3D client: the master-wide budget for unproven addresses.
        let answer = Answer::Packets(burst);
        self.send(now, grant, from, local, answer, Budgets::Unproven)
    }

    pub(super) fn dp_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let q = DpQuery::decode(datagram).map_err(|_| DropReason::Malformed)?;
        // dpmaster 2.2 answers nothing for a game its policy rejects (manual.txt, `-g`/
        // `--game-policy`): the query is dropped, counted, and costs no reply.
        let game = self.config.game_props.query_game(q.gamename, q.protocol);
        if !self.config.games.allows(game) {
            return Err(DropReason::GameRejected);
        }
        let grant = self.admission.admit_query(now, from)?;
        inc(&mut self.counters.dp_queries);
        let sends = self.config.game_props.sends(game);
        let reply = List::dp_reply(&self.list, &q, game, sends, self.config.max_dp_packet);
        // No round trip proves a DP client: the master-wide budget for unproven addresses. A
        // stream is charged what it can take at most (it is filtered as it goes).
        let bound = reply.bound();
        let answer = match reply {
            DpReply::Shared(packets) => Answer::Packets(packets),
            DpReply::Stream(stream) => Answer::Stream(stream, bound),
        };
        self.send(now, grant, from, local, answer, Budgets::Unproven)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::service::test_support::*;
    use crate::master::service::*;

    /// The servers of a keyed burst asked with `key`, checking every datagram carries it.
    fn keyed_burst(m: &mut Master, from: SocketAddr, key: u32) -> Vec<SocketAddr> {
        let now = Time::from_secs(11);
        let mut q = b"1\xff0.0.0.0:0\0".to_vec();
        q.extend_from_slice(
            format!("\\gamedir\\valve\\clver\\0.21\\nat\\0\\key\\{key:x}\0").as_bytes(),
        );
        m.handle(now, from, 0, &q).unwrap();
        let mut servers = Vec::new();
        for d in m.transmits(now).iter().flat_map(Transmit::datagrams) {
            let b = crate::wire::xash::BurstDatagram::decode(&d, false, true).unwrap();
            assert_eq!(b.key, Some(key), "each client's own key in every datagram");
            servers.extend(b.servers);
        }
        servers.sort();
        servers
    }

    #[test]
    fn a_burst_is_built_once_per_list_and_filter_and_keyed_per_client() {
        let mut m = master(GamePolicy::default());
        let mut v4: Vec<SocketAddr> = (0..200u32)
            .map(|i| SocketAddr::new(std::net::Ipv4Addr::from(0x0505_0000 + i).into(), 27015))
            .collect();
        for &a in &v4 {
            xash_register(&mut m, a, false).unwrap();
        }
        // One builder across the test: each list it publishes is newer than the last.
        let mut builder = crate::master::list::builder::ListBuilder::new(1, 1400);
        let mut sync = |m: &mut Master| {
            if let Some(snap) = m.publish() {
                builder.apply(0, snap);
            }
            m.install_list(builder.build().unwrap());
        };
        sync(&mut m);
        v4.sort();
        let first = keyed_burst(&mut m, a("7.7.7.7:27005"), 0x9be5_942b);
        assert_eq!(first, v4);
        assert_eq!(m.counters().xash_bursts_reused, 0);
        // Another client, another key: the same burst, its own key.
        assert_eq!(keyed_burst(&mut m, a("7.7.7.8:27005"), 1), v4);
        assert_eq!(m.counters().xash_bursts_reused, 1);
        // A new list: built again, with the new server.
        let new = a("5.5.9.9:27015");
        xash_register(&mut m, new, false).unwrap();
        sync(&mut m);
        v4.push(new);
        v4.sort();
        assert_eq!(keyed_burst(&mut m, a("7.7.7.9:27005"), 0xdead_beef), v4);
        assert_eq!(m.counters().xash_bursts_reused, 1);
    }

    #[test]
    pub(super) fn xash_clients_get_the_whole_list_as_a_burst_ipv6_to_ipv6_and_nat_by_flag() {
        let mut m = master(GamePolicy::default());
        let mut v4: Vec<SocketAddr> = (0..300u32)
            .map(|i| SocketAddr::new(std::net::Ipv4Addr::from(0x0505_0000 + i).into(), 27015))
            .collect();
        for &a in &v4 {
            xash_register(&mut m, a, false).unwrap();
        }
        let natted: SocketAddr = "6.6.6.6:27015".parse().unwrap();
        xash_register(&mut m, natted, true).unwrap();
        let v6: SocketAddr = "[2001:db8::5]:27015".parse().unwrap();
        xash_register(&mut m, v6, false).unwrap();
        sync(&mut m);
        // The engine's keyed query (xash3d-fwgs masterlist.c): every IPv4 server, key header on
        // every datagram (300 servers: 4 datagrams of at most 82).
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        let mut got = burst(
            &mut m,
            client,
            b"\\gamedir\\valve\\clver\\0.21\\nat\\0\\key\\9be5942b",
            true,
        );
        got.sort();
        v4.sort();
        assert_eq!(got, v4, "nat 0: every non-NAT IPv4 server, once");
        // xash3d-query 0.2.0 without -k: no key header, NAT servers too (no `\nat\`).
        let got = burst(&mut m, client, b"\\gamedir\\valve\\clver\\0.20", false);
        assert_eq!(got.len(), 301);
        // `\nat\1`: only the NAT server (xash3d-master filter.rs: the flag must equal).
        let got = burst(
            &mut m,
            client,
            b"\\clver\\0.21\\nat\\1\\key\\9be5942b",
            true,
        );
        assert_eq!(got, [natted]);
        // Over IPv6: the IPv6 server, as an 18-byte entry.
        let client6: SocketAddr = "[2001:db8::7]:27005".parse().unwrap();
        let got = burst(&mut m, client6, b"\\clver\\0.21\\key\\9be5942b", true);
        assert_eq!(got, [v6]);
        assert_eq!(m.counters().xash_queries, 4);
        // Xash3D heartbeats carry no appid: gamedir valve is Half-Life's 70 (ReHLDS table).
        let s = *m.table().get(natted).unwrap();
        assert_eq!(s.appid, 70);
    }

    #[test]
    pub(super) fn old_xash_clients_get_the_update_entry_when_switched_on() {
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        let update: SocketAddr = "9.9.9.9:27010".parse().unwrap();
        c.xash = XashConfig {
            min_clver: Some((0, 21)),
            update_addr: Some(update),
        };
        let mut m = Master::new(Time::ZERO, c, 0, 1);
        xash_register(&mut m, "5.5.5.5:27015".parse().unwrap(), false).unwrap();
        sync(&mut m);
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        assert_eq!(
            burst(&mut m, client, b"\\clver\\0.20\\key\\9be5942b", true),
            [update]
        );
        assert_eq!(
            burst(&mut m, client, b"\\clver\\0.21\\key\\9be5942b", true).len(),
            1
        );
        assert_eq!(m.counters().xash_updates, 1);
    }

    #[test]
    pub(super) fn an_unreadable_filter_gets_the_empty_final_page() {
        let mut m = master(GamePolicy::default());
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        // `\appid\x`: a malformed value of a known key rejects the filter (filter.rs).
        m.handle(Time::ZERO, client, 0, b"1\xff0.0.0.0:0\0\\appid\\x\0")
            .unwrap();
        assert_eq!(
            only(m.transmits(Time::ZERO)),
            b"\xff\xff\xff\xff\x66\x0a\0\0\0\0\0\0"
        );
        assert_eq!(m.counters().bad_filters, 1);
    }

    #[test]
    pub(super) fn rtcw_and_et_queries_by_protocol_and_rejected_games_get_no_answer() {
        let mut m = master(GamePolicy {
            accept: vec![],
            reject: vec![b"wolfmp".to_vec().into()],
        });
        let et: SocketAddr = "1.2.3.4:27960".parse().unwrap();
        let pairs = [
            (&b"protocol"[..], &b"84"[..]),
            (b"sv_maxclients", b"8"),
            (b"clients", b"0"),
        ];
        assert_eq!(dp_register(&mut m, et, b"EnemyTerritory-1", &pairs), None);
        sync(&mut m);
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        // qstat -woetm sends `getservers 84 empty full`; ET clients send `getservers 84` and
        // still get empty servers (dpmaster games.c: et has send-empty-servers).
        for q in [&b"getservers 84 empty full"[..], b"getservers 84"] {
            let mut d = b"\xff\xff\xff\xff".to_vec();
            d.extend_from_slice(q);
            m.handle(Time::ZERO, client, 0, &d).unwrap();
            let reply = only(m.transmits(Time::ZERO));
            let r = crate::wire::dp_list::ListResponse::decode(&reply).unwrap();
            assert_eq!(r.servers().collect::<Vec<_>>(), [et], "{q:?}");
        }
        // qstat -rwm: `getservers 60 empty full` is wolfmp, which the policy rejects: no answer.
        assert_eq!(
            m.handle(
                Time::ZERO,
                client,
                0,
                b"\xff\xff\xff\xffgetservers 60 empty full\n"
            ),
            Err(DropReason::GameRejected)
        );
        assert!(m.transmits(Time::ZERO).is_empty());
    }
}
