// LedgerHub portal: plain JavaScript, no build step. Every number on the page comes from the REST API
// with the signed-in token, so the page can show only what that token may see.
"use strict";

const REFRESH_MS = 4000;
const state = { token: sessionStorage.getItem("ledgerhub.token"), timer: null };
const $ = (id) => document.getElementById(id);

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

// Amounts arrive as the ledger's decimal strings, already in the currency's minor units ("100.00" EUR,
// "5000" JPY): they are grouped for reading, never converted to a float and re-rounded ("100" for 100.00).
function money(amount, currency) {
  if (amount === null || amount === undefined) return "—";
  const text = String(amount).trim();
  const match = /^([-+]?)(\d+)(\.\d+)?$/.exec(text);
  if (!match) return `${text} ${currency || ""}`;
  const grouped = match[2].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${match[1] === "-" ? "-" : ""}${grouped}${match[3] || ""} ${currency || ""}`;
}

function show(section) {
  for (const id of ["sign-in", "contracts", "contract"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "sign-in";
}

function signOut(message) {
  sessionStorage.removeItem("ledgerhub.token");
  state.token = null;
  clearInterval(state.timer);
  $("who").textContent = "";
  show("sign-in");
  $("sign-in-error").textContent = message || "";
}

// --- pages ----------------------------------------------------------------------------------------

async function contractsPage() {
  show("contracts");
  const { items } = await api("/v1/contracts");
  const rows = $("contract-rows");
  rows.replaceChildren(...items.map((c) => el("tr", {},
    el("td", {}, el("a", { href: `#/contracts/${encodeURIComponent(c.id)}` }, c.id)),
    el("td", {}, c.provider), el("td", {}, c.customer), el("td", {}, c.status), el("td", {}, c.currency || ""))));
  if (!items.length) rows.append(el("tr", {}, el("td", { colspan: "5" }, "No contracts visible to this token.")));
}

async function contractPage(id) {
  show("contract");
  const contract = await api(`/v1/contracts/${encodeURIComponent(id)}`);
  $("contract-title").textContent = `Contract ${contract.id}`;
  $("contract-sub").textContent = `${contract.provider} → ${contract.customer} · ${contract.currency} · ` +
    `${contract.timezone} · ${contract.status}`;
  await refreshContract(contract);
  loadRules(contract);
  clearInterval(state.timer);
  state.timer = setInterval(() => refreshContract(contract).catch(() => {}), REFRESH_MS);
}

async function refreshContract(contract) {
  const id = encodeURIComponent(contract.id);
  const [usage, series, invoices, alerts, rules] = await Promise.all([
    api(`/v1/contracts/${id}/usage`), api(`/v1/contracts/${id}/usage/series`),
    api(`/v1/invoices?contract=${id}`), api(`/v1/alerts?contract=${id}`),
    api(`/v1/contracts/${id}/alert-rules`).catch(() => null),
  ]);
  const cost = usage.cost || {};
  $("cost-to-date").textContent = money(cost.total, contract.currency);
  const count = usage.aggregate ? usage.aggregate.readings : 0;
  $("cost-sub").textContent = `${count} ${count === 1 ? "reading" : "readings"} in ${usage.period}`;
  const f = usage.forecast;
  $("forecast").textContent = f ? money(f.total, contract.currency) : "—";
  $("forecast-sub").textContent = f ? `run rate after ${(Number(f.elapsed_fraction) * 100).toFixed(0)}% of the period` : "no forecast";
  $("budget").textContent = rules && rules.budget ? money(rules.budget, contract.currency) : "not set";
  $("budget-sub").textContent = rules && rules.usual_level ? `usual: ${money(rules.usual_level, contract.currency)}` : "";
  renderAlerts(alerts.alerts);
  renderCharts(series);
  await renderInvoices(invoices.items, contract);
}

function renderAlerts(alerts) {
  $("alerts").replaceChildren(...alerts.map((a) => el("div", { class: `alert${a.kind.startsWith("budget_80") ? " warn" : ""}` },
    el("strong", {}, a.kind.replaceAll("_", " ") + (a.metric ? ` (${a.metric})` : "")), ": ", a.message)));
}

function renderCharts(series) {
  const charts = $("charts");
  charts.replaceChildren();
  for (const [metric, data] of Object.entries(series.metrics)) {
    const values = data.values.map((v) => (v === null ? 0 : Number(v)));
    const max = Math.max(1e-9, ...values);
    const total = values.reduce((a, b) => a + b, 0);
    if (total === 0) {
      charts.append(el("figure", { class: "chart empty", "data-metric": metric },
        el("figcaption", {}, `${metric} (${data.aggregation}) — no readings this period`)));
      continue;
    }
    const w = 100 / values.length;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 100 40");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${metric}: daily usage in ${series.period}, total ${total} ${data.unit}`);
    values.forEach((v, i) => {
      const h = (v / max) * 36;
      const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      Object.entries({ x: i * w + w * 0.1, y: 38 - h, width: w * 0.8, height: h }).forEach(([k, val]) => r.setAttribute(k, val));
      const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
      t.textContent = `${series.days[i]}: ${v} ${data.unit}`;
      r.append(t);
      svg.append(r);
    });
    const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Day"), el("th", { scope: "col", class: "num" }, data.unit))),
      el("tbody", {}, ...series.days.map((d, i) => data.values[i] === null ? null : el("tr", {}, el("td", {}, d), el("td", { class: "num" }, data.values[i]))).filter(Boolean)));
    charts.append(el("figure", { class: "chart", "data-metric": metric },
      el("figcaption", {}, `${metric} (${data.aggregation}) — ${total} ${data.unit} this period`), svg,
      el("details", {}, el("summary", {}, `${metric} as a table`), table)));
  }
}

async function renderInvoices(items, contract) {
  const rows = await Promise.all(items.map(async (inv) => {
    const full = await api(`/v1/invoices/${encodeURIComponent(inv.id)}`);
    const deliveries = await api(`/v1/deliveries?invoice=${encodeURIComponent(inv.id)}`).catch(() => ({ items: [] }));
    const postings = (full.erp_refs || []).map((r) => `${r.target}: ${r.system} ${r.document_id}`)
      .concat(deliveries.items.filter((d) => !d.erp_ref).map((d) => `${d.target}: ${d.connector} ${d.state}`));
    const payments = (full.payments || []).map((p) => `${money(p.amount, inv.currency)} (${p.payment_id})`);
    return el("tr", { "data-invoice": inv.id },
      el("td", {}, inv.id, full.payment_reference ? el("div", { class: "payref", "data-payment-reference": full.payment_reference }, `Payment reference ${full.payment_reference}`) : ""), el("td", {}, inv.period), el("td", { class: "num" }, money(inv.total, inv.currency)),
      el("td", {}, el("span", { class: `status ${inv.status}` }, inv.status)),
      el("td", {}, postings.join("; ") || "—"), el("td", {}, payments.join("; ") || "—"),
      el("td", {}, el("button", { type: "button", class: "link", "data-proof": inv.id, onclick: () => download(`/v1/invoices/${encodeURIComponent(inv.id)}/proof`, `${inv.id}.proof.json`) }, "proof"),
        " · ", el("button", { type: "button", class: "link", onclick: () => download(`/v1/invoices/${encodeURIComponent(inv.id)}/ubl`, `${inv.id}.xml`) }, "e-invoice")));
  }));
  const body = $("invoice-rows");
  body.replaceChildren(...rows);
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: "7" }, "No invoices yet: the period is still open.")));
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
  const match = location.hash.match(/^#\/contracts\/(.+)$/);
  try {
    if (match) await contractPage(decodeURIComponent(match[1])); else await contractsPage();
    $("main").focus();
  } catch (error) {
    if (error.message !== "unauthenticated") {
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
    $("who").textContent = "Signed in";
    if (!location.hash) location.hash = "#/contracts"; else route();
  } catch (error) {
    if (error.message !== "unauthenticated") $("sign-in-error").textContent = error.message;
  }
});
$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
