/* ct viewer: the graph model, its layout and a spatial grid for hit-testing (no DOM here).
 *
 * CT.buildModel(doc)          -> model: nodes with kind/row, links by index, CSR adjacency
 * CT.layoutModel(model, w, h) -> sets model.x/.y/.r (layout units = CSS pixels at zoom 1)
 * new CT.Grid(model, cell)    -> .near(x, y, radius) -> index of the nearest node or -1
 */
"use strict";

(function (root) {
  const CT = root.CT || (root.CT = {});

  const KIND_BY_TYPE = {
    "cross layer transcoder": "feature",
    "mlp reconstruction error": "error",
    embedding: "token",
    logit: "logit",
  };

  function kindOf(node) {
    const k = KIND_BY_TYPE[node.feature_type];
    if (k) return k;
    if (node.layer === "E") return "token";
    if (node.feature === -1 || /_-1_\d+$/.test(node.node_id)) return "error";
    return "feature";
  }

  /** The feature index inside its layer, from a `{layer}_{feature}_{pos}` node id. */
  function featureIndex(node) {
    const parts = String(node.node_id).split("_");
    return parts.length === 3 ? Number(parts[1]) : NaN;
  }

  /** `Output "tok" (p=0.123)` -> `tok`; else null. */
  function logitToken(node) {
    const m = /^Output "(.*)" \(p=/.exec(node.clerp || "");
    return m ? m[1] : null;
  }

  function buildModel(doc) {
    if (!doc || !Array.isArray(doc.nodes) || !Array.isArray(doc.links)) {
      throw new Error("not a graph document: it needs 'nodes' and 'links' arrays");
    }
    const nodes = doc.nodes;
    const n = nodes.length;
    const index = new Map();
    const kind = new Array(n);
    const row = new Int32Array(n);
    const pos = new Int32Array(n);
    let maxRow = 0;
    let maxPos = 0;
    let maxLayer = -1;
    for (let i = 0; i < n; i++) {
      const node = nodes[i];
      if (typeof node.node_id !== "string") throw new Error(`node ${i} has no node_id`);
      index.set(node.node_id, i);
      kind[i] = kindOf(node);
      const layer = String(node.layer);
      // Rows: embeddings 0, layer l at l + 1; logits (layer L + 1) right above layer L - 1.
      const li = parseInt(layer, 10) || 0;
      const r = layer === "E" ? 0 : kind[i] === "logit" ? Math.max(1, li) : li + 1;
      row[i] = r;
      if (kind[i] !== "logit" && layer !== "E") maxLayer = Math.max(maxLayer, r - 1);
      maxRow = Math.max(maxRow, r);
      const p = Number.isInteger(node.ctx_idx) ? node.ctx_idx : 0;
      pos[i] = p;
      maxPos = Math.max(maxPos, p);
    }
    const tokens = (doc.metadata && doc.metadata.prompt_tokens) || [];
    const nPos = Math.max(maxPos + 1, tokens.length, 1);

    const links = doc.links;
    const m = links.length;
    const src = new Int32Array(m);
    const dst = new Int32Array(m);
    const w = new Float32Array(m);
    const inDeg = new Int32Array(n + 1);
    const outDeg = new Int32Array(n + 1);
    let kept = 0;
    let maxAbs = 0;
    for (let e = 0; e < m; e++) {
      const l = links[e];
      const s = index.get(l.source);
      const t = index.get(l.target);
      if (s === undefined || t === undefined) continue; // a link to a node not in the document
      src[kept] = s;
      dst[kept] = t;
      w[kept] = +l.weight || 0;
      maxAbs = Math.max(maxAbs, Math.abs(w[kept]));
      inDeg[t + 1]++;
      outDeg[s + 1]++;
      kept++;
    }
    for (let i = 0; i < n; i++) {
      inDeg[i + 1] += inDeg[i];
      outDeg[i + 1] += outDeg[i];
    }
    const inList = new Int32Array(kept);
    const outList = new Int32Array(kept);
    const inFill = inDeg.slice(0, n);
    const outFill = outDeg.slice(0, n);
    for (let e = 0; e < kept; e++) {
      inList[inFill[dst[e]]++] = e;
      outList[outFill[src[e]]++] = e;
    }
    return {
      doc,
      nodes,
      n,
      index,
      kind,
      row,
      pos,
      nRows: maxRow + 1,
      nLayers: maxLayer + 1,
      nPos,
      tokens,
      m: kept,
      src: src.subarray(0, kept),
      dst: dst.subarray(0, kept),
      w: w.subarray(0, kept),
      maxAbs: maxAbs || 1,
      inStart: inDeg,
      inList,
      outStart: outDeg,
      outList,
      x: new Float32Array(n),
      y: new Float32Array(n),
      r: new Float32Array(n),
      rMax: 1,
    };
  }

  /** Top `k` edges into (dir "in") or out of (dir "out") node i, by |weight|. */
  function topEdges(model, i, dir, k) {
    const start = dir === "in" ? model.inStart : model.outStart;
    const list = dir === "in" ? model.inList : model.outList;
    const edges = Array.from(list.subarray(start[i], start[i + 1]));
    edges.sort((a, b) => Math.abs(model.w[b]) - Math.abs(model.w[a]));
    return edges.slice(0, k).map((e) => ({
      edge: e,
      other: dir === "in" ? model.src[e] : model.dst[e],
      weight: model.w[e],
    }));
  }

  /** Size weight in [0, 1]: influence is cumulative (smallest = most influential). */
  function sizeWeight(node) {
    if (typeof node.influence === "number" && isFinite(node.influence)) {
      return Math.min(1, Math.max(0, 1 - node.influence));
    }
    if (typeof node.token_prob === "number") return Math.sqrt(Math.max(0, node.token_prob));
    return 0.5;
  }

  const MARGIN = { left: 44, right: 12, top: 34, bottom: 40 };

  function layoutModel(model, width, height) {
    const { n, row, pos, nRows, nPos } = model;
    // Nodes per (position, row) cell, most influential first.
    const cells = new Map();
    for (let i = 0; i < n; i++) {
      const key = pos[i] * nRows + row[i];
      let c = cells.get(key);
      if (!c) cells.set(key, (c = []));
      c.push(i);
    }
    const maxCount = new Float64Array(nPos).fill(1);
    for (const [key, c] of cells) {
      const p = Math.floor(key / nRows);
      maxCount[p] = Math.max(maxCount[p], c.length);
    }
    // Column widths grow with the crowding of their busiest cell.
    const weight = Array.from(maxCount, (c) => Math.pow(c, 0.6));
    const total = weight.reduce((a, b) => a + b, 0);
    const innerW = Math.max(50, width - MARGIN.left - MARGIN.right);
    const innerH = Math.max(50, height - MARGIN.top - MARGIN.bottom);
    const colX = new Float64Array(nPos + 1);
    colX[0] = MARGIN.left;
    for (let p = 0; p < nPos; p++) colX[p + 1] = colX[p] + (innerW * weight[p]) / total;
    const rowH = innerH / nRows;
    let rMax = 1;
    const sizes = model.nodes.map(sizeWeight);
    for (const [key, c] of cells) {
      const p = Math.floor(key / nRows);
      const r = key % nRows;
      c.sort((a, b) => sizes[b] - sizes[a]);
      const cw = colX[p + 1] - colX[p];
      const cellH = rowH * 0.8;
      const cols = Math.max(1, Math.min(c.length, Math.ceil(Math.sqrt((c.length * cw) / cellH))));
      const rowsIn = Math.ceil(c.length / cols);
      const dx = cw / cols;
      const dy = rowsIn > 1 ? cellH / rowsIn : 0;
      const cap = Math.max(1.5, Math.min(9, 0.45 * Math.min(dx, rowsIn > 1 ? dy : rowH * 0.5)));
      const yBase = height - MARGIN.bottom - (r + 0.5) * rowH;
      for (let k = 0; k < c.length; k++) {
        const i = c[k];
        const cx = k % cols;
        const cy = Math.floor(k / cols);
        // Spread from the centre of the cell outwards.
        model.x[i] = colX[p] + (cx + 0.5) * dx;
        model.y[i] = yBase + (rowsIn > 1 ? (cy - (rowsIn - 1) / 2) * dy : 0);
        const rad = Math.max(1.5, cap * (0.35 + 0.65 * sizes[i]));
        model.r[i] = rad;
        if (rad > rMax) rMax = rad;
      }
    }
    model.rMax = rMax;
    model.colX = colX;
    model.rowH = rowH;
    model.width = width;
    model.height = height;
    model.margin = MARGIN;
  }

  function rowY(model, r) {
    return model.height - model.margin.bottom - (r + 0.5) * model.rowH;
  }

  class Grid {
    constructor(model, cell) {
      this.model = model;
      this.cell = Math.max(4, cell || model.rMax * 2);
      this.cells = new Map();
      for (let i = 0; i < model.n; i++) {
        const key = this.key(Math.floor(model.x[i] / this.cell), Math.floor(model.y[i] / this.cell));
        let c = this.cells.get(key);
        if (!c) this.cells.set(key, (c = []));
        c.push(i);
      }
    }

    key(cx, cy) {
      return cx * 1000003 + cy;
    }

    /** The node nearest to (x, y) within its radius plus `slack` (layout units), or -1. */
    near(x, y, slack, radiusScale) {
      const m = this.model;
      const scale = radiusScale || 1;
      const reach = m.rMax * scale + slack;
      const c0x = Math.floor((x - reach) / this.cell);
      const c1x = Math.floor((x + reach) / this.cell);
      const c0y = Math.floor((y - reach) / this.cell);
      const c1y = Math.floor((y + reach) / this.cell);
      let best = -1;
      let bestD = Infinity;
      for (let cx = c0x; cx <= c1x; cx++) {
        for (let cy = c0y; cy <= c1y; cy++) {
          const c = this.cells.get(this.key(cx, cy));
          if (!c) continue;
          for (const i of c) {
            const d = Math.hypot(m.x[i] - x, m.y[i] - y);
            if (d <= m.r[i] * scale + slack && d < bestD) {
              best = i;
              bestD = d;
            }
          }
        }
      }
      return best;
    }
  }

  Object.assign(CT, {
    kindOf,
    featureIndex,
    logitToken,
    buildModel,
    topEdges,
    layoutModel,
    rowY,
    Grid,
  });
})(typeof window !== "undefined" ? window : globalThis);
