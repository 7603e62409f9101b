// finsa analyst pages: shared helpers (same origin only, no framework).
"use strict";
const SOC = (function () {
  const config = JSON.parse(document.body.dataset.config);
  const base = document.body.dataset.base || "";
  const SEVERITIES = { 1: "info", 2: "low", 3: "medium", 4: "high", 5: "critical" };
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : ""; }
  function cell(column, value) {
    if (value === null || value === undefined) return document.createTextNode("");
    if (column === "severity") return el("span", { class: "badge sev-" + value }, SEVERITIES[value] || value);
    if (column.endsWith("_ms") && typeof value === "number") return el("time", { "data-ms": value }, when(value));
    if (typeof value === "object") return document.createTextNode(JSON.stringify(value));
    return document.createTextNode(String(value));
  }
  // rows: list of objects; link(row, column) -> href or null
  function table(columns, rows, link) {
    const t = el("table"), head = el("tr"), body = el("tbody");
    for (const c of columns) head.appendChild(el("th", { class: "c-" + c }, c.replace(/_ms$/, "").replace(/_/g, " ")));
    if (!rows.length) { const tr = el("tr"); tr.appendChild(el("td", { class: "empty", colspan: columns.length }, "nothing")); body.appendChild(tr); }
    for (const row of rows) {
      const tr = el("tr");
      for (const c of columns) {
        const td = el("td", { class: "c-" + c }), href = link ? link(row, c) : null;
        if (href) { const a = el("a", { href: href }); a.appendChild(cell(c, row[c])); td.appendChild(a); } else td.appendChild(cell(c, row[c]));
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    const thead = el("thead"); thead.appendChild(head); t.appendChild(thead); t.appendChild(body);
    return t;
  }
  function facts(obj) {
    const dl = el("dl", { class: "facts" });
    for (const [k, v] of Object.entries(obj)) { dl.appendChild(el("dt", {}, k.replace(/_/g, " "))); const dd = el("dd"); dd.appendChild(cell(k, v)); dl.appendChild(dd); }
    return dl;
  }
  function status(ok, text) {
    const s = document.getElementById("status");
    if (s) { s.className = "status " + (ok ? "ok" : "stale"); s.textContent = text; }
  }
  async function api(path, options) {
    const opts = Object.assign({ cache: "no-store", headers: {} }, options || {});
    if (opts.json !== undefined) {
      opts.method = opts.method || "POST";
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = config.csrf;
      delete opts.json;
    }
    const response = await fetch(base + path, opts);
    if (response.status === 401) { location.assign(base + "login"); throw new Error("logged out"); }
    const data = await response.json();
    if (!response.ok) { const err = new Error(data.error || ("HTTP " + response.status)); err.data = data; throw err; }
    return data;
  }
  function flowsLink(q, from, to) {
    return base + "flows#" + new URLSearchParams({ q: q, from: from, to: to }).toString();
  }
  function setBody(id, node) { document.querySelector("#" + id + " .body").replaceChildren(node); }
  return { config, base, el, cell, table, facts, status, api, flowsLink, setBody, when };
})();
