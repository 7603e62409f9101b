// The institution's agent, called from the analyst's own browser: address translation and pcap cuts.
// The centre stores internal addresses as pseudonyms and never has the key: this page asks the
// institution's agent (config.agent_url, set by the web view for that institution's analysts only)
// to read pseudonyms in clear and to turn clear addresses typed in a filter into pseudonyms.
// The agent's token is pasted once per tab and kept in sessionStorage (gone when the tab closes);
// it goes to the agent only, in an Authorization header. Neither the token nor a clear address is
// ever sent to the centre. Without config.agent_url (the regulator, other institutions) this
// module makes no call at all and the page shows pseudonyms.
"use strict";
const AGENT = (function () {
  const { config, el } = SOC;
  const origin = config.agent_url || "";
  const KEY = "finsa-agent-token " + origin;
  const BATCH = 1000;  // the agent's MAX_BATCH
  const ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*)(\/\d{1,3})?$/;
  const WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/;
  const TOKEN = /\s+|!=|<=|>=|=|<|>|[(),]|'[^']*'|"[^"]*"|[A-Za-z0-9_.:/-]+|./gy;  // filterlang's lexer
  const cache = new Map();  // address as given -> {address, pseudonym, clear}
  const changed = [];
  let state = "";

  function token() { return origin ? sessionStorage.getItem(KEY) : null; }
  function configured() { return Boolean(origin); }
  function enabled() { return Boolean(origin && token()); }
  function isAddress(text) { return typeof text === "string" && ADDRESS.test(text); }
  function hostOf(text) { const m = WITH_PORT.exec(String(text)); return m ? m[1] : String(text); }

  async function call(path, options) {
    const opts = Object.assign({ cache: "no-store", credentials: "omit", mode: "cors", referrerPolicy: "no-referrer" },
      options || {});
    opts.headers = Object.assign({ Authorization: "Bearer " + token() }, opts.headers || {});
    let response;
    try { response = await fetch(origin + path, opts); } catch (err) { show("unreachable"); throw new Error("agent unreachable"); }
    if (response.status === 401) { sessionStorage.removeItem(KEY); show("token refused"); throw new Error("the agent refused the token"); }
    if (!response.ok) throw new Error("agent: HTTP " + response.status);
    show("connected");
    return response;
  }

  // Both readings of every address among `values` not asked before: one call per 1000 addresses.
  async function readings(values) {
    if (!enabled()) return cache;
    const wanted = [...new Set(values.map(hostOf).filter(isAddress))].filter((a) => !cache.has(a));
    for (let i = 0; i < wanted.length; i += BATCH) {
      const response = await call("/translate", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ addresses: wanted.slice(i, i + BATCH) }) });
      for (const r of (await response.json()).results) cache.set(r.address, r);
    }
    return cache;
  }

  // A value as the analyst reads it: a pseudonym (or pseudonym:port) becomes its clear address.
  function clear(value) {
    if (typeof value !== "string") return value;
    const host = hostOf(value), r = cache.get(host);
    return r && r.clear ? r.clear + value.slice(host.length) : value;
  }
  function clearRows(rows, columns) {
    return rows.map((row) => { const out = Object.assign({}, row); for (const c of columns) if (c in out) out[c] = clear(out[c]); return out; });
  }
  function values(rows, columns) { return rows.flatMap((row) => columns.map((c) => row[c])).filter((v) => typeof v === "string"); }

  // Filter text with each address token replaced by one of its readings (quoted text untouched).
  async function rewrite(text, pick) {
    const parts = [];
    TOKEN.lastIndex = 0;
    for (let m = TOKEN.exec(text); m !== null && m[0] !== ""; m = TOKEN.exec(text)) parts.push(m[0]);
    if (!enabled()) return text;
    await readings(parts);
    return parts.map((p) => { const r = isAddress(p) ? cache.get(p) : null; return r && pick(r) ? pick(r) : p; }).join("");
  }
  function hasAddress(text) {
    TOKEN.lastIndex = 0;
    for (let m = TOKEN.exec(text); m !== null && m[0] !== ""; m = TOKEN.exec(text)) if (isAddress(m[0])) return true;
    return false;
  }
  const filterToPseudonyms = (text) => rewrite(text, (r) => r.pseudonym);
  const filterToClear = (text) => rewrite(text, (r) => r.clear);

  // The packets of one flow (addresses in clear) from the agent's ring: {blob, packets}.
  async function cut(flow) {
    const q = new URLSearchParams({ a: flow.src_ip, b: flow.dst_ip, a_port: flow.src_port, b_port: flow.dst_port,
      protocol: flow.protocol, from_ms: flow.first_seen_ms - 1000, to_ms: (flow.last_seen_ms || flow.first_seen_ms) + 1000 });
    const response = await call("/pcap?" + q.toString());
    return { blob: await response.blob(), packets: response.headers.get("X-Finsa-Packets") };
  }
  function cutButton(flow) {
    const label = `${flow.src_ip}:${flow.src_port} \u2194 ${flow.dst_ip}:${flow.dst_port}`;
    const button = el("button", { type: "button", class: "pcap-cut" }, "pcap " + label);
    button.addEventListener("click", async () => {
      try {
        const got = await cut(flow);
        button.dataset.packets = got.packets;
        const a = el("a", { href: URL.createObjectURL(got.blob), download: `flow-${flow.flow_id}.pcap` });
        document.body.appendChild(a); a.click(); a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 60000);
        button.textContent = `pcap ${label} (${got.packets} packets)`;
      } catch (err) { button.textContent = "pcap: " + err.message; }
    });
    return button;
  }

  // The header's agent box: pseudonyms only, a token to paste, or connected.
  function show(next) { if (next !== state) { state = next; render(); } }
  function render() {
    const box = document.getElementById("agent");
    if (!box) return;
    if (!origin) { box.replaceChildren(el("span", { class: "hint" }, "internal addresses shown as pseudonyms")); return; }
    if (!token()) {
      const form = el("form", { id: "agent-connect" });
      form.appendChild(el("input", { id: "agent-token", type: "password", autocomplete: "off", size: "18",
        placeholder: "agent token (" + origin + ")" }));
      form.appendChild(el("button", { type: "submit" }, "read in clear"));
      if (state) form.appendChild(el("span", { class: "error" }, " " + state));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const given = document.getElementById("agent-token").value.trim();
        if (!given) return;
        sessionStorage.setItem(KEY, given); cache.clear(); state = ""; render();
        for (const fn of changed) fn();
      });
      box.replaceChildren(form);
      return;
    }
    const on = el("span", { class: state === "connected" ? "status ok" : "status pending", id: "agent-state",
      title: "translated in this browser by " + origin }, state === "connected" ? "in clear via your agent" : (state || "agent"));
    const forget = el("button", { type: "button", id: "agent-forget" }, "forget token");
    forget.addEventListener("click", () => { sessionStorage.removeItem(KEY); cache.clear(); state = ""; render(); for (const fn of changed) fn(); });
    box.replaceChildren(on, forget);
  }
  function onChange(fn) { changed.push(fn); }
  render();
  return { configured, enabled, readings, clear, clearRows, values, hostOf, filterToPseudonyms, filterToClear,
    hasAddress, cutButton, onChange };
})();
