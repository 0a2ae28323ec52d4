#![no_main]

//! HTTP request handling: any bytes as a request on a connection (hyper's parser, the checks
//! every listener makes, both listeners' routing and answers — the public one with a published
//! list), and the sans-IO pieces on their own (query strings, cursors, conditional and gzip
//! headers). No panic; every answer starts with a status line of a status the checks allow.

use libfuzzer_sys::fuzz_target;
use muster::control::http::{Operator, Snapshot};
use muster::control::limits::HttpLimits;
use muster::control::lists::PublicApp;
use muster::control::public::{self, Cursor, Published};
use muster::control::{request, serve};
use muster::master::{Family, Fields, Limits, ListBuilder, Table, Time};
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

const ALLOWED: [&[u8]; 9] = [
    b"200", b"304", b"400", b"404", b"405", b"413", b"414", b"431", b"503",
];

/// A publication of a few servers of two games, made once.
fn published() -> &'static (Arc<Operator>, Arc<PublicApp>, Arc<Published>) {
    static P: OnceLock<(Arc<Operator>, Arc<PublicApp>, Arc<Published>)> = OnceLock::new();
    P.get_or_init(|| {
        let mut t = Table::new(
            Time::ZERO,
            Limits {
                allow_private: true,
                max_servers_per_ip: 100,
                max_servers_per_net: u16::MAX,
                ..Limits::default()
            },
        );
        for i in 0..40u16 {
            let f = Fields {
                game: if i % 2 == 0 { b"valve" } else { b"cstrike" },
                map: if i % 3 == 0 { b"crossfire" } else { b"de_dust2" },
                players: (i % 5) as u8,
                max_players: 4,
                protocol: if i % 2 == 0 { 49 } else { 48 },
                hostname: b"a \"server\" \\ <b>",
                ..Default::default()
            };
            let addr = format!("192.0.2.{}:{}", i % 7 + 1, 27015 + i).parse().unwrap();
            let _ = t.upsert(Time::from_secs(1), addr, Family::Valve, &f);
        }
        let mut b = ListBuilder::new(1, 1400);
        b.apply(0, t.snapshot());
        let list = b.build().unwrap_or_default();
        let p = Arc::new(Published::build(&list, 5, 0));
        let (_otx, orx) = watch::channel(Arc::new(Snapshot::default()));
        let (ptx, prx) = watch::channel(Some(p.clone()));
        // The senders may go: receivers keep the last value.
        drop(ptx);
        (
            Arc::new(Operator::new(orx)),
            Arc::new(PublicApp::new(prx, std::time::Duration::from_secs(5))),
            p,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (operator, public_app, p) = published();
    let text = String::from_utf8_lossy(data);
    let (path, query) = request::split_target(&text);
    for key in ["game", "map", "cursor", "not_empty", "page"] {
        let _ = request::param(query, key);
    }
    let _ = request::accepts_gzip(data);
    let _ = request::none_match(data, &["\"0123456789abcdef\""]);
    if let Some(c) = Cursor::decode(&text) {
        assert_eq!(Cursor::decode(&c.encode()), Some(c), "cursors round-trip");
    }
    let route = public::route(path, query);
    if let public::Route::Api(q) = &route {
        let r = p.api(q);
        assert_eq!(r.status, 200);
    }

    // The whole path: the first byte picks the listener, the rest is the request as sent.
    let Some((&which, raw)) = data.split_first() else {
        return;
    };
    let limits = HttpLimits::default();
    let answer = if which & 1 == 0 {
        serve::exchange(operator.clone(), limits, raw)
    } else {
        serve::exchange(public_app.clone(), limits, raw)
    };
    if !answer.is_empty() {
        assert!(answer.starts_with(b"HTTP/1.1 "), "{answer:?}");
        let code = answer.get(9..12).unwrap_or_default();
        assert!(ALLOWED.contains(&code), "{:?}", String::from_utf8_lossy(&answer));
    }
});
