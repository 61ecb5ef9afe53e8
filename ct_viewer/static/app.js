/* ct viewer: the browser page (plain JavaScript, no build step; see ct_viewer/API.md).
 *
 * Routes (location.hash): "#/" the index; "#/graph/<id>?node_threshold=0.8&edge_threshold=0.98
 * &clicked=<id>&pinned=<id>,<id>&supernodes=<name>:<id>,<id>;..." one graph and the view of it
 * (kept up to date with history.replaceState; see "routing" below); "#/imported" a graph
 * imported from a file (client side only).
 *
 * Stable hooks for tests (ids; each element also has data-testid="<same name>"):
 *   body[data-state]        "index" | "loading" | "graph" | "error"
 *   body[data-source]       "server" | "imported" (the graph on show)
 *   body[data-features]     "loading" | "ready": the graph's feature labels (drawn once ready)
 *   body[data-url-notice]   "yes" | "no": whether the last link applied left something out
 *   #status                 last message; #author (remembered in localStorage "ct-viewer-author")
 *   #export-btn, #import-file
 *   index: #filter-model, #filter-q, #index-count, #graph-table;
 *          rows tr[data-testid=graph-row][data-graph-id]; headers th[data-key][aria-sort] with
 *          button[data-testid=sort-<key>] (click: ascending, again: descending)
 *   graph: #graph-canvas, #tooltip, #node-threshold, #edge-threshold, #search, #search-count,
 *          #graph-counts (data-nodes, data-links), #imported-note, #reset-view, #copy-link
 *   panel: #panel-node-id, #panel-kind, #panel-layer, #panel-pos, #panel-token, #panel-feature,
 *          #panel-activation (data-value: the raw number), #panel-clerp,
 *          #panel-influence (data-rank, data-of, data-share (lake graphs), data-cumulative),
 *          #panel-label, #label-input, #label-save, #pin-toggle,
 *          #remove-label (shown when the node has a label: deletes its label annotations),
 *          #panel-incoming / #panel-outgoing rows tr[data-testid=edge-row][data-node-id][data-weight]
 *   subgraph: #subgraph-canvas, #pinned-list li[data-testid=pinned-item][data-node-id],
 *          #unpin-all, #supernode-name, #supernode-create,
 *          #supernode-list li[data-testid=supernode-item][data-annotation-id]
 *          (.sn-name, .sn-members, button.sn-delete; a link's unsaved supernode also
 *          span[data-testid=supernode-local] and button.sn-save),
 *          #show-supernodes (checkbox, default on: draw supernode boxes on #graph-canvas)
 *   feature card (feature nodes; GET /api/graphs/<id>/features/<layer>/<feature>):
 *          #feature-card (data-state "loading" | "ok" | "missing" | "none"), #card-label,
 *          #card-label-source, #card-frequency / #card-act-max / #card-act-mean (data-value),
 *          #card-histogram (svg; rect.bar[data-count]), #card-top-logits / #card-bottom-logits
 *          span.chip[data-token][data-value], #card-top-tokens span.chip[data-token][data-count],
 *          #card-groups details.card-group[data-group] with div.example[data-max-act], its
 *          tokens span.tok[data-act] (span.tok.max: the example's largest activation),
 *          #card-error (why there is no card)
 *   tooltip: .tip-id, .tip-label, .tip-logits (top 3 logits, once the card is loaded)
 *   steering: #steer-table rows tr[data-testid=steer-input-row][data-node-id] with
 *          select.steer-mode ("value" | "multiplier"), input.steer-amount (what is sent) and
 *          span.steer-readout (data-value: the activation it applies); #freeze-attention,
 *          #steer-run, #steer-error, #steer-applied li[data-node-id][data-clean][data-value]
 *          (what the server applied), #steer-results rows tr[data-testid=steer-row][data-token]
 *          with td.p-before, td.p-after, td.p-delta (data-value on each)
 *
 * window.ctViewer (for tests and benchmarks):
 *   .state                  the live state (doc, model, pinned, annotations, ...)
 *   .nodeClientPos(id)      {x, y} viewport coordinates of a node's centre (canvas), or null
 *   .hover(id) -> ms        hover a node (null: none), redraw the overlay and rasterise it
 *   .redraw() -> ms         redraw everything (edges, nodes, overlay) and rasterise it
 *   .loadDocument(doc, opts) show a document (as the import does)
 *   .timings                {fetchMs, parseMs, buildMs, layoutMs, renderMs, overlayMs, totalMs}
 *   .supernodeBoxes()       the supernode boxes drawn by the last full redraw:
 *                           [{id, text, members, x0, y0, x1, y1}] in viewport coordinates
 *   .nodeLabels()           the node labels drawn on the canvas by the last full redraw:
 *                           [{id, text, x0, y0, x1, y1}] in viewport coordinates
 */
"use strict";

(function () {
  const CT = window.CT;
  const $ = (id) => document.getElementById(id);
  const AUTHOR_KEY = "ct-viewer-author";
  const COLORS = {
    feature: "#4e79a7",
    error: "#9a9a9a",
    token: "#59a14f",
    logit: "#f28e2b",
    pos: "rgba(33, 102, 172, ALPHA)",
    neg: "rgba(214, 39, 40, ALPHA)",
    pinned: "#8e44ad",
    supernodes: ["78, 121, 167", "225, 87, 89", "118, 183, 178", "237, 201, 72", "176, 122, 161", "255, 157, 167"],
    selected: "#111",
    match: "#e6b800",
  };

  const state = {
    view: "index",
    source: "server", // "server" | "imported"
    graphId: null,
    doc: null,
    model: null,
    grid: null,
    nodeThreshold: 0.8,
    edgeThreshold: 0.98,
    selected: -1,
    hover: -1,
    pinned: [], // node ids, in pin order
    matches: [],
    matchCursor: 0,
    annotations: [],
    showSupernodes: true,
    supernodeBoxes: [], // canvas (CSS px) boxes drawn by the last renderBase
    labels: new Map(), // node_id -> label text (latest wins)
    zoom: { k: 1, tx: 0, ty: 0 },
    summaries: [],
    indexSort: { key: null, desc: false }, // the index's sort column (a summary field)
    featureLabels: new Map(), // "<layer>_<feature>" -> {label, label_source} (feature dashboards)
    featureSource: null, // "lake" | "files" | null: where this graph's feature cards come from
    featureDetail: "", // why there are none
    cards: new Map(), // "<layer>_<feature>" -> {state: "loading"|"ok"|"missing", card, error}
    drawnLabels: [], // canvas (CSS px) boxes of the node labels drawn by the last renderBase
    steerSettings: new Map(), // node_id -> {mode, amount}
  };
  const timings = {};
  let base = null; // offscreen canvas with edges and nodes
  let frame = 0;
  let loadToken = 0;

  // ---------------------------------------------------------------- utilities
  /** The status line; isError true (red) or "warn" (a notice, amber). */
  function setStatus(text, isError) {
    const s = $("status");
    s.textContent = text || "";
    s.classList.toggle("error", isError === true);
    s.classList.toggle("warn", isError === "warn");
  }

  async function api(path, options) {
    const res = await fetch(path, options);
    if (!res.ok) {
      let detail = res.statusText;
      try {
        const body = await res.json();
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch (_) {
        /* not JSON */
      }
      throw new Error(`${res.status}: ${detail}`);
    }
    return res.status === 204 ? null : res.json();
  }

  function fmt(x, digits) {
    if (x === null || x === undefined || x === "") return "";
    if (typeof x !== "number") return String(x);
    if (!isFinite(x)) return String(x);
    const d = digits === undefined ? 4 : digits;
    return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(d);
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function showToken(t) {
    return t === undefined || t === null ? "" : JSON.stringify(t).slice(1, -1);
  }

  function debounce(fn, ms) {
    let t = 0;
    return (...args) => {
      clearTimeout(t);
      t = setTimeout(() => fn(...args), ms);
    };
  }

  function author() {
    return $("author").value.trim();
  }

  function canAnnotate() {
    return state.source === "server" && state.graphId !== null;
  }

  // ---------------------------------------------------------------- routing
  // A graph's view lives in its URL, so that a link shares it:
  //   #/graph/<id>?node_threshold=0.8&edge_threshold=0.98&clicked=<node id>
  //     &pinned=<node id>,<node id>&supernodes=<name>:<node id>,<node id>;<name>:<node id>
  // Names and ids are percent-encoded (encodeURIComponent), so ",", ":" and ";" only separate.
  // "nt" and "et" are read as the thresholds too (older links).
  const MAX_URL_IDS = 500; // as many node ids as an annotation may hold
  const MAX_URL_SUPERNODES = 100;

  function decodePart(text) {
    try {
      return decodeURIComponent(text.replace(/\+/g, " "));
    } catch (_) {
      return null; // a malformed %-sequence
    }
  }

  /** The raw (still encoded) values of a query string, by decoded key; the first one wins. */
  function rawParams(query) {
    const out = new Map();
    for (const part of (query || "").split("&")) {
      if (!part) continue;
      const eq = part.indexOf("=");
      const key = decodePart(eq < 0 ? part : part.slice(0, eq));
      if (key !== null && !out.has(key)) out.set(key, eq < 0 ? "" : part.slice(eq + 1));
    }
    return out;
  }

  function idList(raw) {
    return raw
      .split(",")
      .filter((x) => x !== "")
      .map(decodePart);
  }

  function parseHash() {
    const h = location.hash.replace(/^#/, "");
    const m = /^\/graph\/([^?]+)(?:\?(.*))?$/.exec(h);
    if (m) {
      const p = rawParams(m[2]);
      const raw = (...keys) => keys.map((k) => p.get(k)).find((v) => v !== undefined);
      const nt = raw("node_threshold", "nt");
      const et = raw("edge_threshold", "et");
      const supernodes = [];
      for (const part of (raw("supernodes") || "").split(";")) {
        if (!part) continue;
        const colon = part.indexOf(":");
        supernodes.push({
          raw: part,
          name: colon < 0 ? null : decodePart(part.slice(0, colon)),
          ids: colon < 0 ? [] : idList(part.slice(colon + 1)),
        });
      }
      return {
        view: "graph",
        id: decodePart(m[1]),
        nt: nt === undefined ? null : decodePart(nt),
        et: et === undefined ? null : decodePart(et),
        clicked: raw("clicked") ? decodePart(raw("clicked")) : null,
        pinned: raw("pinned") ? idList(raw("pinned")) : [],
        supernodes,
      };
    }
    if (h === "/imported") return { view: "imported" };
    return { view: "index" };
  }

  /** Threshold text of a URL as a slider value: a number in the slider's range, rounded to
   * its step; null (and a notice) otherwise. */
  function urlThreshold(text, input, name, notices) {
    if (text === null) return null;
    const x = Number(text);
    const lo = Number(input.min);
    const hi = Number(input.max);
    if (text.trim() === "" || !isFinite(x) || x < lo || x > hi) {
      notices.push(`${name}=${text.slice(0, 20)} (not a number from ${lo} to ${hi})`);
      return null;
    }
    return Math.round(x * 100) / 100;
  }

  function thresholdText(x) {
    return String(Math.round(x * 100) / 100);
  }

  function graphHash(id) {
    return (
      `#/graph/${encodeURIComponent(id)}?node_threshold=${thresholdText(state.nodeThreshold)}` +
      `&edge_threshold=${thresholdText(state.edgeThreshold)}`
    );
  }

  /** The URL of what is on show: the graph, thresholds, clicked node, pins and supernodes. */
  function viewHash() {
    const enc = encodeURIComponent;
    let h = graphHash(state.graphId);
    if (state.selected >= 0 && state.model) h += `&clicked=${enc(state.model.nodes[state.selected].node_id)}`;
    if (state.pinned.length) h += `&pinned=${state.pinned.map(enc).join(",")}`;
    const sns = state.annotations.filter((a) => a.kind === "supernode");
    if (sns.length) {
      h += `&supernodes=${sns.map((a) => `${enc(a.text)}:${a.node_ids.map(enc).join(",")}`).join(";")}`;
    }
    return h;
  }

  /** Write the view into the URL (no history entry, no reload). */
  function syncUrl() {
    if (state.source !== "server" || !state.graphId || state.view !== "graph") return;
    if (document.body.dataset.state !== "graph") return; // loading: the URL is still the truth
    const h = viewHash();
    if (location.hash !== h) history.replaceState(null, "", h);
  }

  // The view a URL asks for, applied once its graph's document is loaded.
  let pendingView = null;

  function route() {
    const r = parseHash();
    if (r.view === "graph") {
      if (r.id === null) {
        setStatus("the link's graph id is malformed", true);
        showView("index");
        loadIndex();
        return;
      }
      const notices = [];
      const nt = urlThreshold(r.nt, $("node-threshold"), "node_threshold", notices);
      const et = urlThreshold(r.et, $("edge-threshold"), "edge_threshold", notices);
      if (nt !== null) state.nodeThreshold = nt;
      if (et !== null) state.edgeThreshold = et;
      syncThresholdInputs();
      pendingView = { ...r, notices };
      const loaded = state.source === "server" && state.graphId === r.id && state.doc;
      const same =
        loaded &&
        state.loadedThresholds &&
        state.loadedThresholds[0] === state.nodeThreshold &&
        state.loadedThresholds[1] === state.edgeThreshold;
      if (same) {
        showView("graph");
        applyPendingView();
      } else {
        openGraph(r.id);
      }
    } else if (r.view === "imported" && state.source === "imported" && state.doc) {
      showView("graph");
    } else {
      showView("index");
      loadIndex();
    }
  }

  function supernodeKey(text, ids) {
    return `${text}\u0000${ids.slice().sort().join(",")}`;
  }

  /** Apply the URL's clicked node, pins and supernodes to the loaded document; ids that are not
   * nodes of it (at these thresholds) are left out, with one notice in the status line. */
  function applyPendingView() {
    const r = pendingView;
    pendingView = null;
    if (!r || !state.model || state.graphId !== r.id) return;
    const model = state.model;
    const notices = r.notices.slice();
    const unknown = [];
    const known = (id) => {
      if (id !== null && model.index.has(id)) return true;
      unknown.push(id === null ? "(malformed)" : id.slice(0, 40));
      return false;
    };
    state.pinned = [...new Set(r.pinned.slice(0, MAX_URL_IDS).filter(known))];
    state.selected = r.clicked !== null && known(r.clicked) ? model.index.get(r.clicked) : -1;
    const stored = new Set(
      state.annotations
        .filter((a) => a.kind === "supernode" && !a.local)
        .map((a) => supernodeKey(a.text, a.node_ids))
    );
    const local = [];
    for (const sn of r.supernodes.slice(0, MAX_URL_SUPERNODES)) {
      const name = sn.name === null ? "" : sn.name.trim().slice(0, 2000);
      if (!name) {
        notices.push(`supernode "${sn.raw.slice(0, 30)}" (no name: write name:id,id)`);
        continue;
      }
      const ids = [...new Set(sn.ids.slice(0, MAX_URL_IDS).filter(known))];
      if (!ids.length) {
        notices.push(`supernode "${name.slice(0, 40)}" (none of its nodes is in the graph)`);
        continue;
      }
      if (stored.has(supernodeKey(name, ids))) continue; // saved in the lake: shown already
      local.push({ id: `link-${local.length}`, kind: "supernode", text: name, node_ids: ids, author: "", local: true });
    }
    state.annotations = state.annotations.filter((a) => !a.local).concat(local);
    if (unknown.length) {
      const more = unknown.length > 5 ? ` and ${unknown.length - 5} more` : "";
      notices.push(
        `node ids not in this graph at node threshold ${thresholdText(state.nodeThreshold)}: ` +
          `${unknown.slice(0, 5).join(", ")}${more}`
      );
    }
    rebuildLabels();
    if (notices.length) setStatus(`ignored from the link: ${notices.join("; ")}`, "warn");
    document.body.dataset.urlNotice = notices.length ? "yes" : "no";
    syncUrl();
  }

  function showView(view) {
    state.view = view;
    $("index-view").hidden = view !== "index";
    $("graph-view").hidden = view !== "graph";
    if (view === "index") {
      document.body.dataset.state = "index";
      $("graph-title").textContent = "";
    }
    // A link holds a server graph's view; an imported graph has no URL of its own.
    $("copy-link").hidden = !(view === "graph" && state.source === "server");
    if (view === "graph") requestAnimationFrame(resizeCanvas);
  }

  // ---------------------------------------------------------------- index
  let indexLoaded = false;

  async function loadIndex() {
    try {
      if (!indexLoaded) {
        const all = await api("/api/graphs");
        const models = [...new Set(all.graphs.map((g) => g.model))].sort();
        const sel = $("filter-model");
        const keep = sel.value;
        sel.replaceChildren(el("option", { value: "", text: "all" }));
        for (const m of models) sel.append(el("option", { value: m, text: m }));
        sel.value = models.includes(keep) ? keep : "";
        indexLoaded = true;
      }
      await refreshIndex();
    } catch (err) {
      setStatus(`could not load the graphs: ${err.message}`, true);
    }
  }

  async function refreshIndex() {
    const params = new URLSearchParams();
    if ($("filter-model").value) params.set("model", $("filter-model").value);
    if ($("filter-q").value.trim()) params.set("q", $("filter-q").value.trim());
    const qs = params.toString();
    const data = await api(`/api/graphs${qs ? "?" + qs : ""}`);
    state.summaries = data.graphs;
    renderIndex();
    // What could not be listed (a damaged lake file, a broken graph file) is named, not hidden.
    const damaged = data.damaged || [];
    if (damaged.length) {
      const named = damaged.map((d) => d.graph || d.file || "the lake").join(", ");
      setStatus(`not listed (damaged; ct lake check tells more): ${named}`, "warn");
    }
  }

  const TEXT_COLUMNS = new Set(["model", "prompt_text", "top_target", "source"]);

  /** Summaries in the index's order: by the clicked column (numbers as numbers, text by
   * locale; empty cells last either way), else as the server lists them. */
  function sortedSummaries() {
    const { key, desc } = state.indexSort;
    const rows = state.summaries.slice();
    if (!key) return rows;
    const text = TEXT_COLUMNS.has(key);
    const empty = (v) => v === null || v === undefined || v === "" || (!text && !isFinite(Number(v)));
    rows.sort((a, b) => {
      const x = a[key];
      const y = b[key];
      if (empty(x) || empty(y)) return empty(x) - empty(y);
      const c = text
        ? String(x).localeCompare(String(y), undefined, { numeric: true, sensitivity: "base" })
        : Number(x) - Number(y);
      return desc ? -c : c;
    });
    return rows;
  }

  function sortIndexBy(key) {
    const s = state.indexSort;
    state.indexSort = { key, desc: s.key === key ? !s.desc : false };
    renderIndex();
  }

  function renderIndex() {
    const { key, desc } = state.indexSort;
    for (const th of $("graph-table").tHead.rows[0].cells) {
      const on = th.dataset.key === key;
      th.setAttribute("aria-sort", on ? (desc ? "descending" : "ascending") : "none");
      th.querySelector(".sort-mark").textContent = on ? (desc ? " \u25bc" : " \u25b2") : "";
    }
    const body = $("graph-table").tBodies[0];
    body.replaceChildren();
    const graphs = sortedSummaries();
    for (const g of graphs) {
      const tr = el(
        "tr",
        { "data-testid": "graph-row", "data-graph-id": g.id, title: g.id, tabindex: "0" },
        el("td", { text: g.model }),
        el("td", { class: "prompt", text: g.prompt_text }),
        el("td", { class: "num", text: g.n_tokens ?? "" }),
        el("td", { class: "num", text: g.n_features ?? "" }),
        el("td", { class: "num", text: g.n_edges ?? "" }),
        el("td", { text: g.top_target === null ? "" : showToken(g.top_target) }),
        el("td", { class: "num", text: fmt(g.top_target_prob, 3) }),
        el("td", { class: "num score", text: fmt(g.replacement_score, 3) }),
        el("td", { class: "num score", text: fmt(g.completeness_score, 3) }),
        el("td", { text: g.source })
      );
      const open = () => (location.hash = graphHash(g.id));
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (ev) => ev.key === "Enter" && open());
      body.append(tr);
    }
    $("index-count").textContent = `${graphs.length} graph(s)`;
  }

  // ---------------------------------------------------------------- loading a graph
  async function openGraph(id) {
    const token = ++loadToken;
    document.body.dataset.state = "loading";
    showView("graph");
    setStatus(`loading ${id} ...`);
    const t0 = performance.now();
    const nt = state.nodeThreshold;
    const et = state.edgeThreshold;
    try {
      const url = `/api/graphs/${encodeURIComponent(id)}?node_threshold=${nt}&edge_threshold=${et}`;
      const res = await fetch(url);
      if (!res.ok) {
        let detail = res.statusText;
        try {
          detail = (await res.json()).detail;
        } catch (_) {
          /* not JSON */
        }
        throw new Error(`${res.status}: ${detail}`);
      }
      const text = await res.text();
      const t1 = performance.now();
      const doc = JSON.parse(text);
      const t2 = performance.now();
      if (token !== loadToken) return;
      timings.fetchMs = t1 - t0;
      timings.parseMs = t2 - t1;
      const sameGraph = state.graphId === id && state.source === "server";
      loadDocument(doc, { source: "server", id, keepSelection: sameGraph });
      state.loadedThresholds = [nt, et];
      timings.totalMs = performance.now() - t0;
      if (pendingView && pendingView.id === id) applyPendingView();
      else syncUrl();
      await Promise.all([loadAnnotations(token), sameGraph ? null : loadFeatureLabels(token)]);
    } catch (err) {
      if (token !== loadToken) return;
      document.body.dataset.state = "error";
      setStatus(`could not load ${id}: ${err.message}`, true);
    }
  }

  function loadDocument(doc, opts) {
    const o = opts || {};
    const tb = performance.now();
    const model = CT.buildModel(doc);
    timings.buildMs = performance.now() - tb;
    const prevSelected = state.selected >= 0 && state.model ? state.model.nodes[state.selected].node_id : null;
    state.source = o.source || "server";
    state.graphId = o.id || null;
    state.doc = doc;
    state.model = model;
    state.selected = -1;
    state.hover = -1;
    state.matches = [];
    if (!o.keepSelection) {
      state.pinned = [];
      state.annotations = [];
      state.labels = new Map();
      state.featureLabels = new Map();
      state.featureSource = null;
      state.featureDetail =
        state.source === "imported" ? "feature cards come with graphs served by ct serve" : "";
      state.cards = new Map();
      document.body.dataset.features = state.source === "imported" ? "ready" : "loading";
      state.zoom = { k: 1, tx: 0, ty: 0 };
      $("steer-results").tBodies[0].replaceChildren();
      $("steer-applied").replaceChildren();
      $("steer-error").textContent = "";
      const qp = doc.qParams || {};
      if (state.source === "imported") {
        state.pinned = (qp.pinnedIds || []).filter((id) => model.index.has(id));
        state.annotations = (qp.supernodes || []).map((sn, k) => ({
          id: `imported-${k}`,
          kind: "supernode",
          text: sn[0],
          node_ids: sn.slice(1),
          author: "",
        }));
      }
    } else if (prevSelected && model.index.has(prevSelected)) {
      state.selected = model.index.get(prevSelected);
    }
    document.body.dataset.source = state.source;
    const meta = doc.metadata || {};
    $("graph-title").textContent =
      (state.source === "imported" ? "[imported] " : "") + (meta.slug || o.id || "") +
      (meta.prompt ? ` \u2014 ${meta.prompt}` : "");
    $("imported-note").hidden = state.source !== "imported";
    $("export-btn").disabled = false;
    for (const e of document.querySelectorAll(".annot-only")) {
      e.classList.toggle("disabled", state.source === "imported");
      for (const c of e.querySelectorAll("input, button")) c.disabled = state.source === "imported";
    }
    const counts = $("graph-counts");
    counts.textContent = `${model.n} nodes, ${model.m} links`;
    counts.dataset.nodes = model.n;
    counts.dataset.links = model.m;
    showView("graph");
    resizeCanvas(true);
    applySearch();
    updatePanel();
    updatePinned();
    updateSupernodes();
    document.body.dataset.state = "graph";
    setStatus(`${meta.slug || o.id || "graph"}: ${model.n} nodes, ${model.m} links`);
  }

  async function loadAnnotations(token) {
    if (!canAnnotate()) return;
    try {
      const data = await api(`/api/graphs/${encodeURIComponent(state.graphId)}/annotations`);
      if (token !== undefined && token !== loadToken) return;
      // Supernodes of a link stay (unsaved) unless the lake holds the same ones.
      const stored = new Set(
        data.annotations.filter((a) => a.kind === "supernode").map((a) => supernodeKey(a.text, a.node_ids))
      );
      const local = state.annotations.filter((a) => a.local && !stored.has(supernodeKey(a.text, a.node_ids)));
      state.annotations = data.annotations.concat(local);
      rebuildLabels();
      syncUrl();
    } catch (err) {
      setStatus(`could not load annotations: ${err.message}`, true);
    }
  }

  async function loadFeatureLabels(token) {
    if (state.source !== "server" || !state.graphId) return;
    try {
      const data = await api(`/api/graphs/${encodeURIComponent(state.graphId)}/features`);
      if (token !== undefined && token !== loadToken) return;
      state.featureSource = data.source;
      state.featureDetail = data.detail || "";
      state.featureLabels = new Map(
        data.features.map((f) => [`${f.layer}_${f.feature}`, { label: f.label, label_source: f.label_source }])
      );
    } catch (err) {
      state.featureSource = null;
      state.featureDetail = `could not load the feature labels: ${err.message}`;
    }
    document.body.dataset.features = "ready";
    // Only the card: the rest of the panel holds what the user may be typing (a label).
    if (state.selected >= 0) updateCard();
    applySearch(true);
    scheduleDraw(true);
  }

  // ---------------------------------------------------------------- feature cards
  /** "<layer>_<feature>" of a feature node (its transcoder feature), else null. */
  function featureKey(i) {
    const model = state.model;
    if (!model || i < 0 || model.kind[i] !== "feature") return null;
    const node = model.nodes[i];
    const fi = CT.featureIndex(node);
    const layer = parseInt(node.layer, 10);
    return Number.isInteger(fi) && Number.isInteger(layer) ? `${layer}_${fi}` : null;
  }

  /** A node's label: a person's (annotation) first, then the feature dashboards'. */
  function nodeLabel(i) {
    const node = state.model.nodes[i];
    const own = state.labels.get(node.node_id);
    if (own) return own;
    const key = featureKey(i);
    const f = key && state.featureLabels.get(key);
    return f && f.label ? f.label : "";
  }

  /** The card of feature node i: {state, card, error}, fetched once (then cached). */
  function cardOf(i, onReady) {
    const key = featureKey(i);
    if (!key || !state.featureSource || state.source !== "server") return null;
    let entry = state.cards.get(key);
    if (!entry) {
      entry = { state: "loading", card: null, error: "", waiting: [] };
      state.cards.set(key, entry);
      const [layer, feature] = key.split("_");
      const graphId = state.graphId;
      api(`/api/graphs/${encodeURIComponent(graphId)}/features/${layer}/${feature}`)
        .then((card) => {
          entry.state = "ok";
          entry.card = card;
        })
        .catch((err) => {
          entry.state = "missing";
          entry.error = err.message;
        })
        .finally(() => {
          if (state.graphId !== graphId) return;
          for (const f of entry.waiting.splice(0)) f(entry);
        });
    }
    if (onReady && entry.state === "loading") entry.waiting.push(onReady);
    return entry;
  }

  /** After a person labels or unlabels feature node i: its card and the labels again (a lake
   * graph's card shows a person's label as its own, source "human"). */
  function refreshFeatureLabel(i) {
    const key = featureKey(i);
    if (!key || !state.featureSource) return;
    state.cards.delete(key);
    loadFeatureLabels(loadToken);
  }

  const SOURCE_NAMES = {
    human: "human: a person's label",
    truth: "truth: the toy world's known facts",
    explainer: "explainer: an external labeller",
    auto: "auto: the automatic rule",
  };

  function pct(x) {
    if (typeof x !== "number" || !isFinite(x)) return "";
    if (x === 0) return "0%";
    const p = 100 * x;
    return p >= 10 ? `${p.toFixed(1)}%` : p >= 0.1 ? `${p.toFixed(2)}%` : `${p.toPrecision(2)}%`;
  }

  function chips(id, pairs, cls, valueName) {
    const box = el("div", { id, "data-testid": id, class: "chips" });
    for (const [token, value] of pairs) {
      const attrs = { class: `chip ${cls}`, "data-token": token, title: `"${showToken(token)}" ${valueName} ${value}` };
      attrs[`data-${valueName}`] = value === null ? "" : String(value);
      box.append(
        el(
          "span",
          attrs,
          el("span", { class: "chip-tok", text: showToken(token) }),
          el("span", { class: "chip-val", text: valueName === "count" ? String(value) : fmt(value, 2) })
        )
      );
    }
    if (!pairs.length) box.append(el("span", { class: "hint", text: "none" }));
    return box;
  }

  const SVG = "http://www.w3.org/2000/svg";

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** The activation histogram: bars over the bins (x linear in the activation). */
  function histogram(card) {
    const counts = card.histogram_counts || [];
    const W = 330;
    const H = 64;
    const pad = { l: 4, r: 4, t: 12, b: 14 };
    const svg = svgEl("svg", {
      id: "card-histogram",
      "data-testid": "card-histogram",
      class: "histogram",
      width: W,
      height: H,
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": "activation histogram",
    });
    if (!counts.length) {
      svg.append(svgEl("text", { x: pad.l, y: H / 2, class: "axis" }, "never fired on the corpus"));
      return svg;
    }
    let edges = card.histogram_edges || [];
    if (edges.length !== counts.length + 1) {
      // A circuit-tracer record has counts only: equal bins between act_min and act_max.
      const lo = card.act_min || 0;
      const hi = card.act_max > lo ? card.act_max : lo + 1;
      edges = counts.map((_, k) => lo + ((hi - lo) * k) / counts.length).concat([hi]);
    }
    const x0 = edges[0];
    const span = edges[edges.length - 1] - x0 || 1;
    const maxCount = Math.max(...counts, 1);
    const iw = W - pad.l - pad.r;
    const ih = H - pad.t - pad.b;
    svg.append(svgEl("line", { x1: pad.l, x2: W - pad.r, y1: H - pad.b + 0.5, y2: H - pad.b + 0.5, class: "base" }));
    counts.forEach((c, k) => {
      const xa = pad.l + (iw * (edges[k] - x0)) / span;
      const xb = pad.l + (iw * (edges[k + 1] - x0)) / span;
      const h = (ih * c) / maxCount;
      const bar = svgEl("rect", {
        class: "bar",
        "data-count": c,
        x: xa.toFixed(2),
        y: (H - pad.b - h).toFixed(2),
        width: Math.max(1, xb - xa - 0.5).toFixed(2),
        height: h.toFixed(2),
      });
      bar.append(svgEl("title", {}, `${fmt(edges[k], 3)} to ${fmt(edges[k + 1], 3)}: ${c} tokens`));
      svg.append(bar);
    });
    svg.append(svgEl("text", { x: pad.l, y: H - 2, class: "axis" }, fmt(edges[0], 2)));
    svg.append(svgEl("text", { x: W - pad.r, y: H - 2, class: "axis", "text-anchor": "end" }, fmt(edges[edges.length - 1], 2)));
    svg.append(svgEl("text", { x: pad.l, y: 9, class: "axis" }, `max ${maxCount} tokens per bin`));
    return svg;
  }

  // Context shown around an example's largest activation (tokens before and after it).
  const CONTEXT_BEFORE = 16;
  const CONTEXT_AFTER = 6;

  function exampleRow(ex, actMax) {
    const n = ex.tokens.length;
    const a = Math.max(0, ex.max_pos - CONTEXT_BEFORE);
    const b = Math.min(n, ex.max_pos + CONTEXT_AFTER + 1);
    const row = el("div", {
      class: "example",
      "data-testid": "card-example",
      "data-max-act": String(ex.max_act),
      "data-max-pos": String(ex.max_pos),
    });
    if (a > 0) row.append(el("span", { class: "more", text: "\u2026" }));
    const scale = actMax > 0 ? actMax : Math.max(...ex.acts, 1e-9);
    for (let k = a; k < b; k++) {
      const act = ex.acts[k] || 0;
      const shade = Math.min(1, Math.max(0, act / scale));
      const tok = el("span", {
        class: k === ex.max_pos ? "tok max" : "tok",
        "data-act": String(act),
        title: `"${showToken(ex.tokens[k])}": ${fmt(act, 3)}`,
        text: showToken(ex.tokens[k]),
      });
      if (shade > 0) tok.style.backgroundColor = `rgba(255, 127, 14, ${(0.12 + 0.78 * shade).toFixed(3)})`;
      row.append(tok);
    }
    if (b < n) row.append(el("span", { class: "more", text: "\u2026" }));
    return row;
  }

  function renderCard(box, card) {
    const sourceTitle = SOURCE_NAMES[card.label_source] || card.label_source || "";
    box.append(
      el(
        "div",
        { class: "card-head" },
        el("span", {
          id: "card-label",
          "data-testid": "card-label",
          class: "card-label",
          text: card.label || "(no label)",
          title: card.label || "",
        }),
        card.label_source
          ? el("span", {
              id: "card-label-source",
              "data-testid": "card-label-source",
              class: `badge src-${card.label_source}`,
              title: sourceTitle,
              text: card.label_source,
            })
          : null
      )
    );
    const stat = (id, name, value, text) =>
      el(
        "span",
        { class: "stat" },
        el("span", { class: "stat-name", text: name }),
        el("span", { id, "data-testid": id, "data-value": value === null || value === undefined ? "" : String(value), text })
      );
    const nTokens = card.n_tokens ? ` of ${card.n_tokens.toLocaleString("en-US")} tokens` : "";
    box.append(
      el(
        "div",
        { class: "card-stats" },
        stat("card-frequency", "fires on", card.frequency, `${pct(card.frequency)}${nTokens}`),
        stat("card-act-max", "max act", card.act_max, fmt(card.act_max, 3)),
        stat("card-act-mean", "mean act", card.act_mean, fmt(card.act_mean, 3))
      )
    );
    box.append(histogram(card));
    box.append(el("h5", { text: "Top logits (promoted)" }), chips("card-top-logits", card.top_logits || [], "pos", "value"));
    box.append(el("h5", { text: "Bottom logits (suppressed)" }), chips("card-bottom-logits", card.bottom_logits || [], "neg", "value"));
    if ((card.top_tokens || []).length) {
      box.append(el("h5", { text: "Fires most on" }), chips("card-top-tokens", card.top_tokens, "in", "count"));
    }
    const groups = el("div", { id: "card-groups", "data-testid": "card-groups" });
    (card.groups || []).forEach((g, k) => {
      const details = el(
        "details",
        { class: "card-group", "data-group": g.name },
        el("summary", { text: `${g.name} (${g.examples.length})` })
      );
      if (k === 0) details.open = true;
      for (const ex of g.examples) details.append(exampleRow(ex, card.act_max));
      groups.append(details);
    });
    if (!(card.groups || []).length) groups.append(el("p", { class: "hint", text: "no examples: the feature never fired on the corpus" }));
    box.append(groups);
  }

  /** Fill #feature-card for the selected node (hidden for other kinds). */
  function updateCard() {
    const section = $("feature-card");
    const body = $("card-body");
    const i = state.selected;
    const key = featureKey(i);
    section.hidden = !key;
    if (!key) return;
    body.replaceChildren();
    const entry = cardOf(i, () => state.selected === i && updateCard());
    const [layer, feature] = key.split("_");
    $("card-title").textContent = `Feature card \u2014 layer ${layer}, feature ${feature}`;
    if (!entry) {
      section.dataset.state = "none";
      body.append(el("p", { id: "card-error", "data-testid": "card-error", class: "hint", text: state.featureDetail || "no feature dashboards for this graph" }));
      return;
    }
    section.dataset.state = entry.state;
    if (entry.state === "loading") {
      body.append(el("p", { class: "hint", text: "loading the feature card ..." }));
    } else if (entry.state === "missing") {
      body.append(el("p", { id: "card-error", "data-testid": "card-error", class: "hint", text: entry.error }));
    } else {
      renderCard(body, entry.card);
    }
  }

  function rebuildLabels() {
    state.labels = new Map();
    for (const a of state.annotations) {
      if (a.kind === "label" && a.node_ids.length === 1) state.labels.set(a.node_ids[0], a.text);
    }
    updatePanel();
    updatePinned();
    updateSupernodes();
    applySearch(true);
    scheduleDraw(true);
    syncUrl();
  }

  // ---------------------------------------------------------------- canvas
  const canvas = () => $("graph-canvas");

  function resizeCanvas(force) {
    const c = canvas();
    const wrap = $("canvas-wrap");
    const w = Math.max(200, wrap.clientWidth);
    const h = Math.max(200, wrap.clientHeight);
    const dpr = window.devicePixelRatio || 1;
    const changed = c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr);
    if (!changed && !force) return;
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
    c.style.width = `${w}px`;
    c.style.height = `${h}px`;
    if (state.model) {
      const tl = performance.now();
      CT.layoutModel(state.model, w, h);
      state.grid = new CT.Grid(state.model);
      timings.layoutMs = performance.now() - tl;
      drawAll(!!force);
    }
  }

  function toScreen(i) {
    const m = state.model;
    const z = state.zoom;
    return [m.x[i] * z.k + z.tx, m.y[i] * z.k + z.ty];
  }

  function radiusScale() {
    return Math.sqrt(state.zoom.k);
  }

  // Canvas drawing is recorded, then rasterised later: a 1-pixel read forces it (timing only).
  function flush() {
    canvas().getContext("2d").getImageData(0, 0, 1, 1);
  }

  function drawAll(measure) {
    const t = performance.now();
    renderBase();
    drawOverlay();
    if (measure) flush();
    timings.renderMs = performance.now() - t;
    return timings.renderMs;
  }

  const settle = debounce(() => scheduleDraw(true), 150);

  function scheduleDraw(full) {
    if (full) frame |= 2;
    else frame |= 1;
    if (frame & 4) return;
    frame |= 4;
    requestAnimationFrame(() => {
      const f = frame;
      frame = 0;
      if (!state.model) return;
      if (f & 2) drawAll();
      else drawOverlay();
    });
  }

  // Edges thicker than 1 px are costly to rasterise in one path (overlaps): at most this many
  // are drawn thick, one stroke each; the rest are 1 px lines batched in one path per bucket.
  const MAX_THICK = 1500;

  function edgeBuckets(model, alpha) {
    // 2 signs x 4 widths; weights relative to the largest |weight|.
    const buckets = [];
    for (let s = 0; s < 2; s++) {
      for (let b = 0; b < 4; b++) {
        buckets.push({
          color: (s ? COLORS.neg : COLORS.pos).replace("ALPHA", String(alpha[b])),
          width: [1, 1, 1.8, 3.2][b],
          edges: [],
        });
      }
    }
    const inv = 1 / model.maxAbs;
    const thick = [];
    for (let e = 0; e < model.m; e++) {
      const a = Math.abs(model.w[e]) * inv;
      const b = a > 0.5 ? 3 : a > 0.2 ? 2 : a > 0.05 ? 1 : 0;
      if (b >= 2) thick.push(e);
      else buckets[(model.w[e] < 0 ? 4 : 0) + b].edges.push(e);
    }
    thick.sort((p, q) => Math.abs(model.w[q]) - Math.abs(model.w[p]));
    thick.forEach((e, k) => {
      const a = Math.abs(model.w[e]) * inv;
      const b = k >= MAX_THICK ? 1 : a > 0.5 ? 3 : 2;
      buckets[(model.w[e] < 0 ? 4 : 0) + b].edges.push(e);
    });
    return buckets;
  }

  function strokeEdges(ctx, model, edges, z, each) {
    const { x, y, src, dst } = model;
    ctx.beginPath();
    // Thick edges come sorted by |weight| (largest first): draw the largest last, on top.
    for (let k = each ? edges.length - 1 : 0; each ? k >= 0 : k < edges.length; k += each ? -1 : 1) {
      const e = edges[k];
      const s = src[e];
      const t = dst[e];
      ctx.moveTo(x[s] * z.k + z.tx, y[s] * z.k + z.ty);
      ctx.lineTo(x[t] * z.k + z.tx, y[t] * z.k + z.ty);
      if (each) {
        ctx.stroke();
        ctx.beginPath();
      }
    }
    if (!each) ctx.stroke();
  }

  function nodePath(ctx, kind, sx, sy, r) {
    if (kind === "feature") {
      ctx.moveTo(sx + r, sy);
      ctx.arc(sx, sy, r, 0, 2 * Math.PI);
    } else if (kind === "error") {
      ctx.rect(sx - r, sy - r, 2 * r, 2 * r);
    } else if (kind === "token") {
      ctx.moveTo(sx, sy - r * 1.2);
      ctx.lineTo(sx + r * 1.2, sy);
      ctx.lineTo(sx, sy + r * 1.2);
      ctx.lineTo(sx - r * 1.2, sy);
      ctx.closePath();
    } else {
      ctx.moveTo(sx, sy - r * 1.3);
      ctx.lineTo(sx + r * 1.2, sy + r * 0.9);
      ctx.lineTo(sx - r * 1.2, sy + r * 0.9);
      ctx.closePath();
    }
  }

  function renderBase() {
    const c = canvas();
    const model = state.model;
    if (!base) base = document.createElement("canvas");
    if (base.width !== c.width || base.height !== c.height) {
      base.width = c.width;
      base.height = c.height;
    }
    const ctx = base.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    const w = c.width / dpr;
    const h = c.height / dpr;
    const z = state.zoom;
    state.baseZoom = { k: z.k, tx: z.tx, ty: z.ty };
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    // Row guides and layer names.
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "middle";
    ctx.strokeStyle = "#eee";
    ctx.lineWidth = 1;
    for (let r = 0; r < model.nRows; r++) {
      const y = CT.rowY(model, r) * z.k + z.ty;
      if (y < -20 || y > h + 20) continue;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
      ctx.stroke();
      ctx.fillStyle = "#888";
      const name = r === 0 ? "emb" : r === model.nRows - 1 && r > model.nLayers ? "logit" : `L${r - 1}`;
      ctx.fillText(name, 4, y);
    }
    // Edges: one path per (sign, width) bucket, the heaviest on top.
    const dense = model.m > 5000;
    const buckets = edgeBuckets(model, dense ? [0.08, 0.25, 0.45, 0.7] : [0.25, 0.45, 0.6, 0.8]);
    for (let b = 0; b < 4; b++) {
      for (const s of [0, 4]) {
        const bucket = buckets[s + b];
        if (!bucket.edges.length) continue;
        ctx.strokeStyle = bucket.color;
        ctx.lineWidth = bucket.width;
        strokeEdges(ctx, model, bucket.edges, z, b >= 2);
      }
    }
    const rs = radiusScale();
    drawSupernodes(ctx, w, h, rs);
    // Nodes: one path per kind.
    let visible = 0;
    for (const kind of ["feature", "error", "token", "logit"]) {
      ctx.beginPath();
      let any = false;
      for (let i = 0; i < model.n; i++) {
        if (model.kind[i] !== kind) continue;
        const sx = model.x[i] * z.k + z.tx;
        const sy = model.y[i] * z.k + z.ty;
        if (sx < -20 || sy < -20 || sx > w + 20 || sy > h + 20) continue;
        if (sx >= 0 && sy >= 0 && sx <= w && sy <= h) visible++;
        nodePath(ctx, kind, sx, sy, model.r[i] * rs);
        any = true;
      }
      if (!any) continue;
      ctx.fillStyle = COLORS[kind];
      ctx.fill();
      if (model.n < 2000) {
        ctx.strokeStyle = "rgba(0,0,0,0.45)";
        ctx.lineWidth = 0.6;
        ctx.stroke();
      }
    }
    // Target logits get a bold outline.
    ctx.beginPath();
    for (let i = 0; i < model.n; i++) {
      if (model.kind[i] === "logit" && model.nodes[i].is_target_logit) {
        const [sx, sy] = toScreen(i);
        nodePath(ctx, "logit", sx, sy, model.r[i] * rs + 1.5);
      }
    }
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1.5;
    ctx.stroke();
    // Prompt tokens along the bottom.
    ctx.fillStyle = "#333";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let p = 0; p < model.nPos; p++) {
      const x0 = model.colX[p] * z.k + z.tx;
      const x1 = model.colX[p + 1] * z.k + z.tx;
      if (x1 < 0 || x0 > w) continue;
      const tok = showToken(model.tokens[p]);
      ctx.save();
      ctx.beginPath();
      ctx.rect(x0, h - model.margin.bottom + 4, x1 - x0, model.margin.bottom);
      ctx.clip();
      ctx.fillText(tok, (x0 + x1) / 2, h - model.margin.bottom + 8);
      ctx.fillStyle = "#aaa";
      ctx.fillText(String(p), (x0 + x1) / 2, h - model.margin.bottom + 22);
      ctx.restore();
      ctx.strokeStyle = "#f3f3f3";
      ctx.beginPath();
      ctx.moveTo(x0, 0);
      ctx.lineTo(x0, h);
      ctx.stroke();
    }
    // Target logits on top: their tokens above them.
    ctx.textBaseline = "bottom";
    ctx.textAlign = "center";
    ctx.fillStyle = "#a0522d";
    const logitBoxes = [];
    for (let i = 0; i < model.n && logitBoxes.length < 400; i++) {
      if (model.kind[i] !== "logit") continue;
      const node = model.nodes[i];
      const [sx, sy] = toScreen(i);
      if (sx < 0 || sx > w || sy < 0 || sy > h) continue;
      const tok = CT.logitToken(node);
      const text = showToken(tok === null ? node.feature : tok);
      const y = sy - model.r[i] * rs - 3;
      ctx.fillText(text, sx, y);
      const tw = ctx.measureText(text).width;
      logitBoxes.push({ x0: sx - tw / 2, y0: y - 12, x1: sx + tw / 2, y1: y });
    }
    ctx.textAlign = "left";
    // Node labels keep clear of the logits' tokens and the supernodes' names.
    const titles = state.supernodeBoxes.map((b) => b.title).filter((b) => b);
    drawNodeLabels(ctx, w, h, rs, visible, logitBoxes.concat(titles));
  }

  // Feature labels are drawn when they can be read: at most this many nodes on screen, or
  // zoomed in at least this much; a person's labels always. Longer labels are cut.
  const LABEL_MAX_VISIBLE = 60;
  const LABEL_ZOOM = 2.5;
  const LABEL_CHARS = 26;
  const MAX_LABELS = 300;

  function truncate(text, n) {
    return text.length > n ? text.slice(0, n - 1) + "\u2026" : text;
  }

  function overlaps(a, b) {
    return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
  }

  /** Node labels beside their nodes, most influential first; a label that would cover
   * another label or another node (right, left, above and below are tried) is left out. */
  function drawNodeLabels(ctx, w, h, rs, visible, taken) {
    const model = state.model;
    const drawn = [];
    state.drawnLabels = drawn;
    const features = visible <= LABEL_MAX_VISIBLE || state.zoom.k >= LABEL_ZOOM;
    const candidates = [];
    const discs = [];
    for (let i = 0; i < model.n; i++) {
      const [sx, sy] = toScreen(i);
      if (sx < 0 || sx > w || sy < 0 || sy > h) continue;
      const r = model.r[i] * rs;
      discs.push({ i, x0: sx - r, y0: sy - r, x1: sx + r, y1: sy + r });
      if (model.kind[i] === "logit") continue;
      const own = state.labels.has(model.nodes[i].node_id);
      if (!own && !(features && model.kind[i] === "feature")) continue;
      const text = nodeLabel(i);
      if (!text) continue;
      const inf = model.nodes[i].influence;
      candidates.push({ i, own, text: truncate(text, LABEL_CHARS), sx, sy, r, inf: typeof inf === "number" ? inf : 1 });
    }
    if (!candidates.length) return;
    candidates.sort((a, b) => b.own - a.own || a.inf - b.inf);
    candidates.length = Math.min(candidates.length, MAX_LABELS);
    const placed = taken.slice();
    const lineH = 13;
    ctx.lineJoin = "round";
    ctx.textBaseline = "middle";
    for (const c of candidates) {
      ctx.font = c.own ? "600 11px sans-serif" : "11px sans-serif";
      const tw = ctx.measureText(c.text).width;
      const gap = c.r + 3;
      const options = [
        { x0: c.sx + gap, y0: c.sy - lineH / 2 },
        { x0: c.sx - gap - tw, y0: c.sy - lineH / 2 },
        { x0: c.sx - tw / 2, y0: c.sy - gap - lineH },
        { x0: c.sx - tw / 2, y0: c.sy + gap },
      ];
      for (const o of options) {
        const box = { x0: o.x0, y0: o.y0, x1: o.x0 + tw, y1: o.y0 + lineH };
        if (box.x0 < 0 || box.y0 < 0 || box.x1 > w || box.y1 > h) continue;
        if (placed.some((p) => overlaps(p, box))) continue;
        if (discs.some((d) => d.i !== c.i && overlaps(d, box))) continue;
        placed.push(box);
        ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
        ctx.lineWidth = 3;
        ctx.strokeText(c.text, box.x0, box.y0 + lineH / 2);
        ctx.fillStyle = c.own ? "#111" : "#1f3b57";
        ctx.fillText(c.text, box.x0, box.y0 + lineH / 2);
        drawn.push({ id: model.nodes[c.i].node_id, text: c.text, ...box });
        break;
      }
    }
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "bottom";
  }

  // Supernodes: a translucent rounded box around the members in the current (pruned) document.
  function drawSupernodes(ctx, w, h, rs) {
    const model = state.model;
    const boxes = [];
    state.supernodeBoxes = boxes;
    if (!state.showSupernodes) return;
    const z = state.zoom;
    let k = 0;
    for (const a of state.annotations) {
      if (a.kind !== "supernode") continue;
      const rgb = COLORS.supernodes[k++ % COLORS.supernodes.length];
      let x0 = Infinity;
      let y0 = Infinity;
      let x1 = -Infinity;
      let y1 = -Infinity;
      const members = [];
      for (const id of a.node_ids) {
        const i = model.index.get(id);
        if (i === undefined) continue;
        const r = model.r[i] * rs + 6;
        const sx = model.x[i] * z.k + z.tx;
        const sy = model.y[i] * z.k + z.ty;
        x0 = Math.min(x0, sx - r);
        y0 = Math.min(y0, sy - r);
        x1 = Math.max(x1, sx + r);
        y1 = Math.max(y1, sy + r);
        members.push(id);
      }
      if (!members.length) continue;
      boxes.push({ id: a.id, text: a.text, members, x0, y0, x1, y1 });
      if (x1 < 0 || y1 < 0 || x0 > w || y0 > h) continue;
      ctx.beginPath();
      const rad = Math.min(8, (x1 - x0) / 2, (y1 - y0) / 2);
      if (ctx.roundRect) ctx.roundRect(x0, y0, x1 - x0, y1 - y0, rad);
      else ctx.rect(x0, y0, x1 - x0, y1 - y0);
      ctx.fillStyle = `rgba(${rgb}, 0.18)`;
      ctx.fill();
      ctx.strokeStyle = `rgba(${rgb}, 0.85)`;
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.font = "bold 11px sans-serif";
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      ctx.fillStyle = `rgb(${rgb})`;
      ctx.fillText(a.text, x0 + 2, y0 - 2);
      const tw = ctx.measureText(a.text).width;
      boxes[boxes.length - 1].title = { x0: x0 + 2, y0: y0 - 15, x1: x0 + 2 + tw, y1: y0 - 2 };
    }
    ctx.font = "11px sans-serif";
  }

  function ring(ctx, i, color, width, extra) {
    const [sx, sy] = toScreen(i);
    const r = state.model.r[i] * radiusScale() + (extra || 3);
    ctx.beginPath();
    ctx.arc(sx, sy, r, 0, 2 * Math.PI);
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.stroke();
  }

  function drawOverlay() {
    const t = performance.now();
    const c = canvas();
    const ctx = c.getContext("2d");
    const model = state.model;
    if (!model || !base) return 0;
    const dpr = window.devicePixelRatio || 1;
    const z = state.zoom;
    const b = state.baseZoom || z;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    if (b.k === z.k && b.tx === z.tx && b.ty === z.ty) {
      ctx.drawImage(base, 0, 0);
    } else {
      // Panning or zooming: move the cached drawing now, redraw it once the view settles.
      const s = z.k / b.k;
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, c.width, c.height);
      ctx.setTransform(s, 0, 0, s, dpr * (z.tx - b.tx * s), dpr * (z.ty - b.ty * s));
      ctx.drawImage(base, 0, 0);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const focus = state.hover >= 0 ? state.hover : state.selected;
    if (focus >= 0) {
      // Dim everything, then draw the focused node's edges and neighbours on top.
      ctx.fillStyle = "rgba(255,255,255,0.6)";
      ctx.fillRect(0, 0, c.width / dpr, c.height / dpr);
      const edges = [];
      for (let k = model.inStart[focus]; k < model.inStart[focus + 1]; k++) edges.push(model.inList[k]);
      for (let k = model.outStart[focus]; k < model.outStart[focus + 1]; k++) {
        edges.push(model.outList[k]);
      }
      const inv = 1 / model.maxAbs;
      const rs = radiusScale();
      for (const e of edges) {
        const [x0, y0] = toScreen(model.src[e]);
        const [x1, y1] = toScreen(model.dst[e]);
        ctx.beginPath();
        ctx.moveTo(x0, y0);
        ctx.lineTo(x1, y1);
        ctx.strokeStyle = (model.w[e] < 0 ? COLORS.neg : COLORS.pos).replace("ALPHA", "0.9");
        ctx.lineWidth = 0.8 + 4 * Math.sqrt(Math.abs(model.w[e]) * inv);
        ctx.stroke();
      }
      for (const e of edges) {
        for (const i of [model.src[e], model.dst[e]]) {
          const [sx, sy] = toScreen(i);
          ctx.beginPath();
          nodePath(ctx, model.kind[i], sx, sy, model.r[i] * rs);
          ctx.fillStyle = COLORS[model.kind[i]];
          ctx.fill();
        }
      }
      const [sx, sy] = toScreen(focus);
      ctx.beginPath();
      nodePath(ctx, model.kind[focus], sx, sy, model.r[focus] * rs);
      ctx.fillStyle = COLORS[model.kind[focus]];
      ctx.fill();
    }
    for (const i of state.matches) ring(ctx, i, COLORS.match, 2.5, 4);
    for (const id of state.pinned) {
      const i = model.index.get(id);
      if (i !== undefined) ring(ctx, i, COLORS.pinned, 2, 2);
    }
    if (state.selected >= 0) ring(ctx, state.selected, COLORS.selected, 2, 5);
    if (state.hover >= 0 && state.hover !== state.selected) ring(ctx, state.hover, "#555", 1, 4);
    timings.overlayMs = performance.now() - t;
    return timings.overlayMs;
  }

  function nodeAt(clientX, clientY) {
    if (!state.model || !state.grid) return -1;
    const rect = canvas().getBoundingClientRect();
    const z = state.zoom;
    const wx = (clientX - rect.left - z.tx) / z.k;
    const wy = (clientY - rect.top - z.ty) / z.k;
    return state.grid.near(wx, wy, 3 / z.k, 1 / Math.sqrt(z.k));
  }

  function nodeClientPos(id) {
    if (!state.model || !state.model.index.has(id)) return null;
    const rect = canvas().getBoundingClientRect();
    const [sx, sy] = toScreen(state.model.index.get(id));
    return { x: rect.left + sx, y: rect.top + sy };
  }

  // A feature's card is fetched for the tooltip only after the pointer rests on it this long.
  const TIP_CARD_DELAY_MS = 120;
  let tipTimer = 0;

  function fillTooltip(i) {
    const tip = $("tooltip");
    const node = state.model.nodes[i];
    const key = featureKey(i);
    const own = state.labels.get(node.node_id);
    const f = key ? state.featureLabels.get(key) : null;
    const label = own || (f && f.label) || node.clerp || "";
    const source = own ? "annotation" : f && f.label ? f.label_source : "";
    tip.replaceChildren(el("div", { class: "tip-id", text: `${node.node_id} (${state.model.kind[i]})` }));
    if (label) {
      tip.append(
        el(
          "div",
          { class: "tip-label" },
          el("span", { text: label }),
          source ? el("span", { class: "tip-src", text: ` [${source}]` }) : null
        )
      );
    }
    const entry = key ? state.cards.get(key) : null;
    if (entry && entry.state === "ok") {
      const top = (entry.card.top_logits || []).slice(0, 3);
      if (top.length) {
        tip.append(
          el(
            "div",
            { class: "tip-logits" },
            "\u2191 ",
            ...top.map(([t, v]) => el("span", { class: "tip-chip", text: `${showToken(t)} ${fmt(v, 2)}` }))
          )
        );
      }
    }
    // Beside the node, kept inside the canvas: flipped left / up near the right / bottom edges.
    const [sx, sy] = toScreen(i);
    const wrap = $("canvas-wrap");
    const left = sx + 12 + tip.offsetWidth > wrap.clientWidth ? sx - 12 - tip.offsetWidth : sx + 12;
    const top = sy + 12 + tip.offsetHeight > wrap.clientHeight ? sy - 12 - tip.offsetHeight : sy + 12;
    tip.style.left = `${Math.max(0, left)}px`;
    tip.style.top = `${Math.max(0, top)}px`;
  }

  function setHover(i) {
    if (i === state.hover) return;
    state.hover = i;
    const tip = $("tooltip");
    clearTimeout(tipTimer);
    if (i < 0) {
      tip.hidden = true;
    } else {
      tip.hidden = false;
      fillTooltip(i);
      if (featureKey(i) && state.featureSource && !state.cards.has(featureKey(i))) {
        tipTimer = setTimeout(() => {
          if (state.hover !== i) return;
          cardOf(i, () => state.hover === i && fillTooltip(i));
        }, TIP_CARD_DELAY_MS);
      }
    }
    scheduleDraw(false);
  }

  function installCanvasEvents() {
    const c = canvas();
    let drag = null;
    c.addEventListener("mousemove", (ev) => {
      if (drag) {
        const dx = ev.clientX - drag.x;
        const dy = ev.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        if (drag.moved) {
          state.zoom.tx = drag.tx + dx;
          state.zoom.ty = drag.ty + dy;
          scheduleDraw(false);
          settle();
        }
        return;
      }
      setHover(nodeAt(ev.clientX, ev.clientY));
    });
    c.addEventListener("mouseleave", () => setHover(-1));
    c.addEventListener("mousedown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, tx: state.zoom.tx, ty: state.zoom.ty, moved: false };
    });
    window.addEventListener("mouseup", (ev) => {
      const d = drag;
      drag = null;
      if (!d || d.moved || ev.target !== c) return;
      const i = nodeAt(ev.clientX, ev.clientY);
      if (ev.ctrlKey || ev.metaKey) {
        if (i >= 0) togglePin(state.model.nodes[i].node_id);
        return;
      }
      select(i);
    });
    c.addEventListener(
      "wheel",
      (ev) => {
        if (!state.model) return;
        ev.preventDefault();
        const rect = c.getBoundingClientRect();
        const mx = ev.clientX - rect.left;
        const my = ev.clientY - rect.top;
        const z = state.zoom;
        const k = Math.min(40, Math.max(0.5, z.k * Math.exp(-ev.deltaY * 0.0015)));
        z.tx = mx - ((mx - z.tx) * k) / z.k;
        z.ty = my - ((my - z.ty) * k) / z.k;
        z.k = k;
        scheduleDraw(false);
        settle();
      },
      { passive: false }
    );
    new ResizeObserver(() => state.view === "graph" && resizeCanvas()).observe($("canvas-wrap"));
  }

  // ---------------------------------------------------------------- panel
  function select(i) {
    state.selected = i;
    updatePanel();
    scheduleDraw(false);
    syncUrl();
  }

  function kindName(kind) {
    return { feature: "feature", error: "error (MLP reconstruction)", token: "token", logit: "logit" }[
      kind
    ];
  }

  function edgeRows(tbody, edges) {
    const model = state.model;
    tbody.replaceChildren();
    for (const e of edges) {
      const other = model.nodes[e.other];
      const label = state.labels.get(other.node_id) || other.clerp || "";
      const tr = el(
        "tr",
        { "data-testid": "edge-row", "data-node-id": other.node_id, "data-weight": String(e.weight) },
        el(
          "td",
          { class: "link", title: label },
          el("span", { class: `kind-dot ${model.kind[e.other]}` }),
          `${other.node_id}${label ? " \u2014 " + label : ""}`
        ),
        el("td", { class: `num ${e.weight < 0 ? "neg" : "pos"}`, text: fmt(e.weight, 4) })
      );
      tr.addEventListener("click", () => select(e.other));
      tbody.append(tr);
    }
    if (!edges.length) tbody.append(el("tr", {}, el("td", { colspan: "2", text: "none" })));
  }

  /** Rank and share of node i's influence: the server's (lake graphs: among every node of the
   * unpruned graph but the logits), else ranked among this document's nodes by their
   * cumulative share (graph files, which hold the pruned nodes only). */
  function influenceOf(i) {
    const model = state.model;
    const node = model.nodes[i];
    if (typeof node.influence_rank === "number" && typeof node.influence_share === "number") {
      const of = (state.doc.metadata || {}).influence_ranked_nodes;
      return { rank: node.influence_rank, of, share: node.influence_share, scope: "graph", cumulative: node.influence };
    }
    if (typeof node.influence !== "number" || !isFinite(node.influence)) return null;
    if (!model.influenceOrder) {
      // Once per document: indices of the nodes with a cumulative share, smallest first.
      const ranked = [];
      for (let k = 0; k < model.n; k++) {
        const c = model.nodes[k].influence;
        if (typeof c === "number" && isFinite(c)) ranked.push(k);
      }
      ranked.sort((a, b) => model.nodes[a].influence - model.nodes[b].influence || a - b);
      model.influenceOrder = new Map(ranked.map((k, r) => [k, r + 1]));
    }
    return { rank: model.influenceOrder.get(i), of: model.influenceOrder.size, share: null, scope: "file", cumulative: node.influence };
  }

  function showInfluence(i) {
    const box = $("panel-influence");
    const inf = influenceOf(i);
    for (const k of ["rank", "of", "share", "cumulative"]) delete box.dataset[k];
    if (!inf) {
      box.textContent = state.model.kind[i] === "logit" ? "\u2014 (an output: influence flows into it)" : "\u2014";
      box.title = "";
      return;
    }
    const of = typeof inf.of === "number" ? inf.of.toLocaleString("en-US") : "?";
    box.dataset.rank = String(inf.rank);
    box.dataset.of = String(inf.of);
    box.dataset.cumulative = String(inf.cumulative);
    if (inf.scope === "graph") {
      box.dataset.share = String(inf.share);
      box.textContent = `rank ${inf.rank} of ${of} \u00b7 ${pct(inf.share)} of total`;
      box.title =
        `Rank by influence on the output among the ${of} nodes of the unpruned graph ` +
        "(features, errors, tokens); share: this node's influence over their total. " +
        `The nodes ranked 1 to ${inf.rank} hold ${pct(inf.cumulative)} of it (pruning keeps ` +
        "the most influential nodes up to the node threshold's share).";
    } else {
      box.textContent = `rank ${inf.rank} of ${of} in this file \u00b7 ranks 1\u2013${inf.rank} hold ${pct(inf.cumulative)} of total`;
      box.title =
        "A graph file holds its pruned nodes only, with their cumulative influence share: " +
        "the rank is among the file's nodes, and one node's own share is not known.";
    }
  }

  function updatePanel() {
    const i = state.selected;
    const model = state.model;
    $("panel-empty").hidden = i >= 0;
    $("panel-body").hidden = i < 0;
    if (i < 0 || !model) {
      $("feature-card").hidden = true;
      return;
    }
    const node = model.nodes[i];
    const kind = model.kind[i];
    $("panel-node-id").textContent = node.node_id;
    $("panel-kind").textContent = kindName(kind);
    $("panel-kind").dataset.kind = kind;
    $("panel-layer").textContent = node.layer;
    $("panel-pos").textContent = String(node.ctx_idx);
    const token = kind === "logit" ? CT.logitToken(node) : model.tokens[node.ctx_idx];
    $("panel-token").textContent = token === null || token === undefined ? "" : `"${showToken(token)}"`;
    const fi = CT.featureIndex(node);
    $("panel-feature").textContent =
      kind === "feature" ? `#${fi} (id ${node.feature})` : kind === "logit" ? `vocab ${node.feature}` : "";
    const act = $("panel-activation");
    act.textContent = node.activation === null || node.activation === undefined ? "" : fmt(node.activation, 4);
    act.dataset.value = node.activation === null || node.activation === undefined ? "" : String(node.activation);
    showInfluence(i);
    $("panel-clerp").textContent = node.clerp || "";
    $("panel-label").textContent = state.labels.get(node.node_id) || "";
    $("remove-label").hidden = !canAnnotate() || !state.labels.has(node.node_id);
    $("label-input").value = state.labels.get(node.node_id) || "";
    $("pin-toggle").textContent = state.pinned.includes(node.node_id) ? "Unpin" : "Pin";
    edgeRows($("panel-incoming").tBodies[0], CT.topEdges(model, i, "in", 10));
    edgeRows($("panel-outgoing").tBodies[0], CT.topEdges(model, i, "out", 10));
    updateCard();
  }

  // ---------------------------------------------------------------- pinning, subgraph
  function togglePin(id) {
    const k = state.pinned.indexOf(id);
    if (k >= 0) state.pinned.splice(k, 1);
    else state.pinned.push(id);
    updatePinned();
    updatePanel();
    scheduleDraw(false);
    syncUrl();
  }

  function updatePinned() {
    const list = $("pinned-list");
    list.replaceChildren();
    const model = state.model;
    for (const id of state.pinned) {
      const i = model ? model.index.get(id) : undefined;
      const kind = i === undefined ? "gone" : model.kind[i];
      const label = state.labels.get(id) || (i !== undefined ? model.nodes[i].clerp : "") || "";
      const li = el(
        "li",
        { "data-testid": "pinned-item", "data-node-id": id },
        el("span", { class: `kind-dot ${kind}` }),
        el("span", { class: "link", text: `${id}${label ? " \u2014 " + label : ""}` }),
        el("button", { type: "button", class: "x", title: "unpin", text: "\u00d7" })
      );
      li.querySelector(".link").addEventListener("click", () => i !== undefined && select(i));
      li.querySelector("button").addEventListener("click", () => togglePin(id));
      list.append(li);
    }
    drawSubgraph();
    updateSteerTable();
  }

  function drawSubgraph() {
    const c = $("subgraph-canvas");
    const ctx = c.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, c.width, c.height);
    const model = state.model;
    if (!model) return;
    const idx = state.pinned.map((id) => model.index.get(id)).filter((i) => i !== undefined);
    if (!idx.length) {
      ctx.fillStyle = "#999";
      ctx.font = "12px sans-serif";
      ctx.fillText("Ctrl/Cmd-click nodes to pin them", 10, 20);
      return;
    }
    // Positions: layer rows and token columns of the pinned nodes only.
    const rows = [...new Set(idx.map((i) => model.row[i]))].sort((a, b) => a - b);
    const cols = [...new Set(idx.map((i) => model.pos[i]))].sort((a, b) => a - b);
    const pos = new Map();
    const cells = new Map();
    for (const i of idx) {
      const key = `${model.pos[i]}:${model.row[i]}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(i);
    }
    const colW = c.width / cols.length;
    for (const members of cells.values()) {
      members.forEach((i, k) => {
        const x0 = cols.indexOf(model.pos[i]) * colW;
        const cx = x0 + ((k + 0.5) / members.length) * colW;
        const cy =
          c.height - ((rows.indexOf(model.row[i]) + 0.5) / rows.length) * (c.height - 16) - 8 + (k % 2) * 10;
        pos.set(i, [cx, cy]);
      });
    }
    const set = new Set(idx);
    for (const i of idx) {
      for (let k = model.outStart[i]; k < model.outStart[i + 1]; k++) {
        const e = model.outList[k];
        const t = model.dst[e];
        if (!set.has(t)) continue;
        const [x0, y0] = pos.get(i);
        const [x1, y1] = pos.get(t);
        ctx.beginPath();
        ctx.moveTo(x0, y0);
        ctx.lineTo(x1, y1);
        ctx.strokeStyle = (model.w[e] < 0 ? COLORS.neg : COLORS.pos).replace("ALPHA", "0.8");
        ctx.lineWidth = 0.8 + 3 * Math.sqrt(Math.abs(model.w[e]) / model.maxAbs);
        ctx.stroke();
      }
    }
    ctx.font = "10px sans-serif";
    for (const i of idx) {
      const [x, y] = pos.get(i);
      ctx.beginPath();
      nodePath(ctx, model.kind[i], x, y, 5);
      ctx.fillStyle = COLORS[model.kind[i]];
      ctx.fill();
      ctx.fillStyle = "#222";
      const label = state.labels.get(model.nodes[i].node_id) || model.nodes[i].node_id;
      ctx.fillText(label.slice(0, 18), x + 7, y - 4);
    }
  }

  // ---------------------------------------------------------------- annotations
  async function postAnnotation(kind, nodeIds, text) {
    if (!canAnnotate()) throw new Error("annotations are disabled for imported graphs");
    const who = author();
    if (!who) throw new Error("enter your name in the author field first");
    localStorage.setItem(AUTHOR_KEY, who);
    const a = await api(`/api/graphs/${encodeURIComponent(state.graphId)}/annotations`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ author: who, kind, node_ids: nodeIds, text }),
    });
    state.annotations.push(a);
    rebuildLabels();
    return a;
  }

  async function saveLabel() {
    if (state.selected < 0) return;
    const id = state.model.nodes[state.selected].node_id;
    const text = $("label-input").value.trim();
    if (!text) return setStatus("the label is empty", true);
    try {
      await postAnnotation("label", [id], text);
      setStatus(`label saved for ${id}`);
      refreshFeatureLabel(state.model.index.get(id));
    } catch (err) {
      setStatus(`could not save the label: ${err.message}`, true);
    }
  }

  async function removeLabel() {
    if (state.selected < 0 || !canAnnotate()) return;
    const id = state.model.nodes[state.selected].node_id;
    const labels = state.annotations.filter(
      (a) => a.kind === "label" && a.node_ids.length === 1 && a.node_ids[0] === id
    );
    try {
      for (const a of labels) {
        await api(`/api/graphs/${encodeURIComponent(state.graphId)}/annotations/${a.id}`, {
          method: "DELETE",
        });
        state.annotations = state.annotations.filter((x) => x.id !== a.id);
      }
      rebuildLabels();
      await loadAnnotations();
      setStatus(`label removed from ${id}`);
      refreshFeatureLabel(state.model.index.get(id));
    } catch (err) {
      setStatus(`could not remove the label: ${err.message}`, true);
    }
  }

  async function createSupernode() {
    const name = $("supernode-name").value.trim();
    if (!name) return setStatus("name the supernode first", true);
    if (!state.pinned.length) return setStatus("pin the nodes to group first", true);
    try {
      await postAnnotation("supernode", state.pinned.slice(), name);
      $("supernode-name").value = "";
      setStatus(`supernode "${name}" saved`);
    } catch (err) {
      setStatus(`could not save the supernode: ${err.message}`, true);
    }
  }

  async function deleteAnnotation(a) {
    if (a.local) {
      state.annotations = state.annotations.filter((x) => x !== a);
      rebuildLabels();
      return;
    }
    try {
      await api(`/api/graphs/${encodeURIComponent(state.graphId)}/annotations/${a.id}`, {
        method: "DELETE",
      });
      state.annotations = state.annotations.filter((x) => x.id !== a.id);
      rebuildLabels();
    } catch (err) {
      setStatus(`could not delete: ${err.message}`, true);
    }
  }

  /** Save a supernode that came with a link in the lake (it then replaces the link's copy). */
  async function saveLinkSupernode(a) {
    try {
      state.annotations = state.annotations.filter((x) => x !== a);
      await postAnnotation("supernode", a.node_ids.slice(), a.text);
      setStatus(`supernode "${a.text}" saved`);
    } catch (err) {
      state.annotations.push(a);
      rebuildLabels();
      setStatus(`could not save the supernode: ${err.message}`, true);
    }
  }

  function updateSupernodes() {
    const list = $("supernode-list");
    list.replaceChildren();
    for (const a of state.annotations) {
      if (a.kind !== "supernode") continue;
      const li = el(
        "li",
        { "data-testid": "supernode-item", "data-annotation-id": a.id },
        el("span", { class: "sn-name link", text: a.text }),
        el("span", { class: "sn-members", text: ` (${a.node_ids.join(", ")})` }),
        a.author ? el("span", { class: "sn-author", text: ` by ${a.author}` }) : null,
        a.local
          ? el("span", {
              class: "sn-local",
              "data-testid": "supernode-local",
              title: "from the link, not saved in the lake",
              text: " link only",
            })
          : null
      );
      li.querySelector(".sn-name").addEventListener("click", () => {
        state.pinned = a.node_ids.filter((id) => state.model && state.model.index.has(id));
        updatePinned();
        updatePanel();
        scheduleDraw(false);
        syncUrl();
      });
      if (a.local && canAnnotate()) {
        const save = el("button", { type: "button", class: "sn-save", title: "save it in the lake (as the author)", text: "save" });
        save.addEventListener("click", () => saveLinkSupernode(a));
        li.append(save);
      }
      if (canAnnotate() || a.local) {
        const del = el("button", { type: "button", class: "x sn-delete", title: "delete", text: "\u00d7" });
        del.addEventListener("click", () => deleteAnnotation(a));
        li.append(del);
      }
      list.append(li);
    }
    if (!list.children.length) list.append(el("li", { class: "hint", text: "none yet" }));
  }

  // ---------------------------------------------------------------- search
  function applySearch(keepSelection) {
    const q = $("search").value.trim().toLowerCase();
    const model = state.model;
    state.matches = [];
    state.matchCursor = 0;
    if (q && model) {
      const asInt = /^-?\d+$/.test(q) ? Number(q) : null;
      for (let i = 0; i < model.n; i++) {
        const node = model.nodes[i];
        const label = (model.kind[i] === "feature" || state.labels.has(node.node_id) ? nodeLabel(i) : "").toLowerCase();
        const hit =
          node.node_id.toLowerCase().includes(q) ||
          (label && label.includes(q)) ||
          (node.clerp && node.clerp.toLowerCase().includes(q)) ||
          (asInt !== null && model.kind[i] === "feature" && (CT.featureIndex(node) === asInt || node.feature === asInt));
        if (hit) state.matches.push(i);
      }
      // Exact id first, then labels.
      state.matches.sort((a, b) => (model.nodes[b].node_id.toLowerCase() === q) - (model.nodes[a].node_id.toLowerCase() === q));
      if (state.matches.length && !keepSelection) select(state.matches[0]);
    }
    $("search-count").textContent = q ? `${state.matches.length} match(es)` : "";
    $("search-count").dataset.count = String(state.matches.length);
    scheduleDraw(false);
  }

  function nextMatch() {
    if (!state.matches.length) return;
    state.matchCursor = (state.matchCursor + 1) % state.matches.length;
    select(state.matches[state.matchCursor]);
  }

  // ---------------------------------------------------------------- thresholds
  function syncThresholdInputs() {
    $("node-threshold").value = String(state.nodeThreshold);
    $("edge-threshold").value = String(state.edgeThreshold);
    $("node-threshold-value").textContent = Number(state.nodeThreshold).toFixed(2);
    $("edge-threshold-value").textContent = Number(state.edgeThreshold).toFixed(2);
  }

  const refetch = debounce(() => {
    if (state.source !== "server" || !state.graphId) return;
    openGraph(state.graphId); // the URL follows once the graph is loaded
  }, 250);

  function onThreshold() {
    state.nodeThreshold = Number($("node-threshold").value);
    state.edgeThreshold = Number($("edge-threshold").value);
    syncThresholdInputs();
    if (state.source === "imported") {
      setStatus("thresholds apply to server graphs only (an imported graph is shown as is)");
      return;
    }
    refetch();
  }

  // ---------------------------------------------------------------- steering
  // A new row scales the feature's activation by this much (its input shows it; the request
  // carries exactly what the input shows).
  const DEFAULT_SCALE = "2";

  /** What a steer row applies: "1.234 → 2.468" from the graph's activation of the node. */
  function steerReadout(id, s) {
    const model = state.model;
    const i = model ? model.index.get(id) : undefined;
    const act = i === undefined ? null : model.nodes[i].activation;
    const amount = s.amount.trim() === "" ? NaN : Number(s.amount);
    if (!isFinite(amount)) return { text: "not a number", title: "", value: null };
    if (typeof act !== "number") {
      return { text: s.mode === "value" ? `= ${fmt(amount, 3)}` : `\u00d7${fmt(amount, 3)}`, title: "", value: null };
    }
    const value = s.mode === "value" ? amount : amount * act;
    return {
      text: `${fmt(act, 3)} \u2192 ${fmt(value, 3)}`,
      title:
        s.mode === "value"
          ? `sets the activation (${fmt(act, 4)} in the graph) to ${fmt(amount, 4)}`
          : `scales the activation (${fmt(act, 4)} in the graph) by ${fmt(amount, 4)}`,
      value,
    };
  }

  function updateSteerTable() {
    const body = $("steer-table").tBodies[0];
    body.replaceChildren();
    const model = state.model;
    const feats = state.pinned.filter((id) => model && model.kind[model.index.get(id)] === "feature");
    for (const id of feats) {
      const s = state.steerSettings.get(id) || { mode: "multiplier", amount: DEFAULT_SCALE };
      state.steerSettings.set(id, s);
      const mode = el(
        "select",
        { class: "steer-mode", "aria-label": `how to steer ${id}`, title: "scale the activation, or set it" },
        el("option", { value: "multiplier", text: "scale \u00d7" }),
        el("option", { value: "value", text: "set to =" })
      );
      mode.value = s.mode;
      const amount = el("input", {
        class: "steer-amount",
        type: "number",
        step: "0.1",
        value: s.amount,
        "aria-label": `amount for ${id}`,
      });
      const readout = el("span", { class: "steer-readout", "data-testid": "steer-readout" });
      const show = () => {
        const r = steerReadout(id, s);
        readout.textContent = r.text;
        readout.title = r.title;
        readout.dataset.value = r.value === null ? "" : String(r.value);
        readout.classList.toggle("error", r.text === "not a number");
      };
      mode.addEventListener("change", () => {
        s.mode = mode.value;
        show();
      });
      amount.addEventListener("input", () => {
        s.amount = amount.value;
        show();
      });
      show();
      const label = state.labels.get(id);
      body.append(
        el(
          "tr",
          { "data-testid": "steer-input-row", "data-node-id": id },
          el("td", { class: "steer-node", title: label ? `${id} \u2014 ${label}` : id, text: label ? `${id} ${label}` : id }),
          el("td", { class: "steer-control" }, mode, amount),
          el("td", { class: "num" }, readout)
        )
      );
    }
    if (!feats.length) {
      body.append(el("tr", {}, el("td", { colspan: "3", class: "hint", text: "pin feature nodes" })));
    }
    $("steer-run").disabled = !feats.length || !canAnnotate();
  }

  async function runSteer() {
    const errBox = $("steer-error");
    errBox.textContent = "";
    if (!canAnnotate()) {
      errBox.textContent = "steering is disabled for imported graphs";
      return;
    }
    const interventions = [];
    for (const tr of $("steer-table").tBodies[0].querySelectorAll("tr[data-node-id]")) {
      const mode = tr.querySelector(".steer-mode").value;
      const shown = tr.querySelector(".steer-amount").value.trim();
      const amount = shown === "" ? NaN : Number(shown);
      if (!isFinite(amount)) {
        errBox.textContent = `not a number for ${tr.dataset.nodeId}`;
        return;
      }
      interventions.push({ node_id: tr.dataset.nodeId, [mode]: amount });
    }
    const btn = $("steer-run");
    btn.disabled = true;
    document.body.dataset.steer = "running";
    try {
      const res = await api(`/api/graphs/${encodeURIComponent(state.graphId)}/steer`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          interventions,
          freeze_attention: $("freeze-attention").checked,
          top: 10,
        }),
      });
      const applied = $("steer-applied");
      applied.replaceChildren();
      for (const x of res.interventions) {
        const asked = interventions.find((y) => y.node_id === x.node_id) || {};
        const how = "multiplier" in asked ? `\u00d7${fmt(asked.multiplier, 3)}` : `= ${fmt(asked.value, 3)}`;
        applied.append(
          el("li", {
            "data-testid": "steer-applied-item",
            "data-node-id": x.node_id,
            "data-clean": String(x.clean),
            "data-value": String(x.value),
            text: `${x.node_id} ${how}: ${fmt(x.clean, 3)} \u2192 ${fmt(x.value, 3)}`,
          })
        );
      }
      const body = $("steer-results").tBodies[0];
      body.replaceChildren();
      for (const ch of res.changes) {
        const d = ch.prob_after - ch.prob_before;
        body.append(
          el(
            "tr",
            { "data-testid": "steer-row", "data-token": ch.token },
            el("td", { text: `"${showToken(ch.token)}"` }),
            el("td", { class: "num p-before", "data-value": String(ch.prob_before), text: fmt(ch.prob_before, 4) }),
            el("td", { class: "num p-after", "data-value": String(ch.prob_after), text: fmt(ch.prob_after, 4) }),
            el("td", {
              class: `num p-delta ${d < 0 ? "neg" : "pos"}`,
              "data-value": String(d),
              text: (d >= 0 ? "+" : "") + fmt(d, 4),
            })
          )
        );
      }
      document.body.dataset.steer = "done";
      setStatus(`steered ${interventions.length} feature(s)`);
    } catch (err) {
      document.body.dataset.steer = "error";
      errBox.textContent = err.message;
    } finally {
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- sharing
  async function copyLink() {
    syncUrl();
    const link = location.href;
    let copied = false;
    try {
      await navigator.clipboard.writeText(link);
      copied = true;
    } catch (_) {
      // No clipboard permission (or not a secure context): the older way.
      const box = el("textarea", { readonly: "", class: "offscreen" });
      box.value = link;
      document.body.append(box);
      box.select();
      try {
        copied = document.execCommand("copy");
      } catch (_e) {
        copied = false;
      }
      box.remove();
    }
    if (copied) setStatus(`link copied: ${link}`);
    else setStatus(`copy this link from the address bar: ${link}`, "warn");
  }

  // ---------------------------------------------------------------- export / import
  function exportDocument() {
    if (!state.doc) return;
    const doc = JSON.parse(JSON.stringify(state.doc));
    doc.qParams = Object.assign({}, doc.qParams, {
      pinnedIds: state.pinned.slice(),
      supernodes: state.annotations.filter((a) => a.kind === "supernode").map((a) => [a.text, ...a.node_ids]),
      clickedId: state.selected >= 0 ? state.model.nodes[state.selected].node_id : "",
    });
    doc.nodes.forEach((node, i) => {
      // A person's label, else the feature dashboards' (circuit-tracer shows clerp as the label).
      const label = nodeLabel(i); // doc.nodes is a copy of state.model.nodes, in its order
      if (label && !node.clerp) node.clerp = label;
    });
    const blob = new Blob([JSON.stringify(doc)], { type: "application/json" });
    const a = el("a", {
      href: URL.createObjectURL(blob),
      download: `${(doc.metadata && doc.metadata.slug) || state.graphId || "graph"}.json`,
    });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 5000);
  }

  function importFile(file) {
    const reader = new FileReader();
    reader.onload = () => {
      try {
        const t0 = performance.now();
        const doc = JSON.parse(reader.result);
        timings.parseMs = performance.now() - t0;
        timings.fetchMs = 0;
        loadToken++;
        loadDocument(doc, { source: "imported", id: null });
        timings.totalMs = performance.now() - t0;
        history.pushState(null, "", "#/imported");
      } catch (err) {
        document.body.dataset.state = "error";
        setStatus(`could not import ${file.name}: ${err.message}`, true);
      }
    };
    reader.onerror = () => setStatus(`could not read ${file.name}`, true);
    reader.readAsText(file);
  }

  // ---------------------------------------------------------------- wiring
  function init() {
    $("author").value = localStorage.getItem(AUTHOR_KEY) || "";
    $("author").addEventListener("change", () => localStorage.setItem(AUTHOR_KEY, author()));
    for (const th of $("graph-table").tHead.rows[0].cells) {
      th.querySelector("button.sort").addEventListener("click", () => sortIndexBy(th.dataset.key));
    }
    $("filter-model").addEventListener("change", () => refreshIndex().catch((e) => setStatus(e.message, true)));
    $("filter-q").addEventListener(
      "input",
      debounce(() => refreshIndex().catch((e) => setStatus(e.message, true)), 200)
    );
    $("node-threshold").addEventListener("input", onThreshold);
    $("edge-threshold").addEventListener("input", onThreshold);
    $("search").addEventListener("input", debounce(() => applySearch(), 150));
    $("search").addEventListener("keydown", (ev) => ev.key === "Enter" && nextMatch());
    $("label-save").addEventListener("click", saveLabel);
    $("label-input").addEventListener("keydown", (ev) => ev.key === "Enter" && saveLabel());
    $("pin-toggle").addEventListener("click", () => {
      if (state.selected >= 0) togglePin(state.model.nodes[state.selected].node_id);
    });
    $("unpin-all").addEventListener("click", () => {
      state.pinned = [];
      updatePinned();
      updatePanel();
      scheduleDraw(false);
      syncUrl();
    });
    $("supernode-create").addEventListener("click", createSupernode);
    $("remove-label").addEventListener("click", removeLabel);
    $("show-supernodes").addEventListener("change", () => {
      state.showSupernodes = $("show-supernodes").checked;
      scheduleDraw(true);
    });
    $("steer-run").addEventListener("click", runSteer);
    $("copy-link").addEventListener("click", copyLink);
    $("export-btn").addEventListener("click", exportDocument);
    $("import-file").addEventListener("change", (ev) => {
      const f = ev.target.files && ev.target.files[0];
      if (f) importFile(f);
      ev.target.value = "";
    });
    $("reset-view").addEventListener("click", () => {
      state.zoom = { k: 1, tx: 0, ty: 0 };
      scheduleDraw(true);
    });
    installCanvasEvents();
    window.addEventListener("hashchange", route);
    syncThresholdInputs();
    route();
  }

  window.ctViewer = {
    state,
    timings,
    nodeClientPos,
    loadDocument,
    hover(id) {
      const t = performance.now();
      state.hover = id === null || id === undefined ? -1 : state.model.index.get(id);
      drawOverlay();
      flush();
      return performance.now() - t;
    },
    redraw() {
      return drawAll(true);
    },
    nodeLabels() {
      const rect = canvas().getBoundingClientRect();
      return state.drawnLabels.map((b) => ({
        ...b,
        x0: b.x0 + rect.left,
        y0: b.y0 + rect.top,
        x1: b.x1 + rect.left,
        y1: b.y1 + rect.top,
      }));
    },
    supernodeBoxes() {
      const rect = canvas().getBoundingClientRect();
      return state.supernodeBoxes.map(({ title, ...b }) => ({
        ...b,
        x0: b.x0 + rect.left,
        y0: b.y0 + rect.top,
        x1: b.x1 + rect.left,
        y1: b.y1 + rect.top,
      }));
    },
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
