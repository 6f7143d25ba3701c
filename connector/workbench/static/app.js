// Compare and Judge: the search form, both columns, re-fusion on the slider, keyboard grading.
import { api, download, setToken, token } from "./api.js";
import { showEvaluate } from "./evaluate.js";
import { refuse } from "./fusion.js";

const $ = (id) => document.getElementById(id);
const state = { indices: [], result: null, grades: {}, timings: {} };
window.__workbench = state; // read by the browser tests (timings, last result)

const fmt = (v, digits = 3) => (typeof v === "number" ? v.toFixed(digits) : "–");

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((v) => new Option(v, v, false, v === chosen)));
}

function fillFields() {
  const index = state.indices.find((i) => i.name === $("index").value);
  fillSelect($("field"), index ? index.text_fields : []);
  const vectors = index ? index.vector_fields : [];
  fillSelect($("vector-field"), vectors);
  $("vector-controls").hidden = !vectors.length; // kNN only where the index has vectors
}

function firstStage() {
  const kind = $("first-stage-kind").value;
  if ($("vector-controls").hidden || kind === "bm25") return {};
  return { first_stage: kind, vector_field: $("vector-field").value,
    query_vector: JSON.parse($("query-vector").value) };
}

function movement(row, shown) {
  if (row.first_stage_rank > shown) return { text: "new", label: "new in the top", cls: "new" };
  const moved = row.first_stage_rank - row.rank;
  if (moved > 0) return { text: `↑${moved}`, label: `up ${moved}`, cls: "up" };
  if (moved < 0) return { text: `↓${-moved}`, label: `down ${-moved}`, cls: "down" };
  return { text: "=", label: "unchanged", cls: "same" };
}

function scoreList(row, fused) {
  const dl = document.createElement("dl");
  const pairs = fused
    ? [["first stage", fmt(row.first_stage_score)], ["answer N", row.answer ?? "–"],
      ["Pr(N)", fmt(row.answer_probability)], ["rank score", fmt(row.rank_score)],
      ["hybrid", fmt(row.hybrid_score)], ["status", row.completion === "full"
        ? row.status : `${row.status}, ${row.completion}`]]
    : [["score", fmt(row.score)]];
  for (const [name, value] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    dl.append(dt, dd);
  }
  return dl;
}

function gradeSelect(id) {
  const select = document.createElement("select");
  select.className = "grade";
  select.setAttribute("aria-label", `grade for ${id}`);
  select.append(new Option("ungraded", ""), ...[0, 1, 2, 3].map((g) => new Option(String(g), g)));
  select.value = id in state.grades ? String(state.grades[id]) : "";
  select.addEventListener("change", () => judge(id, select.value === "" ? null : +select.value));
  return select;
}

function reasons(li, row, n) {
  const button = document.createElement("button");
  const pre = document.createElement("pre");
  pre.id = `reasons-${li.parentElement?.id ?? "x"}-${n}`;
  pre.className = "reasoning";
  pre.hidden = true;
  pre.textContent = row.reasoning || "(no reasoning returned)";
  button.type = "button";
  button.className = "reasons";
  button.textContent = "Reasons";
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-label", `reasons for ${row.id}`);
  button.setAttribute("aria-controls", pre.id);
  button.addEventListener("click", () => {
    pre.hidden = !pre.hidden;
    button.setAttribute("aria-expanded", String(!pre.hidden));
  });
  return [button, pre];
}

function hitItem(list, row, n, fused, shown) {
  const li = document.createElement("li");
  list.append(li);
  li.tabIndex = 0;
  li.dataset.doc = row.id;
  li.setAttribute("aria-label", `${row.rank}. ${row.id}`);
  const head = document.createElement("div");
  head.className = "head";
  const id = document.createElement("strong");
  id.textContent = row.id;
  head.append(id);
  if (fused) {
    const m = movement(row, shown);
    const badge = document.createElement("span");
    badge.className = `move ${m.cls}`;
    badge.textContent = m.text;
    badge.title = m.label;
    head.prepend(badge);
  }
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = row.text ?? "(no text)";
  li.append(head, text, scoreList(row, fused), gradeSelect(row.id));
  if (fused && row.reasoning !== undefined) li.append(...reasons(li, row, n));
}

function fusedRows() {
  const r = state.result;
  if (r.erank.status !== "reranked") return r.reranked;
  const alpha = +$("alpha").value;
  const method = $("fusion").value;
  if (alpha === r.alpha && method === r.fusion) return r.reranked;
  return refuse(r.reranked, alpha, method, r.rank_constant).map((row, i) => ({ ...row, rank: i + 1 }));
}

function banner(status) {
  const el = $("banner");
  const cut = status.completions ? status.completions.cut + status.completions.unscored : 0;
  if (status.status === "failed") {
    el.textContent = `Reranking failed open (${status.error.type}): ${status.error.reason}. `
      + "The ERank column shows the engine's own order.";
  } else if (cut > 0) {
    el.textContent = `${cut} hit(s) were cut by the search's budget of ${$("budget").value} ms:`
      + " their reasoning was closed early (completion: cut or unscored).";
  } else {
    el.hidden = true;
    return;
  }
  el.hidden = false;
}

function render() {
  const r = state.result;
  const shown = Math.max(1, +$("shown").value || 10);
  const fusedOk = r.erank.status === "reranked";
  for (const [list, rows, fused] of [["first-stage", r.first_stage, false],
    ["fused", fusedRows(), fusedOk]]) {
    $(list).replaceChildren();
    rows.slice(0, shown).forEach((row, n) => hitItem($(list), row, n, fused, shown));
  }
  banner(r.erank);
  const e = r.erank;
  $("timings").textContent = `first stage ${fmt(e.first_stage_ms, 1)} ms · rerank `
    + `${fmt(e.rerank_ms, 1)} ms · cache hits ${e.completions ? e.completions.cached : 0}`
    + ` · in the browser ${fmt(state.timings.query_ms, 0)} ms`;
}

async function loadGrades() {
  const q = new URLSearchParams({ index: $("index").value, field: $("field").value,
    query: $("query").value });
  state.grades = (await api("GET", `/api/judgments?${q}`)).grades;
}

async function judge(doc, grade) {
  const answer = await api("PUT", "/api/judgments", { index: state.result.index,
    field: state.result.field, query: state.result.query, doc_id: doc, grade });
  state.grades = answer.grades;
  for (const select of document.querySelectorAll(`li[data-doc="${CSS.escape(doc)}"] select.grade`)) {
    select.value = grade === null ? "" : String(grade);
  }
}

export async function search() {
  const began = performance.now();
  $("banner").hidden = true;
  try {
    const body = { index: $("index").value, field: $("field").value, query: $("query").value,
      window: +$("window").value, fusion: $("fusion").value, alpha: +$("alpha").value,
      budget_ms: +$("budget").value, ...firstStage() };
    if ($("preset").value) body.instruction_preset = $("preset").value;
    const [result] = await Promise.all([api("POST", "/api/compare", body), loadGrades()]);
    state.result = result;
    render();
    state.timings.query_ms = performance.now() - began;
    render();
    document.body.dataset.searches = String(+(document.body.dataset.searches || 0) + 1);
  } catch (err) {
    $("banner").textContent = `Search failed: ${err.message}`;
    $("banner").hidden = false;
  }
}

function onKey(event) {
  const li = event.target;
  if (!(li instanceof HTMLLIElement) || !li.dataset.doc) return;
  const key = event.key;
  if (key === "j" || key === "k") {
    const next = key === "j" ? li.nextElementSibling : li.previousElementSibling;
    if (next) next.focus();
  } else if (["0", "1", "2", "3"].includes(key)) {
    judge(li.dataset.doc, +key);
  } else if (key === "r") {
    li.querySelector("button.reasons")?.click();
  } else {
    return;
  }
  event.preventDefault();
}

export function openCompare(index, field, query) {
  showTab("compare");
  $("index").value = index;
  fillFields();
  $("field").value = field;
  $("query").value = query;
  return search();
}

function showTab(name) {
  for (const tab of ["compare", "evaluate"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`view-${tab}`).hidden = tab !== name;
  }
}

async function start() {
  $("token").value = token();
  const info = await api("GET", "/api/info");
  $("banner").hidden = true; // a refusal before the token was typed is over
  $("connection").textContent = `engine ${info.engine} · scoring server ${info.reranker}`
    + ` · workspace ${info.workspace}`;
  fillSelect($("fusion"), info.fusion_methods, "zscore");
  $("preset").replaceChildren(new Option("server default", ""),
    ...info.presets.map((p) => new Option(p, p)));
  state.indices = (await api("GET", "/api/indices")).indices.filter((i) => i.text_fields.length);
  fillSelect($("index"), state.indices.map((i) => i.name));
  fillFields();
  state.timings.ready_ms = performance.now(); // from navigation start: the page is usable
  document.body.dataset.ready = "1";
}

function wire() {
  $("index").addEventListener("change", fillFields);
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("alpha").addEventListener("input", () => {
    $("alpha-value").value = (+$("alpha").value).toFixed(2);
    if (state.result) render();
  });
  $("fusion").addEventListener("change", () => { if (state.result) render(); });
  $("shown").addEventListener("change", () => { if (state.result) render(); });
  $("token").addEventListener("change", () => { setToken($("token").value); start().catch(failed); });
  $("export").addEventListener("click", (e) => {
    if (!token()) return; // the plain link works without a token
    e.preventDefault();
    download("/api/qrels", "qrels.txt");
  });
  $("tab-compare").addEventListener("click", () => showTab("compare"));
  $("tab-evaluate").addEventListener("click", () => showTab("evaluate"));
  document.addEventListener("keydown", onKey);
  showEvaluate(openCompare);
}

function failed(err) {
  $("banner").textContent = `Cannot start: ${err.message}`;
  $("banner").hidden = false;
  document.body.dataset.ready = "error";
}

wire();
start().catch(failed);
