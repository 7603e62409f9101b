// finsa threat view: refreshes the server-rendered page from the same-origin JSON API.
// No framework, no network beyond /api on this origin.
"use strict";
(function () {
  const config = JSON.parse(document.body.dataset.config);
  const SEVERITIES = config.severities;
  const LEVEL_NAMES = { 1: "normal", 2: "guarded", 3: "elevated", 4: "high", 5: "severe" };
  const PALETTE = ["#4fb3ff", "#f78c6c", "#c3e88d", "#c792ea", "#ffcb6b", "#89ddff", "#ff5370", "#a6accd"];
  const INSTITUTION_COLUMNS = ["name", "subsector", "criticality", "alerts", "detectors", "score", "level"];
  let rangeMs = config.range_ms;
  let reloading = false;
  // Institution id the alert panels are narrowed to ("" = the whole sector); kept in the URL.
  // An institution's analyst sees only its own institution: no focus to choose.
  let focus = config.institution ? "" : (/focus=([a-z0-9_-]+)/.exec(location.hash) || ["", ""])[1];
  const names = {};

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function clock(ms) {
    return new Date(ms).toTimeString().slice(0, 8);
  }
  function badge(cls, text) {
    return el("span", { class: "badge " + cls }, text);
  }
  // One value as a table-cell node; mirrors finsa.dashboards.page.cell.
  function cell(column, value) {
    if ((value === null || value === undefined) && column === "level") return badge("lvl-0", "withheld");
    if (value === null || value === undefined) return document.createTextNode("");
    if (column === "level") return badge("lvl-" + value, value + " " + (LEVEL_NAMES[value] || "?"));
    if (column === "severity" || column === "max_severity") return badge("sev-" + value, SEVERITIES[value] || String(value));
    if (column.endsWith("_ms") && typeof value === "number" && value > 0) return el("time", { "data-ms": value }, clock(value));
    return document.createTextNode(String(value));
  }
  function table(columns, rows) {
    const t = el("table"), head = el("tr"), body = el("tbody");
    for (const c of columns) head.appendChild(el("th", { class: "c-" + c }, c.replace(/_ms$/, "").replace(/_/g, " ")));
    if (rows.length === 0) {
      const tr = el("tr"), td = el("td", { class: "empty", colspan: columns.length }, "nothing in this range");
      tr.appendChild(td); body.appendChild(tr);
    }
    for (const row of rows) {
      const tr = el("tr");
      columns.forEach((c, i) => { const td = el("td", { class: "c-" + c }); td.appendChild(cell(c, row[i])); tr.appendChild(td); });
      body.appendChild(tr);
    }
    const thead = el("thead"); thead.appendChild(head);
    t.appendChild(thead); t.appendChild(body);
    return t;
  }
  function dicts(data) {
    return data.rows.map((r) => Object.fromEntries(data.columns.map((c, i) => [c, r[i]])));
  }
  function setBody(id, node) {
    const body = document.querySelector("#panel-" + id + " .body");
    if (body) body.replaceChildren(node);
  }

  function showSector(data) {
    const row = dicts(data)[0];
    if (!row) return;
    const box = document.getElementById("sector");
    box.className = "sector lvl-" + row.level;
    document.getElementById("sector-level").textContent = row.level;
    document.getElementById("sector-name").textContent = LEVEL_NAMES[row.level] || "?";
    document.getElementById("sector-weighted").textContent = row.weighted_level;
    document.getElementById("sector-elevated").textContent = row.elevated + " / " + row.institutions;
    document.getElementById("sector-alerts").textContent = row.alerts;
    document.getElementById("sector-warned").textContent = row.warned;
  }

  function showInstitutions(data) {
    const rows = dicts(data);
    for (const r of rows) {
      const g = document.querySelector('#sector-map g[data-id="' + CSS.escape(r.institution_id) + '"]');
      if (!g) { if (!reloading) { reloading = true; location.reload(); } return; }
      const level = r.level === null ? 0 : r.level;
      const about = level ? "level " + level + " (" + LEVEL_NAMES[level] + ")" : "level not shared with you";
      g.setAttribute("class", "inst level-" + level + (r.open_warning ? " warned" : ""));
      g.querySelector("circle").setAttribute("fill", config.levels[level] || "#555");
      g.querySelector(".lvl").textContent = level || "-";
      g.querySelector("title").textContent = (r.name || r.institution_id) + ": " + about + (r.open_warning ? "; open warning" : "");
    }
    rows.sort((a, b) => (b.level || 0) - (a.level || 0) || (b.score || 0) - (a.score || 0) || String(a.name).localeCompare(String(b.name)));
    const t = table(INSTITUTION_COLUMNS, rows.map((r) => INSTITUTION_COLUMNS.map((c) => r[c])));
    const trs = t.querySelectorAll("tbody tr");
    rows.forEach((r, i) => { names[r.institution_id] = r.name || r.institution_id; if (trs[i]) trs[i].dataset.id = r.institution_id; });
    setBody(data.id, t);
    markFocus();
  }

  function shortNumber(v) {
    return v >= 1e9 ? (v / 1e9).toFixed(1) + "G" : v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e3 ? (v / 1e3).toFixed(1) + "k" : String(v);
  }

  // Stacked bars per minute, one colour per institution, sized to the panel.
  function chart(data) {
    const body = document.querySelector("#panel-" + data.id + " .body");
    const W = Math.max(280, Math.round((body && body.clientWidth) || 600)), H = 170, L = 40, B = 18, T = 8, R = 6;
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "chart"); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const from = data.params.from_ms, to = data.params.to_ms, step = 60000;
    const start = Math.floor(from / step) * step, n = Math.max(1, Math.floor((to - start) / step) + 1);
    const xi = data.columns.indexOf("minute_ms"), si = data.columns.indexOf("institution_id"), yi = data.columns.indexOf(data.field);
    const series = new Map(), totals = new Array(n).fill(0);
    for (const row of data.rows) {
      if (!series.has(row[si])) series.set(row[si], new Array(n).fill(0));
      const k = Math.round((row[xi] - start) / step);
      if (k >= 0 && k < n) { series.get(row[si])[k] += Number(row[yi]); totals[k] += Number(row[yi]); }
    }
    const max = Math.max(1, ...totals);
    const add = (tag, attrs, text) => { const e = document.createElementNS(svgNS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; svg.appendChild(e); return e; };
    const slot = (W - L - R) / n, barW = Math.max(0.6, slot * 0.8), scale = (H - B - T) / max;
    const base = new Array(n).fill(0);
    const legend = el("div", { class: "legend" });
    let i = 0;
    for (const [name, ys] of series) {
      const colour = PALETTE[i++ % PALETTE.length];
      ys.forEach((y, k) => {
        if (y <= 0) return;
        const h = y * scale, x = L + k * slot, top = H - B - base[k] * scale - h;
        add("rect", { x: x.toFixed(1), y: top.toFixed(1), width: barW.toFixed(1), height: h.toFixed(1), fill: colour })
          .appendChild(document.createElementNS(svgNS, "title")).textContent = `${name} ${clock(start + k * step)}: ${y}`;
        base[k] += y;
      });
      const item = el("span"); item.appendChild(el("i", { class: "swatch", style: "background:" + colour })); item.appendChild(document.createTextNode(name));
      legend.appendChild(item);
    }
    add("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
    add("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B });
    add("text", { x: L - 4, y: T + 9, "text-anchor": "end" }, shortNumber(max));
    add("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0");
    add("text", { x: L, y: H - 3 }, clock(start));
    add("text", { x: W - R, y: H - 3, "text-anchor": "end" }, clock(to));
    if (series.size === 0) add("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "nothing in this range");
    const box = document.createElement("div");
    box.appendChild(svg); box.appendChild(legend);
    setBody(data.id, box);
  }

  // Horizontal bars; mirrors finsa.dashboards.page.render_bars.
  function bars(data) {
    const box = document.createElement("div"), field = data.field, isLevel = field === "level";
    const fi = data.columns.indexOf(field);
    const top = isLevel ? 5 : Math.max(1, ...data.rows.map((r) => Number(r[fi]) || 0));
    if (data.rows.length === 0) box.appendChild(el("p", { class: "empty" }, "nothing in this range"));
    for (const row of data.rows) {
      const value = Number(row[fi]) || 0;
      const line = el("div", { class: "bar-row" });
      line.appendChild(el("span", { class: "bar-label" }, String(row[0])));
      const track = el("span", { class: "bar-track" });
      track.appendChild(el("span", { class: "bar " + (isLevel ? "lvl-" + Math.trunc(value) : "plain"), style: `width:${Math.round(100 * value / top)}%` }));
      line.appendChild(track);
      const v = el("span", { class: "bar-value" }); v.appendChild(cell(field, row[fi])); line.appendChild(v);
      box.appendChild(line);
      const detail = data.columns.map((c, i) => [c, row[i]]).filter(([c]) => c !== data.columns[0] && c !== field)
        .map(([c, x]) => c.replace(/_ms$/, "").replace(/_/g, " ") + " " + x).join(" · ");
      box.appendChild(el("div", { class: "bar-detail" }, detail));
    }
    setBody(data.id, box);
  }

  function show(data) {
    if (data.id === "sector_level") return showSector(data);
    if (data.id === "sector_map") return showInstitutions(data);
    if (data.kind === "timeseries") return chart(data);
    if (data.kind === "bar") return bars(data);
    const shown = (config.columns[data.id] || data.columns).filter((c) => data.columns.includes(c));
    const index = shown.map((c) => data.columns.indexOf(c));
    const t = table(shown, data.rows.map((r) => index.map((i) => r[i])));
    const link = (config.links || {})[data.id], li = link ? data.columns.indexOf(link[0]) : -1;
    if (li >= 0) {  // the first cell of each row links to its page (alert page ...)
      t.querySelectorAll("tbody tr").forEach((tr, k) => {
        const row = data.rows[k], td = tr.firstElementChild;
        if (!row || !td) return;
        tr.dataset.id = row[li];
        const a = el("a", { href: link[1] + encodeURIComponent(row[li]) });
        while (td.firstChild) a.appendChild(td.firstChild);
        td.appendChild(a);
      });
    }
    if (data.id === "campaigns" || data.id === "warnings") linkAddresses(t, data.id === "campaigns" ? "sources" : "indicators");
    setBody(data.id, t);
  }

  // Addresses in a column become links to the flow search of that address.
  function linkAddresses(t, column) {
    t.querySelectorAll("td.c-" + column).forEach((td) => {
      const words = td.textContent.split(/\s+/).filter(Boolean);
      if (!words.length) return;
      td.replaceChildren();
      for (const w of words) {
        if (/^[0-9a-f.:]+$/i.test(w) && /[.:]/.test(w)) {
          td.appendChild(el("a", { href: "flows#" + new URLSearchParams({ q: "src_ip = " + w + " or dst_ip = " + w }) }, w));
        } else td.appendChild(document.createTextNode(w));
        td.appendChild(document.createTextNode(" "));
      }
    });
  }

  function markFocus() {
    document.querySelectorAll("#sector-map .inst, #panel-sector_map tbody tr[data-id]").forEach((node) =>
      node.classList.toggle("selected", node.dataset.id === focus));
    const chip = document.getElementById("filter");
    chip.hidden = !focus;
    chip.textContent = focus ? "focus: " + (names[focus] || focus) + " \u00d7" : "";
  }

  function setFocus(id) {
    if (config.institution) return;
    focus = id === focus ? "" : id;
    history.replaceState(null, "", focus ? "#focus=" + focus : location.pathname + location.search);
    markFocus();
    refresh();
  }

  // An institution's analyst reads its own internal addresses in clear: every address in a cell
  // (a list cell word by word) is asked once of its agent (agent.js); the page shows pseudonyms
  // without a token, and the regulator's page has no agent at all.
  const agent = typeof AGENT !== "undefined" ? AGENT : null;
  async function inClear(results) {
    if (!agent || !agent.enabled()) return results;
    const words = results.flatMap((r) => (r.rows || []).flatMap((row) =>
      row.filter((v) => typeof v === "string").flatMap((v) => v.split(/\s+/))));
    try { await agent.readings(words); } catch (err) { return results; }
    const clear = (v) => (typeof v === "string" ? v.split(/(\s+)/).map(agent.clear).join("") : v);
    return results.map((r) => Object.assign({}, r, { rows: (r.rows || []).map((row) => row.map(clear)) }));
  }

  async function refresh() {
    const to = Date.now(), from = to - rangeMs;
    const status = document.getElementById("status");
    try {
      const results = await Promise.all(config.panels.map(async (id) => {
        const response = await fetch(`api/panels/${encodeURIComponent(id)}?from_ms=${from}&to_ms=${to}&institution=${encodeURIComponent(focus)}`, { cache: "no-store" });
        if (response.status === 401) { location.assign("login"); throw new Error("logged out"); }
        if (!response.ok) throw new Error(id + ": HTTP " + response.status);
        return response.json();
      }));
      (await inClear(results)).forEach(show);
      document.getElementById("updated").textContent = clock(to);
      status.className = "status ok"; status.textContent = "live";
    } catch (err) {
      status.className = "status stale"; status.textContent = "stale"; status.title = String(err);
    }
  }

  document.addEventListener("click", (ev) => {
    const node = ev.target.closest("#sector-map .inst, #panel-sector_map tbody tr[data-id]");
    if (node) setFocus(node.dataset.id);
  });
  document.getElementById("filter").addEventListener("click", () => setFocus(""));
  document.querySelectorAll("#panel-sector_map tbody tr[data-id]").forEach((tr) => {
    names[tr.dataset.id] = tr.querySelector("td").textContent;
  });
  markFocus();
  document.getElementById("range").addEventListener("change", (ev) => { rangeMs = Number(ev.target.value); refresh(); });
  if (agent) agent.onChange(refresh);  // a token pasted or forgotten: read the panels again
  refresh();
  setInterval(refresh, Math.max(1, config.refresh_s) * 1000);
})();
