// Cases (an institution's own; the regulator: escalations of every institution) and allowlist entries.
"use strict";
(function () {
  const { config, el, table, status, api, setBody } = SOC;

  async function decide(entryId, decision) {
    await api("api/allowlist/" + encodeURIComponent(entryId), { json: { decision: decision } });
    await load();
  }

  async function escalate(caseId) {
    await api("api/cases", { json: { case_id: caseId, status: "escalated" } });
    await load();
  }

  function entries(list) {
    const t = table(["entity", "detector", "institution_id", "reason", "expires_ms", "status", "alert_id"], list);
    if (config.role === "operator") {
      t.querySelectorAll("tbody tr").forEach((tr, i) => {
        const e = list[i];
        if (!e || e.status !== "proposed") return;
        const td = el("td");
        for (const d of ["accept", "reject"]) {
          const b = el("button", { type: "button", class: "decide-" + d, "data-entry": e.entry_id }, d);
          b.addEventListener("click", () => decide(e.entry_id, d));
          td.appendChild(b);
        }
        tr.appendChild(td);
      });
    }
    return t;
  }

  function cases(list) {
    const t = table(["title", "institution_id", "status", "campaign_id", "alert_ids", "updated"], list);
    if (config.role === "institution") {
      t.querySelectorAll("tbody tr").forEach((tr, i) => {
        const c = list[i];
        if (!c || c.status !== "open") return;
        const td = el("td"), b = el("button", { type: "button" }, "escalate to the regulator");
        b.addEventListener("click", () => escalate(c.case_id));
        td.appendChild(b); tr.appendChild(td);
      });
    }
    return t;
  }

  async function load() {
    try {
      const [c, a] = await Promise.all([api("api/cases"), api("api/allowlist")]);
      setBody("cases", cases(c.cases));
      setBody("allowlist", entries(a.entries));
      status(true, "loaded");
    } catch (err) { status(false, String(err.message || err)); }
  }
  load();
})();
