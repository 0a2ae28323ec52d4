// The public server browser: loads the list from this master's /api/v1/servers (following its
// cursors), then searches and sorts it in the page. The view (search, sort, filters, game) lives in
// the address's fragment — #q=dust&sort=players&dir=desc&game=cstrike — so it can be linked.
// Network strings are only ever set as text (textContent), never as markup.
(function () {
  "use strict";
  var MAX_LOAD = 50000; // servers loaded at most (a link with &game= narrows a big master)
  var MAX_ROWS = 2000; // rows drawn at most; search narrows the rest
  var servers = [];
  var view = { q: "", sort: "players", dir: "desc", notEmpty: false, notFull: false, game: "" };
  var $ = function (id) { return document.getElementById(id); };

  function readHash() {
    var h = location.hash.replace(/^#/, "");
    h.split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("=");
      var k = decodeURIComponent(i < 0 ? kv : kv.slice(0, i));
      var v = i < 0 ? "" : decodeURIComponent(kv.slice(i + 1).replace(/\+/g, " "));
      if (k === "q") view.q = v;
      else if (k === "sort" && ["name", "game", "map", "players", "address"].indexOf(v) >= 0) view.sort = v;
      else if (k === "dir") view.dir = v === "asc" ? "asc" : "desc";
      else if (k === "not_empty") view.notEmpty = v !== "0";
      else if (k === "not_full") view.notFull = v !== "0";
      else if (k === "game") view.game = v;
    });
  }

  function writeHash() {
    var parts = [];
    if (view.q) parts.push("q=" + encodeURIComponent(view.q));
    parts.push("sort=" + view.sort, "dir=" + view.dir);
    if (view.notEmpty) parts.push("not_empty=1");
    if (view.notFull) parts.push("not_full=1");
    if (view.game) parts.push("game=" + encodeURIComponent(view.game));
    history.replaceState(null, "", "#" + parts.join("&"));
  }

  function addrKey(a) {
    // Sort IPv4 numerically (a.b.c.d:port), IPv6 after, by text.
    var m = /^(\d+)\.(\d+)\.(\d+)\.(\d+):(\d+)$/.exec(a);
    if (!m) return "1" + a;
    var pad = function (n, w) { n = String(n); while (n.length < w) n = "0" + n; return n; };
    return "0" + pad(m[1], 3) + pad(m[2], 3) + pad(m[3], 3) + pad(m[4], 3) + pad(m[5], 5);
  }

  function compare(a, b) {
    var k = view.sort, x, y;
    if (k === "players") { x = a.players; y = b.players; }
    else if (k === "address") { x = a._addr; y = b._addr; }
    else { x = a["_" + k]; y = b["_" + k]; }
    var c = x < y ? -1 : x > y ? 1 : 0;
    if (c === 0) c = a._addr < b._addr ? -1 : a._addr > b._addr ? 1 : 0;
    return view.dir === "asc" ? c : -c;
  }

  function render() {
    var q = view.q.trim().toLowerCase();
    var shown = servers.filter(function (s) {
      if (view.notEmpty && s.players === 0) return false;
      if (view.notFull && s.max_players > 0 && s.players >= s.max_players) return false;
      return !q || s._text.indexOf(q) >= 0;
    });
    shown.sort(compare);
    var rows = $("rows");
    var frag = document.createDocumentFragment();
    shown.slice(0, MAX_ROWS).forEach(function (s) {
      var tr = document.createElement("tr");
      var cell = function (text, cls) {
        var td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      };
      cell(s.name, "name");
      cell(s.game);
      cell(s.map);
      cell(s.players + " / " + s.max_players + (s.bots ? " (" + s.bots + " bots)" : ""), "num");
      cell(s.address, "addr");
      frag.appendChild(tr);
    });
    rows.textContent = "";
    rows.appendChild(frag);
    document.querySelectorAll("th[data-key]").forEach(function (th) {
      var on = th.getAttribute("data-key") === view.sort;
      if (on) th.setAttribute("aria-sort", view.dir === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    $("more").textContent = shown.length > MAX_ROWS
      ? "Showing the first " + MAX_ROWS + " of " + shown.length + " matches: search to narrow them."
      : "";
    $("servers").setAttribute("data-shown", String(shown.length));
    $("servers").setAttribute("data-drawn", String(Math.min(shown.length, MAX_ROWS)));
    document.body.setAttribute("data-sort", view.sort + "-" + view.dir);
  }

  function update() { writeHash(); render(); }

  function load(cursor, done) {
    var url = "api/v1/servers?";
    if (view.game) url += "game=" + encodeURIComponent(view.game) + "&";
    if (cursor) url += "cursor=" + encodeURIComponent(cursor);
    fetch(url).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (page) {
      page.servers.forEach(function (s) {
        s._name = String(s.name).toLowerCase();
        s._game = String(s.game).toLowerCase();
        s._map = String(s.map).toLowerCase();
        s._addr = addrKey(s.address);
        s._text = [s._name, s._game, s._map, s.address.toLowerCase()].join("\n");
        servers.push(s);
      });
      $("status").textContent = servers.length + " servers";
      if (page.next && servers.length < MAX_LOAD) load(page.next, done);
      else done(page.next ? "more" : "all");
    }).catch(function (e) {
      $("status").textContent = "could not load the list: " + e.message;
      done("error");
    });
  }

  readHash();
  $("search").value = view.q;
  $("not-empty").checked = view.notEmpty;
  $("not-full").checked = view.notFull;
  $("search").addEventListener("input", function () { view.q = this.value; update(); });
  $("not-empty").addEventListener("change", function () { view.notEmpty = this.checked; update(); });
  $("not-full").addEventListener("change", function () { view.notFull = this.checked; update(); });
  document.querySelectorAll("th[data-key]").forEach(function (th) {
    th.addEventListener("click", function () {
      var k = th.getAttribute("data-key");
      if (view.sort === k) view.dir = view.dir === "asc" ? "desc" : "asc";
      else { view.sort = k; view.dir = k === "players" ? "desc" : "asc"; }
      update();
    });
  });
  load("", function (how) {
    var n = servers.length;
    $("status").textContent = n + " servers" + (view.game ? " of " + view.game : "") +
      (how === "more" ? " (the first " + n + "; link with #game=… for one game)" : "");
    document.body.setAttribute("data-loaded", String(n));
    render();
  });
})();
