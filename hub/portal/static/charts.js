// LedgerHub portal charts: Chart.js (pinned in hub/portal/assets, served by the hub) drawing into a
// <figure> that also carries a text summary and a table of the same numbers, for screen readers and for
// anyone who wants the figures. A chart that exists is updated in place (live updates), never rebuilt.
"use strict";

const Charts = (() => {
  const registry = new Map();
  // the box sets the height; no animation, so a live update moves the chart at once
  const BASE = { responsive: true, maintainAspectRatio: false, animation: false };
  const palette = { ink: "#1b1f24", muted: "#57606a", accent: "#0b5fad", accent2: "#8a4f00", bad: "#a40e26",
    band: "rgba(11, 95, 173, 0.22)", grid: "#d0d7de" };

  function node(tag, attrs = {}, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    for (const c of children) n.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
    return n;
  }

  function axes(xTitle, yTitle) {
    const font = { size: 12 };
    return {
      x: { title: { display: true, text: xTitle, color: palette.ink, font }, ticks: { color: palette.muted, autoSkip: true, maxRotation: 0 },
        grid: { color: palette.grid } },
      y: { title: { display: true, text: yTitle, color: palette.ink, font }, ticks: { color: palette.muted }, beginAtZero: true,
        grid: { color: palette.grid } },
    };
  }

  function table(caption, headers, rows) {
    return node("table", {}, node("caption", {}, caption),
      node("thead", {}, node("tr", {}, ...headers.map((h, i) => node("th", { scope: "col", class: i ? "num" : "" }, h)))),
      node("tbody", {}, ...rows.map((r) => node("tr", {}, ...r.map((c, i) => node(i ? "td" : "th", i ? { class: "num" } : { scope: "row" }, c ?? "—"))))));
  }

  // spec: {id, title, summary, headers, rows, config (Chart.js), height}
  function render(slot, spec) {
    const existing = registry.get(spec.id);
    if (existing && document.body.contains(existing.figure)) {
      existing.summary.textContent = spec.summary;
      existing.canvas.setAttribute("aria-label", `${spec.title}. ${spec.summary}`);
      existing.details.replaceChildren(node("summary", {}, `${spec.title}: the figures`),
        node("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": `${spec.title} table` },
          table(spec.title, spec.headers, spec.rows)));
      if (existing.chart) {
        existing.chart.data = spec.config.data;
        existing.chart.options = { ...BASE, ...spec.config.options };
        existing.chart.update("none");
      }
      return existing;
    }
    const canvas = node("canvas", { role: "img", "aria-label": `${spec.title}. ${spec.summary}`, id: `${spec.id}-canvas` });
    const summary = node("p", { class: "summary", id: `${spec.id}-summary` }, spec.summary);
    const details = node("details", {}, node("summary", {}, `${spec.title}: the figures`),
      node("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": `${spec.title} table` },
        table(spec.title, spec.headers, spec.rows)));
    const box = node("div", { class: "canvas-box", style: `height:${spec.height || 260}px` }, canvas);
    const figure = node("figure", { class: "chart", id: spec.id, "data-chart": spec.id },
      node("figcaption", {}, spec.title), box, summary, details);
    const target = typeof slot === "string" ? document.getElementById(slot) : slot;
    target.append(figure);
    let chart = null;
    if (window.Chart) {
      spec.config.options = { ...BASE, ...spec.config.options };
      chart = new window.Chart(canvas, spec.config);
    } else {
      box.replaceChildren(node("p", { class: "error" }, "Charts are unavailable (the charting library did not load); the figures are below."));
      details.open = true;
    }
    const entry = { figure, canvas, summary, details, chart };
    registry.set(spec.id, entry);
    return entry;
  }

  function clear(slot) {
    const target = document.getElementById(slot);
    for (const fig of target.querySelectorAll("figure[data-chart]")) {
      const entry = registry.get(fig.id);
      if (entry && entry.chart) entry.chart.destroy();
      registry.delete(fig.id);
    }
    target.replaceChildren();
  }

  const num = (v) => (v === null || v === undefined ? null : Number(v));
  // the band's lower edge is drawn (the fill needs it) but not listed: "Forecast range" names the band
  const legend = { labels: { color: palette.ink, usePointStyle: true, filter: (item) => !item.text.endsWith("(low)") } };

  function line(labels, datasets, xTitle, yTitle) {
    return { type: "line", data: { labels, datasets }, options: { scales: axes(xTitle, yTitle), plugins: { legend },
      interaction: { mode: "index", intersect: false }, spanGaps: false } };
  }

  function bar(labels, datasets, xTitle, yTitle, extra = {}) {
    return { type: "bar", data: { labels, datasets }, options: { scales: axes(xTitle, yTitle), plugins: { legend }, ...extra } };
  }

  return { render, clear, line, bar, num, palette, registry };
})();
