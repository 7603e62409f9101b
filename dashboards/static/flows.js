// Flow search: filter language, time range, result table, per-minute chart, CSV.
"use strict";
(function () {
  const { el, table, status, api, base, setBody } = SOC;
  const form = document.getElementById("search-form"), q = document.getElementById("q");
  const COLUMNS = ["first_seen_ms", "institution_id", "sensor_id", "protocol", "src_ip", "src_port", "dst_ip", "dst_port",
    "src2dst_packets", "src2dst_bytes", "dst2src_packets", "dst2src_bytes", "tls_sni", "dns_query", "http_host"];
  const ADDRESS_COLUMNS = ["src_ip", "dst_ip"];
  let fixed = null;  // {from, to} when the page was opened from an alert
  let fromCentre = null;  // the filter as the centre gave it (pseudonyms), shown untranslated

  function params(filter) {
    let to = Date.now(), from = to - Number(document.getElementById("range").value);
    if (fixed) { from = fixed.from; to = fixed.to; }
    return new URLSearchParams({ q: filter, from: from, to: to, limit: document.getElementById("limit").value });
  }

  // The filter the centre may see: clear addresses typed here become their pseudonyms (the
  // institution's agent translates, in this browser). Refused rather than sent in clear.
  async function outgoing() {
    if (AGENT.enabled()) return AGENT.filterToPseudonyms(q.value);
    if (AGENT.configured() && q.value !== fromCentre && AGENT.hasAddress(q.value)) {
      throw new Error("paste your agent token first: addresses are searched as pseudonyms, never sent in clear");
    }
    return q.value;
  }

  // RFC 4180 cells; a cell starting with = + - @ gets a leading ' against formula injection (as the centre's CSV).
  function cell(value) {
    let text = value === null || value === undefined ? "" : String(value);
    if (/^[=+\-@]/.test(text)) text = "'" + text;
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function clearCsv(columns, rows) {
    const lines = [columns.map(cell).join(",")].concat(rows.map((r) => columns.map((c) => cell(r[c])).join(",")));
    const link = document.getElementById("csv"), old = link.getAttribute("href");
    if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
    link.setAttribute("href", URL.createObjectURL(new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" })));
    link.setAttribute("download", "flows.csv");
  }

  function chart(data) {
    const svgNS = "http://www.w3.org/2000/svg", W = 900, H = 140, L = 40, B = 16;
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "chart"); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const rows = data.rows, max = Math.max(1, ...rows.map((r) => r[1]));
    const from = Number(data.from), to = Number(data.to), span = Math.max(60000, to - from);
    for (const r of rows) {
      const x = L + (W - L) * (r[0] - from) / span, h = (H - B) * r[1] / max;
      const rect = document.createElementNS(svgNS, "rect");
      rect.setAttribute("x", x.toFixed(1)); rect.setAttribute("y", (H - B - h).toFixed(1));
      rect.setAttribute("width", Math.max(1, (W - L) * 60000 / span * 0.8).toFixed(1)); rect.setAttribute("height", h.toFixed(1));
      rect.setAttribute("fill", "#4fb3ff");
      svg.appendChild(rect);
    }
    const label = document.createElementNS(svgNS, "text");
    label.setAttribute("x", 2); label.setAttribute("y", 12); label.textContent = String(max);
    svg.appendChild(label);
    return svg;
  }

  async function search() {
    const error = document.getElementById("error");
    let sent = q.value;
    try {
      status(true, "searching");
      sent = await outgoing();
      const p = params(sent);
      const csv = document.getElementById("csv");
      csv.setAttribute("href", base + "api/flows?" + p.toString() + "&format=csv");
      csv.removeAttribute("download");
      history.replaceState(null, "", "#" + new URLSearchParams({ q: sent }).toString());
      const data = await api("api/flows?" + p.toString());
      error.hidden = true;
      let rows = data.rows.map((r) => Object.fromEntries(data.columns.map((c, i) => [c, r[i]])));
      if (AGENT.enabled()) {  // one call to the agent for the whole table
        try { await AGENT.readings(AGENT.values(rows, ADDRESS_COLUMNS)); rows = AGENT.clearRows(rows, ADDRESS_COLUMNS); }
        catch (err) { status(false, "pseudonyms only: " + err.message); }
      }
      if (AGENT.enabled()) clearCsv(data.columns, rows);  // the export in clear too, made here, never at the centre
      setBody("results", table(COLUMNS, rows));
      document.getElementById("count").textContent = rows.length + (data.truncated ? "+ (limit)" : "") + " flows";
      setBody("chart", chart({ rows: data.chart.rows, from: data.from, to: data.to }));
      if (document.getElementById("status").textContent === "searching") status(true, "done");
    } catch (err) {
      error.hidden = false;
      const pos = err.data && err.data.position !== null && err.data.position !== undefined ? err.data.position : null;
      error.textContent = err.message + (pos !== null ? "\n" + sent + "\n" + " ".repeat(pos) + "^" : "");
      if (pos !== null && sent === q.value) { q.focus(); q.setSelectionRange(pos, pos + 1); }
      status(false, "error");
    }
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); fixed = null; search(); });
  document.getElementById("fields").textContent = "src_ip dst_ip src_port dst_port protocol institution_id sensor_id tls_sni dns_query http_host ... (every flow field); = != < <= > >= in, CIDR, a..b, and or not ( )";
  // Opened from an alert (or a shared link): the filter holds the centre's pseudonyms; show it in clear.
  async function begin() {
    const start = new URLSearchParams(location.hash.slice(1));
    if (!start.has("q")) return;
    fromCentre = q.value = start.get("q");
    if (start.has("from") && start.has("to")) fixed = { from: Number(start.get("from")), to: Number(start.get("to")) };
    if (AGENT.enabled()) {
      try { q.value = await AGENT.filterToClear(fromCentre); } catch (err) { q.value = fromCentre; }
    }
    search();
  }
  AGENT.onChange(() => { if (fromCentre !== null && q.value === fromCentre) begin(); else if (q.value) search(); });
  begin();
})();
