/*
 * audiosearch widget: a search box and results for any web page, talking to an audiosearch server.
 *
 * Usage, declarative (the widget calls the server the script was loaded from):
 *
 *   <div id="sounds"></div>
 *   <script src="https://search.example.org/widget.js" data-target="#sounds"></script>
 *
 *   Optional attributes on the <script> tag:
 *     data-target       CSS selector of the element to render into (without it nothing is mounted automatically)
 *     data-k            results per page, 1-100 (default 5)
 *     data-placeholder  placeholder text of the search box
 *     data-label        label of the search box (default "Search sounds")
 *     data-query        a query to run right away
 *     data-mode         hybrid (default: the sound and the library's words), audio (sound only) or text (words only)
 *
 * Usage, programmatic:
 *
 *   <script src="https://search.example.org/widget.js"></script>
 *   <script>
 *     const w = AudioSearchWidget.mount(document.querySelector("#sounds"), {k: 8});
 *     w.search("rain on a window");   // run a query
 *     w.destroy();                    // remove the widget
 *   </script>
 *
 *   mount(element, options): options are server (base URL of the API; default: where widget.js came from),
 *   k, placeholder, label, query, mode. The element may also be a selector string.
 *
 * Each result has a "More like this" button (data-role="similar"): it lists the sounds most like that clip in
 * place of the results (GET /clips/{id}/similar), the clip itself first.
 *
 * When nothing scores above the server's close-match threshold (no_close_match) the widget says so ("No close
 * match") with the nearest sounds one click away, instead of a list of weak results. Each result shows its
 * relevance (strong, close or weak: the API's `relevance`, 0.5 being the threshold) and the file's waveform with
 * the matched part marked.
 *
 * The page's origin must be allowed by the server: AUDIOSEARCH_CORS_ORIGINS=https://your.site,...
 * The widget renders into a shadow root, so the page's CSS does not leak in and the widget's does not leak out.
 * Keyboard: Enter searches; in the results Up/Down move and Space/Enter plays the matching part of a clip.
 */
(function () {
  "use strict";

  // currentScript is only set while this file first runs, so read it now.
  var script = document.currentScript ||
    Array.prototype.slice.call(document.querySelectorAll("script[src]")).filter(function (s) {
      return /\/widget\.js(\?|#|$)/.test(s.src);
    }).pop() || null;
  var DEFAULT_SERVER = script && script.src ? new URL("./", script.src).href : new URL("./", location.href).href;

  var CSS = [
    ":host { all: initial; display: block; margin: 8px 0; color-scheme: light dark; font: 15px/1.45 system-ui, -apple-system,",
    "  'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; --as-accent: #2451c9; --as-accent-fg: #fff;",
    "  --as-fg: #1b1d23; --as-muted: #5b6170; --as-line: #dcdfe6; --as-card: #fff; --as-bg: #f7f7f9;",
    "  --as-focus: #f2a900; --as-err: #9b1c1c; --as-play: #e8efff; }",
    "@media (prefers-color-scheme: dark) { :host { --as-accent: #7aa2ff; --as-accent-fg: #0d1020; --as-fg: #e8eaf0;",
    "  --as-muted: #a3a9b7; --as-line: #323743; --as-card: #1d2027; --as-bg: #14161b; --as-err: #ffb4b4;",
    "  --as-play: #222c44; } }",
    "* { box-sizing: border-box; }",
    ".box { color: var(--as-fg); background: var(--as-bg); border: 1px solid var(--as-line); border-radius: 10px;",
    "  padding: 12px; }",
    ":focus-visible { outline: 3px solid var(--as-focus); outline-offset: 2px; }",
    "label { display: block; font-weight: 600; margin-bottom: 4px; }",
    "form { display: flex; gap: 6px; }",
    "input, button { font: inherit; color: inherit; margin: 0; }",
    "input { flex: 1; min-width: 0; padding: 7px 10px; border: 1px solid var(--as-line); border-radius: 7px;",
    "  background: var(--as-card); }",
    "button { padding: 6px 12px; border: 1px solid var(--as-accent); border-radius: 7px; cursor: pointer;",
    "  background: var(--as-accent); color: var(--as-accent-fg); font-weight: 600; }",
    "button.more { background: transparent; color: var(--as-accent); margin-top: 8px; }",
    ".status { color: var(--as-muted); font-size: 13px; margin: 8px 0 6px; min-height: 1.2em; }",
    ".error { color: var(--as-err); margin: 8px 0; }",
    "ol { list-style: none; margin: 0; padding: 0; display: grid; gap: 6px; }",
    "li { display: grid; grid-template-columns: 1fr auto; gap: 0 8px; padding: 8px 10px; border-radius: 7px;",
    "  background: var(--as-card); border: 1px solid var(--as-line); }",
    "li.playing { background: var(--as-play); border-color: var(--as-accent); }",
    ".name { font-weight: 600; overflow-wrap: anywhere; }",
    ".score, .when { color: var(--as-muted); font-size: 13px; font-variant-numeric: tabular-nums; }",
    ".when { grid-column: 1 / 3; }",
    "audio { grid-column: 1 / 3; width: 100%; height: 32px; margin-top: 4px; }",
    ".why { grid-column: 1 / 3; color: var(--as-muted); font-size: 13px; }",
    "mark { background: var(--as-play); color: inherit; border-radius: 4px; padding: 0 3px; }",
    "button.similar { grid-column: 1 / 3; justify-self: start; margin-top: 4px; padding: 2px 8px; font-size: 13px;",
    "  background: transparent; color: var(--as-accent); }",
    "ol.weak li { opacity: .75; border-style: dashed; }",
    ".wave { grid-column: 1 / 3; position: relative; height: 28px; margin-top: 4px; background: var(--as-bg);",
    "  border-radius: 4px; overflow: hidden; color: var(--as-muted); }",
    ".wave canvas { position: absolute; inset: 0; width: 100%; height: 100%; }",
    ".match { position: absolute; top: 0; bottom: 0; border: 1px solid var(--as-accent); border-radius: 3px;",
    "  background: color-mix(in srgb, var(--as-accent) 18%, transparent); }",
    "[hidden] { display: none !important; }"
  ].join("\n");

  function el(tag, props, children) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        if (key === "text") node.textContent = props[key];
        else if (key === "className") node.className = props[key];
        else node.setAttribute(key, props[key]);
      });
    }
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function clock(t) {
    t = Math.max(0, Math.round(t * 10) / 10);
    var m = Math.floor(t / 60), s = t - m * 60;
    return m + ":" + (s < 10 ? "0" : "") + (Math.round(s) === s ? String(s) : s.toFixed(1));
  }

  function num(x) { return String(Math.round(x * 1000) / 1000); }

  var counter = 0;

  function mount(target, options) {
    var host = typeof target === "string" ? document.querySelector(target) : target;
    if (!host || host.nodeType !== 1) throw new Error("AudioSearchWidget.mount: no element " + String(target));
    options = options || {};
    var server = new URL(options.server || DEFAULT_SERVER, location.href).href.replace(/\/?$/, "/");
    var k = Math.min(100, Math.max(1, parseInt(options.k, 10) || 5));
    var mode = options.mode || "hybrid";  // the server answers 422 for an unknown mode, shown as the error
    var id = "as-q-" + (++counter);

    var root = host.shadowRoot || host.attachShadow({ mode: "open" });
    while (root.firstChild) root.removeChild(root.firstChild);
    var input = el("input", {
      id: id, type: "search", name: "q", maxlength: "1000", autocomplete: "off", spellcheck: "false",
      placeholder: options.placeholder || "Describe a sound, e.g. rain on a roof"
    });
    var form = el("form", { role: "search" }, [input, el("button", { type: "submit", text: "Search" })]);
    var status = el("p", { className: "status", role: "status", "aria-live": "polite" });
    var error = el("p", { className: "error", role: "alert" });
    var list = el("ol", { "aria-label": "Results" });
    var more = el("button", { className: "more", type: "button", text: "More results" });
    var nearest = el("button", { className: "more nearest", type: "button", text: "Show the nearest sounds" });
    error.hidden = true;
    more.hidden = true;
    nearest.hidden = true;
    var box = el("div", { className: "box", part: "box" }, [
      el("label", { "for": id, text: options.label || "Search sounds" }), form, status, error, nearest, list, more
    ]);
    root.appendChild(el("style", { text: CSS }));
    root.appendChild(box);

    // state.req: the text query {q} or the clip whose similar files are listed {like: {id, path}}
    var state = { q: "", req: null, shown: 0, total: 0, seq: 0, ctrl: null, noClose: false };

    function showError(msg) { error.textContent = msg; error.hidden = !msg; }

    function baseName(path) { return path.slice(path.lastIndexOf("/") + 1); }

    function fetchPage(req, offset, signal) {
      var page = { k: String(k), offset: String(offset) };
      var url = new URL(req.like ? "clips/" + encodeURIComponent(req.like.id) + "/similar" : "search", server);
      url.search = new URLSearchParams(req.like ? page : { q: req.q, k: page.k, offset: page.offset, mode: mode }).toString();
      return fetch(url.href, { signal: signal, headers: { Accept: "application/json" } }).then(function (res) {
        return res.json().catch(function () { return null; }).then(function (body) {
          if (!res.ok) {
            throw new Error("Search failed: " + (body && typeof body.detail === "string" ? body.detail : "HTTP " + res.status));
          }
          return body;
        });
      }, function (err) {
        if (err.name === "AbortError") throw err;
        throw new Error("Could not reach the audiosearch server at " + server);
      });
    }

    function relWord(r) { return r >= 0.9 ? "strong" : r >= 0.5 ? "close" : "weak"; }

    function pct(x) { return Math.round(Math.min(1, Math.max(0, x)) * 10000) / 100 + "%"; }

    function waveform(hit) {
      // The file's waveform (its peaks, fetched after the list) with the matched part marked.
      var d = hit.duration > 0 ? hit.duration : 1;
      var match = el("div", { className: "match", "data-role": "match" });
      match.style.left = pct(hit.start / d);
      match.style.width = pct((hit.end - hit.start) / d);
      var box = el("div", { className: "wave", "data-role": "waveform", role: "img",
        "aria-label": "Waveform of " + hit.path + ", the match " + clock(hit.start) + "–" + clock(hit.end) + " marked"
      }, [match]);
      var url = new URL(hit.audio_url.replace(/\/audio$/, "/peaks"), server).href;
      fetch(url, { headers: { Accept: "application/json" } }).then(function (res) {
        return res.ok ? res.json() : null;
      }).then(function (body) {
        if (!body || !body.peaks) return;
        // one bar per peak on a canvas of peaks x 100 pixels, stretched to the box
        var canvas = el("canvas", { width: String(2 * body.peaks.length), height: "100", "aria-hidden": "true" });
        var g = canvas.getContext("2d");
        if (!g) return;
        g.fillStyle = getComputedStyle(box).color;
        body.peaks.forEach(function (p, i) {
          var h = Math.max(1, p * 100);
          g.fillRect(2 * i, 50 - h / 2, 1.6, h);
        });
        box.insertBefore(canvas, match);
      }).catch(function () { /* no waveform: the rest of the row stands */ });
      return box;
    }

    function row(hit, rank) {
      var when = clock(hit.start) + "–" + clock(hit.end) + " of " + clock(hit.duration);
      var audio = el("audio", { controls: "", preload: "none", "aria-label": "Play " + hit.path });
      audio.src = new URL(hit.audio_url, server).href + "#t=" + num(hit.start) + "," + num(hit.end);
      var li = el("li", { tabindex: "0", "aria-label": rank + ". " + hit.path + ", " + relWord(hit.relevance) +
        " match " + when }, [
        el("span", { className: "name", title: hit.path, text: hit.path }),
        el("span", { className: "score", text: relWord(hit.relevance),
          title: "relevance " + Math.round(hit.relevance * 100) + " of 100 (50: the close-match threshold)" }),
        el("span", { className: "when", text: when }),
        waveform(hit),
        audio
      ]);
      if (hit.evidence && hit.evidence.words.length) {
        var why = el("span", { className: "why", text: "words " });
        hit.evidence.words.forEach(function (w, i) {
          if (i) why.appendChild(document.createTextNode(" "));
          why.appendChild(el("mark", { text: w }));
        });
        li.insertBefore(why, audio);
      }
      var like = el("button", {
        className: "similar", type: "button", "data-role": "similar", text: "More like this",
        "aria-label": "More like " + hit.path + ": list the sounds most like it"
      });
      like.addEventListener("click", function () { similar({ id: hit.id, path: hit.path }); });
      li.appendChild(like);
      li.setAttribute("data-score", String(hit.score));
      audio.addEventListener("loadedmetadata", function () {
        if (audio.currentTime + 0.05 < hit.start) audio.currentTime = hit.start;
      });
      audio.addEventListener("play", function () {
        Array.prototype.forEach.call(list.querySelectorAll("audio"), function (a) { if (a !== audio) a.pause(); });
        li.classList.add("playing");
      });
      audio.addEventListener("pause", function () { li.classList.remove("playing"); });
      li.addEventListener("keydown", function (e) {
        if (e.target !== li) return;
        if (e.key === " " || e.key === "Enter") {
          e.preventDefault();
          if (!audio.paused) { audio.pause(); return; }
          if (audio.readyState > 0 && (audio.ended || audio.currentTime >= hit.end - 0.05)) audio.currentTime = hit.start;
          audio.play().catch(function (err) { showError("Could not play " + hit.path + ": " + err.message); });
        } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
          e.preventDefault();
          var next = e.key === "ArrowDown" ? li.nextElementSibling : li.previousElementSibling;
          if (next) next.focus();
          else if (e.key === "ArrowUp") input.focus();
          else if (!more.hidden) more.focus();
        }
      });
      return li;
    }

    function update() {
      var like = state.req && state.req.like;
      if (!state.shown) status.textContent = "No sounds match “" + state.q + "”.";
      else if (state.noClose) {
        status.textContent = "No close match for “" + state.q + "”: nothing scored above the close-match threshold.";
      }
      else {
        status.textContent = "Showing " + state.shown + " of " + state.total + (state.total === 1 ? " sound" : " sounds") +
          (like ? " like “" + baseName(like.path) + "”" : "");  // says what was searched: a clip's sound
      }
      more.hidden = state.shown >= state.total || list.hidden;
      nearest.hidden = !(state.noClose && list.hidden && state.shown > 0);
    }

    function search(q) {
      q = String(q || "").trim();
      if (!q) return Promise.resolve();
      input.value = q;
      return run({ q: q }, "Searching…");
    }

    function similar(like) {
      return run({ like: like }, "Looking for sounds like “" + baseName(like.path) + "”…");
    }

    function run(req, busy) {
      if (state.ctrl) state.ctrl.abort();
      var ctrl = typeof AbortController === "function" ? new AbortController() : null;
      var seq = ++state.seq;
      state.ctrl = ctrl;
      status.textContent = busy;
      return fetchPage(req, 0, ctrl && ctrl.signal).then(function (body) {
        if (seq !== state.seq) return;
        state.req = req; state.q = req.q || "";
        state.shown = body.results.length; state.total = body.total; state.noClose = !!body.no_close_match;
        showError("");
        while (list.firstChild) list.removeChild(list.firstChild);
        body.results.forEach(function (h, i) { list.appendChild(row(h, i + 1)); });
        list.hidden = state.noClose;  // weak results are not shown as if they matched
        list.className = state.noClose ? "weak" : "";
        update();
        if (req.like && list.firstChild) list.firstChild.focus();  // the button pressed is gone
      }).catch(function (err) {
        if (err.name === "AbortError" || seq !== state.seq) return;
        while (list.firstChild) list.removeChild(list.firstChild);
        state.shown = state.total = 0;
        state.noClose = false;
        state.req = null;
        list.hidden = false;
        more.hidden = nearest.hidden = true;
        status.textContent = "";
        showError(err.message);
      });
    }

    form.addEventListener("submit", function (e) { e.preventDefault(); search(input.value); });
    nearest.addEventListener("click", function () {
      list.hidden = false;
      update();
      if (list.firstChild) list.firstChild.focus();
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown" && list.firstChild) { e.preventDefault(); list.firstChild.focus(); }
    });
    more.addEventListener("click", function () {
      var seq = state.seq;
      more.disabled = true;
      fetchPage(state.req, state.shown).then(function (body) {
        if (seq !== state.seq) return;
        var first = null;
        body.results.forEach(function (h, i) {
          var li = row(h, state.shown + i + 1);
          first = first || li;
          list.appendChild(li);
        });
        state.shown += body.results.length;
        state.total = body.total;
        showError("");
        update();
        if (first) first.focus();
        else more.hidden = true;
      }).catch(function (err) { showError(err.message); }).then(function () { more.disabled = false; });
    });

    if (options.query) search(options.query);
    return {
      element: host,
      search: search,
      destroy: function () {
        if (state.ctrl) state.ctrl.abort();
        while (root.firstChild) root.removeChild(root.firstChild);
      }
    };
  }

  var api = window.AudioSearchWidget || { version: "1", mount: mount };
  window.AudioSearchWidget = api;

  // Declarative use: <script src=".../widget.js" data-target="#el"></script>
  if (script && script.getAttribute("data-target")) {
    var auto = function () {
      var sel = script.getAttribute("data-target");
      var target = document.querySelector(sel);
      if (!target) {
        if (window.console) console.error("audiosearch widget: no element matches data-target " + sel);
        return;
      }
      mount(target, {
        server: DEFAULT_SERVER,
        k: script.getAttribute("data-k"),
        placeholder: script.getAttribute("data-placeholder"),
        label: script.getAttribute("data-label"),
        query: script.getAttribute("data-query"),
        mode: script.getAttribute("data-mode")
      });
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", auto);
    else auto();
  }
})();
