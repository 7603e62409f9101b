// The alert page: evidence, flows, the entity's activity, enrichment, triage.
"use strict";
(function () {
  const { config, el, table, facts, status, api, flowsLink, setBody, base } = SOC;
  const id = config.alert_id;
  const ADDRESS_COLUMNS = ["src_ip", "dst_ip"];
  const FLOW_COLUMNS = ["flow_id", "first_seen_ms", "sensor_id", "protocol", "src_ip", "src_port", "dst_ip", "dst_port", "src2dst_bytes", "dst2src_bytes"];
  const alertLink = (row, c) => (c === "time_ms" || c === "detector") && row.alert_id ? base + "alerts/" + row.alert_id : null;

  // The alert read in clear through the institution's agent (one call for the whole page); the
  // pseudonyms the centre holds stay in the links (flow search translates them again).
  async function inClear(d) {
    if (!AGENT.enabled()) return d;
    const a = d.alert, flows = d.flows.cited.concat(d.flows.rows), features = a.evidence.features || {};
    await AGENT.readings([a.entity, a.target, d.enrichment.address].concat(AGENT.values(flows, ADDRESS_COLUMNS),
      AGENT.values(d.entity.alerts, ["target"]), Object.values(features).filter((v) => typeof v === "string")));
    const clearFeatures = Object.fromEntries(Object.entries(features).map(([k, v]) => [k, AGENT.clear(v)]));
    const alert = Object.assign({}, a, { entity: AGENT.clear(a.entity), target: AGENT.clear(a.target),
      evidence: Object.assign({}, a.evidence, { features: clearFeatures }) });
    if (alert.entity !== a.entity) alert.pseudonym_at_centre = a.entity;
    return Object.assign({}, d, { alert: alert,
      enrichment: clearEnrichment(d.enrichment),
      flows: Object.assign({}, d.flows, { cited: AGENT.clearRows(d.flows.cited, ADDRESS_COLUMNS),
        rows: AGENT.clearRows(d.flows.rows, ADDRESS_COLUMNS) }),
      entity: Object.assign({}, d.entity, { alerts: AGENT.clearRows(d.entity.alerts, ["target"]) }) });
  }

  // An internal address's country and AS looked up at the centre are its pseudonym's: not shown.
  function clearEnrichment(en) {
    const address = AGENT.clear(en.address);
    if (address === en.address) return en;
    return Object.assign({}, en, { address: address, country: "internal", asn: "", as_name: "", network: "" });
  }

  // Packets stay at the institution: its analyst cuts them from the agent's ring (addresses in clear).
  function pcapCuts(flows) {
    const cuts = el("div", { class: "hint", id: "pcap-cuts" });
    if (config.role !== "institution") return cuts;
    cuts.appendChild(el("h3", {}, "packets (kept on your agent host, never at the centre)"));
    for (const f of flows) {
      if (AGENT.enabled()) { cuts.appendChild(AGENT.cutButton(f)); continue; }
      const q = new URLSearchParams({ a: f.src_ip, b: f.dst_ip, a_port: f.src_port, b_port: f.dst_port, protocol: f.protocol,
        from_ms: f.first_seen_ms - 1000, to_ms: (f.last_seen_ms || f.first_seen_ms) + 1000, pseudonyms: 1 });
      cuts.appendChild(el("pre", {}, "curl -H \"Authorization: Bearer $(cat PCAP_TOKEN_FILE)\" -o flow.pcap '" +
        (config.agent_url || "http://127.0.0.1:9465") + "/pcap?" + q + "'"));
    }
    return cuts;
  }

  function show(d) {
    const a = d.alert;
    document.title = a.detector + " " + a.entity + " · finsa";
    setBody("summary", facts({ alert_id: a.alert_id, time_ms: a.time_ms, first_seen_ms: a.first_seen_ms, institution_id: a.institution_id,
      detector: a.detector, technique: a.technique, severity: a.severity, entity: a.entity, entity_kind: a.entity_kind,
      target: a.target, score: a.score, confidence: a.confidence,
      ...(a.pseudonym_at_centre ? { pseudonym_at_centre: a.pseudonym_at_centre } : {}) }));
    setBody("evidence", facts(Object.assign({}, a.evidence.features || {}, { flow_ids: (a.evidence.flow_ids || []).join(" ") })));
    const en = d.enrichment;
    setBody("enrichment", facts({ address: en.address, country: en.country || "", asn: en.asn || "", as_name: en.as_name || "",
      network: en.network || "", intel_alerts: en.intel_alerts.length, warnings_naming_it: en.warnings_naming_it }));
    const box = el("div");
    box.appendChild(el("h3", {}, "cited in the evidence"));
    box.appendChild(table(FLOW_COLUMNS, d.flows.cited));
    box.appendChild(el("h3", {}, "the entity's flows in the window (" + d.flows.rows.length + ")"));
    box.appendChild(table(FLOW_COLUMNS, d.flows.rows));
    box.appendChild(pcapCuts(d.flows.cited.concat(d.flows.rows).slice(0, 5)));
    setBody("flows", box);
    document.getElementById("flows-search").setAttribute("href", flowsLink(d.flows.filter, d.flows.from_ms, d.flows.to_ms));
    const ent = el("div");
    ent.appendChild(el("h3", {}, "alerts on " + a.entity));
    ent.appendChild(table(["time_ms", "institution_id", "detector", "technique", "severity", "target"], d.entity.alerts, alertLink));
    ent.appendChild(el("h3", {}, "campaigns"));
    ent.appendChild(table(["title", "kind", "severity", "status", "first_seen_ms", "last_seen_ms", "alerts"], d.entity.campaigns));
    ent.appendChild(el("h3", {}, "warnings naming it"));
    ent.appendChild(table(["time_ms", "severity", "title", "status"], d.entity.warnings));
    setBody("entity", ent);
    const t = d.triage, cur = t.current || { state: "new", verdict: "", assignee: "" };
    const form = document.getElementById("triage-form");
    form.state.value = cur.state; form.verdict.value = cur.verdict || ""; form.assignee.value = cur.assignee || "";
    const stateBox = el("div");
    stateBox.appendChild(facts({ state: cur.state, verdict: cur.verdict || "", assignee: cur.assignee || "", case: cur.case_id || "" }));
    if (t.proposed.length) {
      stateBox.appendChild(el("h3", {}, "allowlist proposals"));
      stateBox.appendChild(table(["entity", "detector", "institution_id", "status", "reason"], t.proposed));
    }
    document.getElementById("triage-state").replaceChildren(stateBox);
    setBody("history", table(["time", "user", "state", "verdict", "assignee", "note", "case_id"], t.history));
    form.hidden = config.role !== "institution";
  }

  async function load() {
    let d;
    try { d = await api("api/alerts/" + encodeURIComponent(id)); } catch (err) { status(false, String(err.message || err)); return; }
    let note = "loaded";
    try { d = await inClear(d); } catch (err) { note = "loaded, pseudonyms only: " + err.message; }
    show(d);
    status(true, note);
  }

  document.getElementById("triage-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target, body = { state: f.state.value, assignee: f.assignee.value, note: f.note.value };
    if (f.state.value === "closed") body.verdict = f.verdict.value;
    const out = document.getElementById("triage-result");
    try {
      const r = await api("api/alerts/" + encodeURIComponent(id) + "/triage", { json: body });
      out.textContent = "saved: " + r.state.state + (r.proposed ? "; allowlist entry proposed" : "");
      f.note.value = "";
      await load();
    } catch (err) { out.textContent = "refused: " + err.message; }
  });
  AGENT.onChange(load);
  load();
})();
