//! The status page rendered by a real browser: Debian's Chromium, headless, against an engine and
//! control thread on 127.0.0.1 (history sampled every 200 ms so the charts fill in seconds). The
//! page renders (its script marks `body[data-rendered]`), every chart has drawn points, the
//! per-game table and top refused sources show what the master knows.

mod common;

use common::*;
use muster::control::{self, ControlSettings};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The page's DOM after its scripts ran (`--virtual-time-budget` lets fetches and timers finish).
fn rendered_dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("muster-chromium-{}", std::process::id()));
    let o = run_bounded(
        std::process::Command::new(CHROMIUM).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ]),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        o.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The value of attribute `attr` on the element whose `id` is `id`.
fn attr(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_owned())
}

#[test]
#[ignore = "needs Debian's chromium (installed by .ci/setup; .ci/test runs ignored tests)"]
fn the_status_page_renders_with_charts_that_have_data() {
    let mut f = muster::config::File::defaults();
    f.apply(&muster::config::Overrides {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cores: Some(2),
        allow_private: true,
        list_refresh_ms: Some(100),
        ..Default::default()
    });
    let mut settings = f
        .settings(muster::engine::sys::allowed_cpus().len(), [7; 16])
        .unwrap();
    settings.dump_every = Some(Duration::from_millis(200));
    let engine = muster::engine::start(settings).unwrap();
    let mut cs = ControlSettings::new(env!("CARGO_PKG_VERSION"));
    cs.sample_every = Duration::from_millis(200);
    cs.bind_http(Some("127.0.0.1:0".parse().unwrap())).unwrap();
    let ctl = control::start(engine.handle(), cs).unwrap();
    let http = ctl.http_addr().unwrap();
    let master = engine.local_addrs()[0];

    let valve = sockets(81, 3, 9);
    assert_eq!(valve_register(master, &valve, "cstrike").answered, 9);
    let dp = sockets(82, 2, 4);
    assert_eq!(
        dp_register(master, &dp, "DarkPlaces", NEXUIZ_INFO).answered,
        4
    );
    every_core_lists(&engine, 9, 4);
    // Untrusted clients asking too fast: refused, so the page has top refused sources.
    let flooder = socket(std::net::Ipv4Addr::new(127, 0, 83, 9));
    for _ in 0..40 {
        flooder.send_to(b"1\xFF0.0.0.0:0\0\0", master).unwrap();
    }
    // Ask the master until its history holds enough points and the refusals are in.
    assert!(eventually(|| {
        let h: serde_json::Value = serde_json::from_str(&http_get(http, "/api/history").1).unwrap();
        let s: serde_json::Value = serde_json::from_str(&http_get(http, "/api/stats").1).unwrap();
        h["points"].as_array().is_some_and(|p| p.len() >= 4)
            && s["servers"]["total"] == 13
            && s["top_refused"].as_array().is_some_and(|t| !t.is_empty())
    }));

    let dom = rendered_dom(&format!("http://{http}/"));
    assert!(
        dom.contains("data-rendered=\"1\""),
        "the script finished a render:\n{dom}"
    );
    for chart in ["registrations", "queries", "bytes_out", "drops"] {
        let n: usize = attr(&dom, &format!("chart-{chart}"), "data-points")
            .unwrap_or_else(|| panic!("chart {chart} missing:\n{dom}"))
            .parse()
            .unwrap();
        assert!(n >= 4, "chart {chart} drew {n} points");
        assert!(dom.contains("<polyline"), "a line is drawn");
    }
    let games = &dom[dom.find("id=\"games\"").unwrap()..];
    let games = &games[..games.find("</table>").unwrap()];
    assert!(
        games.contains("cstrike") && games.contains(">9<"),
        "{games}"
    );
    assert!(games.contains("Nexuiz") && games.contains(">4<"), "{games}");
    let refused = &dom[dom.find("id=\"refused\"").unwrap()..];
    let refused = &refused[..refused.find("</table>").unwrap()];
    assert!(refused.contains("127.0.83.9"), "{refused}");
    assert!(
        dom.contains(env!("CARGO_PKG_VERSION")),
        "the version is shown"
    );
    let _ = engine.stop();
    ctl.finish().unwrap();
}
