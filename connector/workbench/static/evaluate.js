// Evaluate: run erank eval on the judged queries (or open an earlier run's folder); per-query
// nDCG@10 sortable by column, the alpha sweep as a chart, a click from a query into Compare.
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
const COLUMNS = [["qid", "query id"], ["query", "query"], ["first_stage", "first stage"],
  ["erank", "ERank"], ["hybrid", "hybrid"], ["gain", "gain (hybrid − first stage)"]];
let view = null;
let sortKey = "gain";
let descending = true;

const fmt = (v) => (typeof v === "number" ? v.toFixed(4) : String(v ?? ""));

function header(key, label) {
  const th = document.createElement("th");
  th.scope = "col";
  if (key === sortKey) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.setAttribute("aria-label", `sort by ${label}`);
  button.addEventListener("click", () => {
    descending = key === sortKey ? !descending : true;
    sortKey = key;
    render();
  });
  th.append(button);
  return th;
}

function row(q, openCompare) {
  const tr = document.createElement("tr");
  tr.dataset.qid = q.qid;
  for (const [key] of COLUMNS) {
    const td = document.createElement("td");
    if (key === "query") {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = q.query;
      button.setAttribute("aria-label", `open ${q.query} in Compare`);
      button.addEventListener("click", () => openCompare(q.index, q.field, q.query));
      td.append(button);
    } else {
      td.textContent = fmt(q[key]);
      if (key !== "qid") td.className = "num";
    }
    tr.append(td);
  }
  return tr;
}

function chart(sweep, mean) {
  const w = 420, h = 200, pad = 32;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${view.measure} of the hybrid against alpha`);
  const x = (a) => pad + a * (w - 2 * pad);
  const y = (v) => h - pad - v * (h - 2 * pad);
  const line = (points, cls) => {
    const path = document.createElementNS(ns, "polyline");
    path.setAttribute("points", points.map(([a, v]) => `${x(a)},${y(v)}`).join(" "));
    path.setAttribute("class", cls);
    svg.append(path);
  };
  line([[0, 0], [1, 0]], "axis");
  line([[0, mean.first_stage], [1, mean.first_stage]], "baseline first");
  line([[0, mean.erank], [1, mean.erank]], "baseline erank");
  line(sweep.map((s) => [s.alpha, s.value]), "sweep");
  for (const [a, label] of [[0, "α 0"], [1, "α 1"]]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x(a));
    t.setAttribute("y", h - 8);
    t.textContent = label;
    svg.append(t);
  }
  return svg;
}

let open = () => {};

function render() {
  const out = $("eval-result");
  out.replaceChildren();
  if (!view) return;
  const summary = document.createElement("p");
  summary.id = "eval-mean";
  summary.textContent = `mean ${view.measure}: first stage ${fmt(view.mean.first_stage)}, `
    + `ERank ${fmt(view.mean.erank)}, hybrid (alpha ${view.alpha}) ${fmt(view.mean.hybrid)}`
    + ` · ${view.folder}`;
  const table = document.createElement("table");
  table.id = "eval-table";
  const caption = document.createElement("caption");
  caption.textContent = `${view.measure} per judged query`;
  const head = document.createElement("tr");
  head.append(...COLUMNS.map(([k, l]) => header(k, l)));
  const rows = [...view.queries].sort((a, b) => {
    const d = a[sortKey] < b[sortKey] ? -1 : a[sortKey] > b[sortKey] ? 1 : 0;
    return descending ? -d : d;
  });
  table.append(caption, head, ...rows.map((q) => row(q, open)));
  out.append(summary, table);
  if (view.sweep.length) out.append(chart(view.sweep, view.mean));
}

async function run(promise) {
  $("eval-status").textContent = "working…";
  try {
    view = await promise;
    $("eval-status").textContent = "";
  } catch (err) {
    $("eval-status").textContent = `Evaluation failed: ${err.message}`;
  }
  render();
}

export function showEvaluate(openCompare) {
  open = openCompare;
  $("evaluate-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(api("POST", "/api/evaluate", { depth: +$("depth").value, alpha: +$("eval-alpha").value }));
  });
  $("open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const folder = $("folder").value;
    run(api("GET", `/api/evaluation${folder ? `?folder=${encodeURIComponent(folder)}` : ""}`));
  });
}
