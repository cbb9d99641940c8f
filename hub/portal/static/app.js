// LedgerHub portal: plain JavaScript, no build step. Every number on the page comes from the REST API
// with the signed-in token, so the page can show only what that token may see. Charts: charts.js.
"use strict";

const REFRESH_MS = 3000;
const state = { token: sessionStorage.getItem("ledgerhub.token"), timer: null, me: null, etags: new Map(), series: null };
const $ = (id) => document.getElementById(id);
const SECTIONS = ["sign-in", "contracts", "provider", "audit", "contract", "invoice"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  if (response.status === 401) { signOut("Your token was not accepted."); throw new Error("unauthenticated"); }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) throw Object.assign(new Error(body.title || response.statusText), { problem: body });
  return body;
}

// A conditional GET: the last ETag goes along, and a 304 answers with the body already held (no download).
async function poll(path) {
  const known = state.etags.get(path);
  const response = await fetch(path, { cache: "no-store", headers: { Authorization: `Bearer ${state.token}`,
    ...(known ? { "If-None-Match": known.etag } : {}) } });
  if (response.status === 401) { signOut("Your token was not accepted."); throw new Error("unauthenticated"); }
  if (response.status === 304 && known) return { body: known.body, changed: false };
  const body = await response.json();
  if (!response.ok) throw Object.assign(new Error(body.title || response.statusText), { problem: body });
  state.etags.set(path, { etag: response.headers.get("ETag"), body });
  return { body, changed: true };
}

// Amounts arrive as the ledger's decimal strings, already in the currency's minor units ("100.00" EUR,
// "5000" JPY): they are grouped for reading, never converted to a float and re-rounded ("100" for 100.00).
function money(amount, currency) {
  if (amount === null || amount === undefined) return "—";
  const text = String(amount).trim();
  const match = /^([-+]?)(\d+)(\.\d+)?$/.exec(text);
  if (!match) return `${text} ${currency || ""}`;
  const grouped = match[2].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${match[1] === "-" ? "-" : ""}${grouped}${match[3] || ""} ${currency || ""}`.trim();
}

function show(section) {
  for (const id of SECTIONS) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "sign-in";
}

function signOut(message) {
  sessionStorage.removeItem("ledgerhub.token");
  state.token = null;
  state.me = null;
  clearInterval(state.timer);
  $("who").textContent = "";
  show("sign-in");
  $("sign-in-error").textContent = message || "";
}

function live(fn) {
  clearInterval(state.timer);
  state.timer = setInterval(() => fn().then(() => {
    const status = $("live");
    if (status) status.textContent = `Live: updated ${new Date().toLocaleTimeString()}`;
  }).catch(() => {}), REFRESH_MS);
}

// --- home pages per role ---------------------------------------------------------------------------------

async function home() {
  if (state.me.role === "provider") return providerPage();
  if (state.me.role === "auditor") return auditPage();
  return contractsPage();
}

async function contractsPage() {
  show("contracts");
  const { items } = await api("/v1/contracts");
  const rows = $("contract-rows");
  rows.replaceChildren(...items.map((c) => el("tr", {},
    el("td", {}, el("a", { href: `#/contracts/${encodeURIComponent(c.id)}` }, c.id)),
    el("td", {}, c.provider), el("td", {}, c.customer), el("td", {}, c.status), el("td", {}, c.currency || ""))));
  if (!items.length) rows.append(el("tr", {}, el("td", { colspan: "5" }, "No contracts visible to this token.")));
}

function sumBy(items, key) {
  const totals = {};
  for (const item of items) {
    const cur = item.currency || "";
    totals[cur] = (totals[cur] || 0n) + BigInt(String(item[key] || "0").replace(".", "")); // same minor units per currency
  }
  return totals;
}

function minorText(total, sample) {
  const decimals = (String(sample || "").split(".")[1] || "").length;
  const text = total.toString().padStart(decimals + 1, "0");
  return decimals ? `${text.slice(0, -decimals)}.${text.slice(-decimals)}` : text;
}

async function providerPage() {
  show("provider");
  const render = async () => {
    const { body, changed } = await poll("/v1/portal/provider");
    if (!changed) return;
    const items = body.contracts;
    $("provider-sub").textContent = `${body.org} · ${items.length} ${items.length === 1 ? "contract" : "contracts"} · as of ${new Date(body.as_of).toLocaleString()}`;
    const currency = items[0] ? items[0].currency : "";
    const usage = sumBy(items, "usage_to_date")[currency] || 0n;
    const open = sumBy(items, "open_total")[currency] || 0n;
    const overdue = items.reduce((n, c) => n + c.overdue.length, 0);
    const dead = items.reduce((n, c) => n + c.dead_letters.length, 0);
    const alerts = items.reduce((n, c) => n + c.alerts, 0);
    const sample = items[0] ? items[0].usage_to_date : "0.00";
    $("provider-cards").replaceChildren(
      card("Usage to date, this period", money(minorText(usage, sample), currency), `${items.length} ${items.length === 1 ? "contract" : "contracts"}`),
      card("Open invoices", money(minorText(open, sample), currency), `${overdue} overdue`),
      card("Needs attention", `${dead} dead-lettered`, `${alerts} alerts raised`));
    const labels = items.map((c) => c.id);
    Charts.render("provider-chart-slot", {
      id: "chart-provider", title: `Usage to date and forecast per contract (${currency})`,
      summary: items.map((c) => `${c.id}: ${money(c.usage_to_date, c.currency)} to date, forecast ${money(c.forecast, c.currency)}`).join("; ") || "No contracts yet.",
      headers: ["Contract", `Usage to date (${currency})`, `Forecast (${currency})`, `Invoiced (${currency})`],
      rows: items.map((c) => [c.id, c.usage_to_date, c.forecast, c.invoiced]),
      config: Charts.bar(labels, [
        { label: "Usage to date", data: items.map((c) => Charts.num(c.usage_to_date)), backgroundColor: Charts.palette.accent },
        { label: "Forecast", data: items.map((c) => Charts.num(c.forecast)), backgroundColor: Charts.palette.accent2 },
      ], "Contract", currency),
    });
    $("provider-rows").replaceChildren(...items.map((c) => el("tr", { "data-contract": c.id },
      el("td", {}, el("a", { href: `#/contracts/${encodeURIComponent(c.id)}` }, c.id)), el("td", {}, c.customer),
      el("td", { class: "num" }, money(c.usage_to_date, c.currency)), el("td", { class: "num" }, money(c.forecast, c.currency)),
      el("td", { class: "num" }, money(c.invoiced, c.currency)),
      el("td", {}, c.open.length ? `${c.open.map((o) => `${o.id} (${o.status})`).join("; ")} · ${money(c.open_total, c.currency)}` : "none"),
      el("td", {}, c.overdue.length ? el("span", { class: "bad" }, c.overdue.map((o) => `${o.id} (due ${o.due.slice(0, 10)})`).join("; ")) : "none"),
      el("td", {}, c.dead_letters.length ? el("span", { class: "bad" }, c.dead_letters.map((d) => `${d.invoice_id} → ${d.connector}: ${d.error || "dead letter"}`).join("; ")) : "none"),
      el("td", { class: "num" }, String(c.alerts)))));
    if (!items.length) $("provider-rows").append(el("tr", {}, el("td", { colspan: "9" }, "No contracts visible to this token.")));
  };
  Charts.clear("provider-chart-slot");
  state.etags.delete("/v1/portal/provider");
  await render();
  live(render);
}

function card(title, big, sub) {
  return el("div", { class: "card" }, el("h2", {}, title), el("p", { class: "big" }, big), el("p", { class: "sub" }, sub));
}

async function auditPage() {
  show("audit");
  const render = async () => {
    const { body, changed } = await poll("/v1/portal/audit");
    if (!changed) return;
    $("audit-rows").replaceChildren(...body.items.map((inv) => el("tr", { "data-invoice": inv.id },
      el("td", {}, el("a", { href: `#/invoices/${encodeURIComponent(inv.id)}` }, inv.id)), el("td", {}, inv.contract_id),
      el("td", {}, `${inv.provider} → ${inv.customer}`), el("td", { class: "num" }, money(inv.total, inv.currency)),
      el("td", {}, inv.status), el("td", {}, el("span", { class: `verification ${inv.verification}` }, inv.verification)),
      el("td", {}, el("button", { type: "button", class: "secondary", "data-verify": inv.id, onclick: () => verify(inv.id, $("audit-report")) }, `Verify ${inv.id}`)))));
    if (!body.items.length) $("audit-rows").append(el("tr", {}, el("td", { colspan: "7" }, "No invoices yet.")));
    renderAuditChart(body.items);
  };
  Charts.clear("audit-chart-slot");
  state.etags.delete("/v1/portal/audit");
  await render();
  live(render);
}

// Invoices per period by verification state (counts: the currencies of several contracts do not add up).
function renderAuditChart(items) {
  const periods = [...new Set(items.map((i) => i.period || "—"))].sort();
  const states = [["verified", "#116329"], ["unverified", Charts.palette.muted], ["failed", Charts.palette.bad]];
  const count = (p, s) => items.filter((i) => (i.period || "—") === p && i.verification === s).length;
  const totals = states.map(([s]) => `${items.filter((i) => i.verification === s).length} ${s}`).join(", ");
  Charts.render("audit-chart-slot", {
    id: "chart-audit", title: "Invoices per billing period by verification state", height: 220,
    summary: items.length ? `${items.length} ${items.length === 1 ? "invoice" : "invoices"}: ${totals}.` : "No invoices yet.",
    headers: ["Period", ...states.map(([s]) => s)], rows: periods.map((p) => [p, ...states.map(([s]) => String(count(p, s)))]),
    config: Charts.bar(periods, states.map(([s, color]) => ({ label: s, data: periods.map((p) => count(p, s)), backgroundColor: color })),
      "Billing period", "Invoices", { scales: { x: { stacked: true, title: { display: true, text: "Billing period", color: Charts.palette.ink } },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0, color: Charts.palette.muted }, title: { display: true, text: "Invoices", color: Charts.palette.ink } } } }),
  });
}

async function verify(invoiceId, target) {
  target.replaceChildren(el("p", {}, `Verifying ${invoiceId}…`));
  try {
    const report = await api(`/v1/invoices/${encodeURIComponent(invoiceId)}/verification`, { method: "POST" });
    const checked = Object.entries(report.checked);
    target.replaceChildren(
      el("h2", {}, `${invoiceId}: ${report.ok ? "verified" : "verification FAILED"}`),
      el("p", { class: report.ok ? "ok" : "bad" }, report.ok ? "Every signature, hash link and amount checks out." : `${report.failures.length} problem(s) found.`),
      el("p", { class: "sub" }, `Network ${report.network_id || "?"}; genesis ${report.genesis_hash ? report.genesis_hash.slice(0, 16) + "…" : "not pinned"}.`),
      el("table", { class: "checked" }, el("caption", {}, "What was checked"),
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Check"), el("th", { scope: "col", class: "num" }, "Count"))),
        el("tbody", {}, ...checked.map(([what, n]) => el("tr", {}, el("th", { scope: "row" }, what), el("td", { class: "num" }, String(n)))))),
      ...(report.failures || []).map((f) => el("p", { class: "bad" }, `${f.part}: ${f.check} — ${f.detail}`)));
    state.etags.delete("/v1/portal/audit");
  } catch (error) {
    if (error.message !== "unauthenticated") target.replaceChildren(el("p", { class: "error", role: "alert" }, `Not verified: ${(error.problem && (error.problem.detail || error.problem.title)) || error.message}`));
  }
}

// --- one contract -------------------------------------------------------------------------------------------

async function contractPage(id) {
  show("contract");
  for (const slot of ["cost-chart-slot", "charts", "assets-chart-slot", "history-chart-slot"]) Charts.clear(slot);
  state.etags.clear();
  state.series = null;
  const contract = await api(`/v1/contracts/${encodeURIComponent(id)}`);
  $("contract-title").textContent = `Contract ${contract.id}`;
  $("contract-sub").textContent = `${contract.provider} → ${contract.customer} · ${contract.currency} · ` +
    `${contract.timezone} · ${contract.status}`;
  $("csv-export").onclick = () => download(`/v1/contracts/${encodeURIComponent(contract.id)}/readings.csv`, `${contract.id}-readings.csv`);
  await refreshContract(contract);
  loadRules(contract);
  live(() => refreshContract(contract));
}

async function refreshContract(contract) {
  const id = encodeURIComponent(contract.id);
  const seriesPath = state.series ? `/v1/contracts/${id}/usage/series?period=${state.series.period}&since=${state.series.version}` : `/v1/contracts/${id}/usage/series`;
  const [usage, series, cost, assets, history, invoices, alerts, rules] = await Promise.all([
    api(`/v1/contracts/${id}/usage`), poll(seriesPath), poll(`/v1/contracts/${id}/usage/cost-series`),
    poll(`/v1/contracts/${id}/usage/assets`), poll(`/v1/contracts/${id}/invoice-history`),
    api(`/v1/invoices?contract=${id}`), api(`/v1/alerts?contract=${id}`),
    api(`/v1/contracts/${id}/alert-rules`).catch(() => null),
  ]);
  const c = usage.cost || {};
  $("cost-to-date").textContent = money(c.total, contract.currency);
  const count = usage.aggregate ? usage.aggregate.readings : 0;
  $("cost-sub").textContent = `${count} ${count === 1 ? "reading" : "readings"} in ${usage.period}`;
  const f = usage.forecast;
  $("forecast").textContent = f ? money(f.total, contract.currency) : "—";
  $("forecast-sub").textContent = f ? `run rate after ${(Number(f.elapsed_fraction) * 100).toFixed(0)}% of the period` : "no forecast";
  $("budget").textContent = rules && rules.budget ? money(rules.budget, contract.currency) : "not set";
  $("budget-sub").textContent = rules && rules.usual_level ? `usual: ${money(rules.usual_level, contract.currency)}` : "";
  renderPrepaid(usage, contract);
  renderAlerts(alerts.alerts);
  if (series.changed) mergeSeries(series.body);
  renderUsageCharts(state.series);
  if (cost.changed) renderCostChart(cost.body, contract);
  if (assets.changed) renderAssets(assets.body, contract);
  if (history.changed) renderHistory(history.body);
  await renderInvoices(invoices.items);
}

// The first answer is the whole period; later ones (since=version) carry only the days that changed.
function mergeSeries(body) {
  if (!state.series || !body.partial) { state.series = structuredClone(body); return; }
  const index = new Map(state.series.days.map((d, i) => [d, i]));
  body.days.forEach((day, j) => {
    for (const [metric, data] of Object.entries(body.metrics)) state.series.metrics[metric].values[index.get(day)] = data.values[j];
  });
  state.series.version = body.version;
}

// ADR 0051: every usage batch draws the prepaid balance down; show what is left and what this period drew
function renderPrepaid(usage, contract) {
  const p = usage.prepaid, b = usage.billing;
  $("prepaid-card").hidden = !p && !b;
  if (!p && !b) return;
  $("prepaid-balance").textContent = p ? money(p.balance, contract.currency) : "—";
  const parts = [];
  if (p) parts.push(`drawn ${money(p.drawn, contract.currency)} in ${usage.period}`);
  if (p && Number(p.undrawn) > 0) parts.push(`${money(p.undrawn, contract.currency)} not covered`);
  if (p && p.low_balance) parts.push("low balance");
  if (b) parts.push(`interim invoices ${b.interim_invoices.length}, billed ${money(b.billed, contract.currency)}`);
  $("prepaid-sub").textContent = parts.join(" · ");
}

function renderAlerts(alerts) {
  $("alerts").replaceChildren(...alerts.map((a) => el("div", { class: `alert${a.kind.startsWith("budget_80") ? " warn" : ""}` },
    el("strong", {}, a.kind.replaceAll("_", " ") + (a.metric ? ` (${a.metric})` : "")), ": ", a.message)));
}

function decimalTotal(values, keepZeros = false) {
  // exact sum of decimal strings for the caption (no float drift): scale to the longest fraction
  const scale = Math.max(0, ...values.map((v) => (String(v).split(".")[1] || "").length));
  const total = values.reduce((acc, v) => { const [i, fr = ""] = String(v).split("."); return acc + BigInt(i + fr.padEnd(scale, "0")); }, 0n);
  const text = total.toString().padStart(scale + 1, "0");
  const exact = scale ? `${text.slice(0, -scale)}.${text.slice(-scale)}` : text;
  return keepZeros || !scale ? exact : exact.replace(/\.?0+$/, "");
}

function renderUsageCharts(series) {
  const slot = $("charts");
  for (const [metric, data] of Object.entries(series.metrics)) {
    const present = data.values.map((v, i) => [series.days[i], v]).filter(([, v]) => v !== null);
    const sumLike = data.aggregation === "sum" || data.aggregation === "count";
    const total = sumLike ? decimalTotal(present.map(([, v]) => v)) : null;
    const peak = present.reduce((best, p) => (best === null || Number(p[1]) > Number(best[1]) ? p : best), null);
    const summary = !present.length ? `No ${metric} readings in ${series.period}.`
      : (sumLike ? `total ${total} ${data.unit} this period over ${present.length} ${present.length === 1 ? "day" : "days"} with readings; ` : `${data.aggregation} per day; `) +
        `highest ${peak[1]} ${data.unit} on ${peak[0]}.`;
    const entry = Charts.render(slot, {
      id: `chart-usage-${metric}`, title: `${metric} per day (${data.unit}, ${data.aggregation})`, summary, height: 200,
      headers: ["Day", `${metric} (${data.unit})`], rows: present.map(([d, v]) => [d, v]),
      config: Charts.bar(series.days.map((d) => d.slice(5)), [{ label: `${metric} (${data.unit})`, data: data.values.map(Charts.num),
        backgroundColor: Charts.palette.accent }], `Day of ${series.period} (${series.timezone})`, data.unit, { plugins: { legend: { display: false } } }),
    });
    entry.figure.setAttribute("data-metric", metric);
    entry.figure.classList.toggle("empty", !present.length);
  }
}

function renderCostChart(body, contract) {
  const cur = body.currency || contract.currency;
  const labels = body.days.map((d) => d.slice(5));
  const sets = [{ label: "Cost to date", data: body.cumulative.map(Charts.num), borderColor: Charts.palette.accent,
    backgroundColor: Charts.palette.accent, pointRadius: 2, borderWidth: 2 }];
  if (body.forecast) {
    sets.push({ label: "Forecast range (low)", data: body.forecast.low.map(Charts.num), borderColor: "transparent", pointRadius: 0, fill: false },
      { label: "Forecast range", data: body.forecast.high.map(Charts.num), borderColor: "transparent", backgroundColor: Charts.palette.band, pointRadius: 0, fill: "-1" },
      { label: "Forecast", data: body.forecast.line.map(Charts.num), borderColor: Charts.palette.accent, borderDash: [6, 4], pointRadius: 0, borderWidth: 2 });
  }
  if (body.budget) sets.push({ label: "Budget", data: body.days.map(() => Number(body.budget)), borderColor: Charts.palette.bad, borderDash: [2, 3], pointRadius: 0, borderWidth: 2 });
  const known = body.cumulative.map((v, i) => [body.days[i], v]).filter(([, v]) => v !== null);
  const last = known[known.length - 1];
  let summary = last ? `Cost to date ${money(last[1], cur)} on ${last[0]}.` : "No cost yet this period.";
  if (body.budget) summary += body.budget_crossed_on ? ` Budget ${money(body.budget, cur)} exceeded on ${body.budget_crossed_on}.` : ` Budget ${money(body.budget, cur)} not exceeded.`;
  if (body.forecast) summary += ` Forecast ${money(body.forecast_total, cur)} at period end (range ${money(body.forecast.low.at(-1), cur)} to ${money(body.forecast.high.at(-1), cur)}).`;
  const entry = Charts.render("cost-chart-slot", {
    id: "chart-cost", title: `Cumulative cost in ${body.period} against the budget (${cur}, incl. tax)`, summary, height: 300,
    headers: ["Day", `Cost to date (${cur})`, `Forecast (${cur})`, `Budget (${cur})`],
    rows: body.days.map((d, i) => [d, body.cumulative[i], body.forecast ? body.forecast.line[i] : null, body.budget]).filter((r) => r[1] !== null || r[2] !== null),
    config: Charts.line(labels, sets, `Day of ${body.period}`, cur),
  });
  entry.figure.dataset.crossed = body.budget_crossed_on || "";
}

function renderAssets(body, contract) {
  if ((contract.assets || []).length < 2) return;
  const metrics = Object.keys(body.units);
  const colors = [Charts.palette.accent, Charts.palette.accent2, Charts.palette.bad, Charts.palette.muted];
  Charts.render("assets-chart-slot", {
    id: "chart-assets", title: `Usage per asset in ${body.period}`,
    summary: body.assets.map((a) => `${a.asset_id}: ` + metrics.filter((m) => a.metrics[m] !== null).map((m) => `${a.metrics[m]} ${body.units[m]} ${m}`).join(", ")).join("; ") || "No readings yet.",
    headers: ["Asset", ...metrics.map((m) => `${m} (${body.units[m]})`), "Readings"],
    rows: body.assets.map((a) => [a.asset_id, ...metrics.map((m) => a.metrics[m]), String(a.readings)]),
    config: Charts.bar(body.assets.map((a) => a.asset_id), metrics.map((m, i) => ({ label: `${m} (${body.units[m]})`, data: body.assets.map((a) => Charts.num(a.metrics[m])), backgroundColor: colors[i % colors.length] })),
      "Asset", "Quantity (unit per metric)"),
  });
}

function renderHistory(body) {
  const cur = body.currency;
  const items = body.items;
  Charts.render("history-chart-slot", {
    id: "chart-history", title: `Invoice totals of the last twelve periods (${cur})`,
    summary: items.length ? `${items.length} ${items.length === 1 ? "invoice" : "invoices"}; latest ${items.at(-1).period}: ${money(items.at(-1).total, cur)}.` : "No invoices yet.",
    headers: ["Period", `Total (${cur})`, "Status"], rows: items.map((i) => [i.period, i.total, i.status]),
    config: Charts.bar(items.map((i) => i.period), [{ label: `Invoice total (${cur})`, data: items.map((i) => Charts.num(i.total)), backgroundColor: Charts.palette.accent2 }],
      "Billing period", cur, { plugins: { legend: { display: false } } }),
  });
}

async function renderInvoices(items) {
  const rows = await Promise.all(items.map(async (inv) => {
    const full = await api(`/v1/invoices/${encodeURIComponent(inv.id)}`);
    const deliveries = await api(`/v1/deliveries?invoice=${encodeURIComponent(inv.id)}`).catch(() => ({ items: [] }));
    const postings = (full.erp_refs || []).map((r) => `${r.target}: ${r.system} ${r.document_id}`)
      .concat(deliveries.items.filter((d) => !d.erp_ref).map((d) => `${d.target}: ${d.connector} ${d.state}`));
    const payments = (full.payments || []).map((p) => `${money(p.amount, inv.currency)} (${p.payment_id})`);
    return el("tr", { "data-invoice": inv.id },
      el("td", {}, el("a", { href: `#/invoices/${encodeURIComponent(inv.id)}` }, inv.id),
        full.payment_reference ? el("div", { class: "payref", "data-payment-reference": full.payment_reference }, `Payment reference ${full.payment_reference}`) : ""),
      el("td", {}, inv.period || ""),
      el("td", { class: "num" }, money(inv.total, inv.currency)),
      el("td", {}, el("span", { class: `status ${inv.status}` }, inv.status)),
      el("td", {}, postings.join("; ") || "—"), el("td", {}, payments.join("; ") || "—"),
      el("td", { class: "nowrap" }, el("button", { type: "button", class: "link", "data-proof": inv.id, "aria-label": `Download the proof of ${inv.id}`, onclick: () => download(`/v1/invoices/${encodeURIComponent(inv.id)}/proof`, `${inv.id}.proof.json`) }, "proof"),
        " · ", el("button", { type: "button", class: "link", "aria-label": `Download the e-invoice of ${inv.id}`, onclick: () => download(`/v1/invoices/${encodeURIComponent(inv.id)}/ubl`, `${inv.id}.xml`) }, "e-invoice")));
  }));
  const body = $("invoice-rows");
  body.replaceChildren(...rows);
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: "7" }, "No invoices yet: the period is still open.")));
}

// --- one invoice ---------------------------------------------------------------------------------------------

async function invoicePage(id) {
  show("invoice");
  clearInterval(state.timer);
  const inv = await api(`/v1/invoices/${encodeURIComponent(id)}`);
  const cur = inv.currency;
  $("invoice-title").textContent = `${inv.type === "credit_note" ? "Credit note" : "Invoice"} ${inv.id}`;
  $("invoice-back").href = `#/contracts/${encodeURIComponent(inv.contract_id)}`;
  const facts = [["Contract", inv.contract_id], ["Period", inv.period || "—"], ["Status", inv.status],
    ["Readings", String(inv.readings ?? "—")], ["Readings digest", inv.readings_digest || "—"],
    ["Ledger transaction", inv.tx_id ? `${inv.tx_id}${inv.block != null ? ` in block ${inv.block}` : ""}` : "—"]];
  $("invoice-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("invoice-lines").replaceChildren(...(inv.lines || []).map((l) => el("tr", {}, el("td", {}, l.charge_id),
    el("td", {}, l.model), el("td", {}, l.metric || "—"), el("td", { class: "num" }, l.quantity ?? "—"), el("td", { class: "num" }, money(l.amount, cur)))));
  const taxLabel = inv.tax_rate ? `Tax (${(Number(inv.tax_rate) * 100).toFixed(2).replace(/\.?0+$/, "")} %, ${inv.tax_category || ""})` : "Tax";
  $("invoice-totals").replaceChildren(...[["Subtotal", inv.subtotal], [taxLabel, inv.tax], ["Total", inv.total]].map(([k, v]) =>
    el("tr", {}, el("th", { scope: "row", colspan: "4" }, k), el("td", { class: "num" }, money(v, cur)))));
  const pay = [];
  if (inv.payment_reference) pay.push(el("dt", {}, "Payment reference"), el("dd", { id: "invoice-payment-reference" }, inv.payment_reference));
  const paid = (inv.payments || []).map((p) => p.amount);
  pay.push(el("dt", {}, "Paid"), el("dd", {}, paid.length ? money(decimalTotal(paid, true), cur) : "nothing yet"));
  $("invoice-payment").replaceChildren(...pay);
  const deliveries = await api(`/v1/deliveries?invoice=${encodeURIComponent(inv.id)}`).catch(() => ({ items: [] }));
  const postings = (inv.erp_refs || []).map((r) => `${r.target}: ${r.system} document ${r.document_id}`)
    .concat(deliveries.items.filter((d) => !d.erp_ref).map((d) => `${d.target}: ${d.connector} — ${d.state}`));
  $("invoice-postings").replaceChildren(...(postings.length ? postings : ["Not posted yet."]).map((t) => el("li", {}, t)));
  $("invoice-payments").replaceChildren(...((inv.payments || []).length ? inv.payments.map((p) => el("li", {}, `${money(p.amount, cur)} — ${p.payment_id}${p.source ? ` (${p.source})` : ""}`)) : [el("li", {}, "None recorded.")]));
  $("invoice-proof").onclick = () => download(`/v1/invoices/${encodeURIComponent(inv.id)}/proof`, `${inv.id}.proof.json`);
  $("invoice-ubl").onclick = () => download(`/v1/invoices/${encodeURIComponent(inv.id)}/ubl`, `${inv.id}.xml`);
  $("invoice-verify").onclick = () => verify(inv.id, $("invoice-report"));
  $("invoice-report").replaceChildren();
}

async function download(path, filename) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!response.ok) { alert(`Download failed: ${response.status}`); return; }
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function loadRules(contract) {
  const rules = await api(`/v1/contracts/${encodeURIComponent(contract.id)}/alert-rules`).catch(() => null);
  if (!rules) { $("rules-form").hidden = true; return; }
  $("rules-form").hidden = false;
  $("rule-budget").value = rules.budget || "";
  $("rule-usual").value = rules.usual_level || "";
  // one "usual use" field per metric of the contract (quantities, in the metric's unit)
  const levels = rules.usual_usage || {};
  $("rule-usage").replaceChildren(...Object.entries(contract.metrics || {}).flatMap(([metric, def]) => [
    el("label", { for: `rule-use-${metric}` }, `Usual use of ${metric}${def && def.unit ? ` (${def.unit})` : ""}`),
    el("input", { id: `rule-use-${metric}`, "data-metric": metric, inputmode: "decimal", pattern: "\\d+(\\.\\d+)?",
      value: levels[metric] || "" }),
  ]));
  $("rules-form").onsubmit = async (event) => {
    event.preventDefault();
    const body = { budget: $("rule-budget").value || null, usual_level: $("rule-usual").value || null };
    const usage = {};
    for (const input of $("rule-usage").querySelectorAll("input")) if (input.value) usage[input.dataset.metric] = input.value;
    body.usual_usage = Object.keys(usage).length ? usage : null;
    if ($("rule-hook").value) body.webhooks = [{ url: $("rule-hook").value, secret: $("rule-secret").value }];
    try {
      await api(`/v1/contracts/${encodeURIComponent(contract.id)}/alert-rules`, { method: "PUT", body: JSON.stringify(body) });
      $("rules-status").textContent = "Saved.";
      await refreshContract(contract);
    } catch (error) {
      $("rules-status").textContent = `Not saved: ${(error.problem && (error.problem.detail || error.problem.title)) || error.message}`;
    }
  };
}

// --- routing ----------------------------------------------------------------------------------------

async function route() {
  clearInterval(state.timer);
  if (!state.token) { show("sign-in"); return; }
  try {
    if (!state.me) {
      state.me = await api("/v1/portal/me");
      $("who").textContent = `${state.me.org} · ${state.me.role}`;
    }
    const contract = location.hash.match(/^#\/contracts\/(.+)$/);
    const invoice = location.hash.match(/^#\/invoices\/(.+)$/);
    if (contract) await contractPage(decodeURIComponent(contract[1]));
    else if (invoice) await invoicePage(decodeURIComponent(invoice[1]));
    else await home();
    $("main").focus();
  } catch (error) {
    if (error.message !== "unauthenticated") {
      clearInterval(state.timer);
      show("contracts");
      const problem = error.problem || {};
      $("contract-title").textContent = "";
      $("contract-rows").replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "error", role: "alert" },
        problem.title ? `${problem.title}: ${problem.detail || ""}` : error.message)));
    }
  }
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  try {
    await api("/v1/contracts");
    sessionStorage.setItem("ledgerhub.token", state.token);
    $("token").value = "";
    if (!location.hash) location.hash = "#/contracts"; else route();
  } catch (error) {
    if (error.message !== "unauthenticated") $("sign-in-error").textContent = error.message;
  }
});
$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
