// searche1 view: one page, hash routes, everything from the JSON API of view/app.py. No build step, no library.
"use strict";

const main = document.getElementById("main");
let RUN = null;

const esc = (s) => String(s ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (x, d) => (x === null || x === undefined ? "-" : Number(x).toFixed(d));
const emCell = (em) => `<span class="${em > 0 ? "em1" : "em0"}">${num(em, 1)}</span>`;

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const response = await fetch(path + (query.toString() ? "?" + query : ""));
  const body = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function go(route, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  location.hash = `#/${route}` + (query.toString() ? "?" + query : "");
}

function tableHtml(table, id) {
  const head = table.columns.map((c) => `<th>${esc(c)}</th>`).join("");
  const rows = table.rows.map((r) => "<tr>" + r.map((c) => `<td>${esc(c)}</td>`).join("") + "</tr>").join("");
  return `<h2>${esc(table.title)}</h2><table id="${id}"><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}

async function showOverview() {
  RUN = await api("/api/run");
  const ids = ["em-table", "cost-table", "pairs-table"];
  const figures = ["em_by_phase", "behaviour_by_phase", "cost_by_phase", "grpo_curves", "ofsd_curves"];
  main.innerHTML = RUN.tables.map((t, i) => tableHtml(t, ids[i] || `table-${i}`)).join("") +
    `<h2>Figures</h2><div class="figures">` +
    figures.map((f) => `<img id="fig-${f}" alt="${f}" src="/api/figure/${f}.svg" onerror="this.remove()">`).join("") +
    `</div>`;
}

function options(values, selected, labels = {}) {
  return values.map((v) => `<option value="${esc(v)}"${String(v) === String(selected ?? "") ? " selected" : ""}>` +
    `${esc(labels[v] ?? v)}</option>`).join("");
}

function pager(paging, onPage) {
  const div = document.createElement("div");
  div.className = "pager";
  const page = Number(paging.page);
  div.innerHTML = `<button data-p="${page - 1}" ${page <= 1 ? "disabled" : ""}>previous</button>` +
    `<span>page ${esc(page)} of ${esc(paging.pages)} (${esc(paging.total)} in all)</span>` +
    `<button data-p="${page + 1}" ${page >= Number(paging.pages) ? "disabled" : ""}>next</button>`;
  div.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => onPage(Number(b.dataset.p))));
  return div;
}

async function showTrajectories(p) {
  RUN = await api("/api/run");  // again: a run still training adds phases
  const source = p.source || "eval";
  const phases = RUN.phases.filter((ph) => ph.sources.includes(source));
  const phase = phases.some((ph) => ph.key === p.phase) ? p.phase : "all";  // e.g. a base phase has no pool
  const data = await api("/api/trajectories", { ...p, phase, source });
  const filters = { phase, source, benchmark: p.benchmark, correct: p.correct, searches: p.searches };
  const benchmarks = [...new Set(["", ...data.benchmarks, p.benchmark || ""])];  // a kept filter stays shown
  const counts = [...new Set(["", ...data.search_counts.map(String), p.searches || ""])];
  main.innerHTML = `<div class="filters">
    <label>phase <select id="f-phase">${options(["all", ...phases.map((ph) => ph.key)], filters.phase,
      { all: "all phases" })}</select></label>
    <label>trajectories <select id="f-source">${options(["eval", "pool"], source,
      { eval: "greedy evaluation", pool: "OFSD rollout pool" })}</select></label>
    <label>benchmark <select id="f-benchmark">${options(benchmarks, filters.benchmark,
      { "": "any" })}</select></label>
    <label>answer <select id="f-correct">${options(["", "true", "false"], filters.correct,
      { "": "any", true: "correct (EM 1)", false: "incorrect (EM 0)" })}</select></label>
    <label>searches <select id="f-searches">${options(counts, filters.searches,
      { "": "any" })}</select></label></div>`;
  for (const name of ["phase", "source", "benchmark", "correct", "searches"]) {
    document.getElementById(`f-${name}`).addEventListener("change", (e) =>
      go("trajectories", { ...filters, [name]: e.target.value, page: 1 }));
  }
  const table = document.createElement("table");
  table.id = "traj-table";
  table.innerHTML = `<thead><tr><th>phase</th><th>benchmark</th><th>question</th><th>sample</th><th>answer</th>
    <th>gold</th><th>EM</th><th>searches</th><th>tokens</th></tr></thead><tbody>` +
    data.rows.map((r) => `<tr class="clickable" data-phase="${esc(r.phase)}" data-index="${esc(r.index)}">
      <td>${esc(r.phase)}</td><td class="text">${esc(r.benchmark)}</td><td class="text">${esc(r.question)}</td>
      <td>${esc(r.sample_index)}</td><td class="text">${esc(r.answer)}</td><td class="text">${esc(r.golden_answers.join(" | "))}</td>
      <td>${emCell(r.em)}</td><td>${esc(r.searches)}</td><td>${esc(r.generated_tokens)}</td></tr>`).join("") + "</tbody>";
  table.querySelectorAll("tr.clickable").forEach((tr) => tr.addEventListener("click", () =>
    go("trajectory", { phase: tr.dataset.phase, source, index: tr.dataset.index })));
  const onPage = (page) => go("trajectories", { ...filters, page });
  main.append(pager(data, onPage), table, pager(data, onPage));
}

function highlightTags(text) {
  return esc(text).replace(/&lt;(\/?)(think|search|answer)&gt;/g, '<span class="tag">&lt;$1$2&gt;</span>');
}

function tokensHtml(tokens, tau, scale) {
  return tokens.map(([piece, kl]) => {
    if (kl === null) return `<span class="inserted-token">${esc(piece)}</span>`;  // not sampled: no KL
    const clipped = tau === null ? kl : Math.min(kl, tau);
    const alpha = (0.85 * Math.sqrt(clipped / scale)).toFixed(3);  // sqrt: one clipped token must not wash out the rest
    return `<span class="tok" style="background: rgba(230, 60, 30, ${alpha})" title="KL ${esc(kl.toFixed(4))}` +
      `${tau !== null && kl > tau ? ` (clipped to ${esc(tau)})` : ""}">${esc(piece)}</span>`;
  }).join("");
}

function trajectoryHtml(t, kl = null) {
  const turns = t.turns.map((turn) => {
    const text = kl && turn.tokens ? tokensHtml(turn.tokens, kl.tau, kl.scale) : highlightTags(turn.text);
    let observation = "";
    if (turn.observation !== null) {
      const docs = turn.documents.length
        ? turn.documents.map((d) => `<div class="doc">${esc(d)}</div>`).join("")
        : `<div class="doc">${esc(turn.observation)}</div>`;
      const label = turn.action === "search"
        ? `retrieved for "${esc(turn.query)}": ${turn.documents.length} documents`
        : "engine message";
      observation = `<details class="observation"><summary>${label} (inserted by the engine, masked from the loss)` +
        `</summary>${docs}</details>`;
    }
    return `<div class="turn"><div class="turn-head">turn ${esc(turn.turn)} · ${esc(turn.action)}` +
      `${turn.query !== null ? ` · query: <b>${esc(turn.query)}</b>` : ""}</div>` +
      `<div class="model-text">${text}</div>${observation}</div>`;
  }).join("");
  const stray = t.unclaimed_text.map((u) => u.sampled
    ? `<div class="turn"><div class="turn-head">model text outside any turn</div><div class="model-text">${esc(u.text)}</div></div>`
    : `<details class="observation"><summary>inserted text outside any turn</summary><div class="doc">${esc(u.text)}</div></details>`
  ).join("");
  return `<div class="card"><div class="meta"><span>${esc(t.benchmark)} · ${esc(t.group_id)} #${esc(t.sample_index)}</span>
      <span>EM ${emCell(t.em)}</span><span>F1 ${num(t.f1, 2)}</span><span>${esc(t.searches)} searches</span>
      <span>${esc(t.generated_tokens)} generated tokens</span><span>finish: ${esc(t.finish_reason)}</span></div>
    <p class="question"><b>Question:</b> ${esc(t.question)}</p>
    <details><summary class="muted">prompt as the model saw it</summary><pre class="privileged">${esc(t.prompt_text)}</pre></details>
    ${turns}${stray}
    <p class="answer-box"><b>Answer:</b> <span class="answer">${esc(t.answer ?? "(none)")}</span> · <b>gold:</b>
      <span class="gold">${esc(t.golden_answers.join(" | "))}</span> · EM ${emCell(t.em)}</p></div>`;
}

async function showTrajectory(p) {
  const t = await api("/api/trajectory", p);
  main.innerHTML = `<p><a href="javascript:history.back()">&larr; back</a> · phase ${esc(t.phase)} · ` +
    `${t.source === "pool" ? "OFSD rollout pool" : "greedy evaluation"} · trajectory ${esc(Number(t.index) + 1)}</p>` +
    `<div id="trajectory">${trajectoryHtml(t)}</div>`;
}

async function showPairs(p) {
  RUN = await api("/api/run");
  const phases = RUN.phases.filter((ph) => ph.pairs);
  if (!phases.length) {
    main.innerHTML = `<p class="muted">This run has no OFSD phase with pairs.</p>`;
    return;
  }
  const phase = p.phase || phases[0].key;
  const data = await api("/api/pairs", { phase, page: p.page });
  main.innerHTML = `<div class="filters"><label>OFSD phase <select id="f-phase">` +
    `${options(phases.map((ph) => ph.key), phase)}</select></label></div>`;
  document.getElementById("f-phase").addEventListener("change", (e) => go("pairs", { phase: e.target.value }));
  const table = document.createElement("table");
  table.id = "pairs-list";
  table.innerHTML = `<thead><tr><th>#</th><th>question</th><th>reference</th><th>student</th><th>student KL</th>
    <th>searches (ref / student)</th></tr></thead><tbody>` + data.rows.map((r) =>
    `<tr class="clickable" data-index="${esc(r.index)}"><td>${esc(Number(r.index) + 1)}</td>
      <td class="text">${esc(r.question ?? r.group_id)}</td>
      <td>#${esc(r.reference)} ${emCell(r.reference_em)}</td><td>#${esc(r.student)} ${emCell(r.student_em)}</td>
      <td>${num(r.student_kl, 3)}</td><td>${esc(r.reference_searches)} / ${esc(r.student_searches)}</td></tr>`).join("") +
    "</tbody>";
  table.querySelectorAll("tr.clickable").forEach((tr) => tr.addEventListener("click", () =>
    go("pair", { phase, index: tr.dataset.index })));
  main.append(pager(data, (page) => go("pairs", { phase, page })), table);
}

async function showPair(p) {
  const pair = await api("/api/pair", p);
  let kl = null;
  let legend = `<p class="muted">This run's pairs.jsonl has no per-token KL (written before the viewer existed).</p>`;
  if (pair.has_token_kl) {
    const tau = pair.tau_clip === null ? null : Number(pair.tau_clip);
    const values = pair.student.turns.flatMap((t) => (t.tokens || []).filter(([, v]) => v !== null)
      .map(([, v]) => (tau === null ? v : Math.min(v, tau))));
    const scale = Math.max(1e-6, ...values);
    kl = { tau, scale };
    legend = `<div class="legend">student tokens coloured by their clipped ${esc(pair.divergence)} teacher-student KL ` +
      `at mining time: <span class="swatch" style="background: rgba(230,60,30,0)"></span>0` +
      `<span class="swatch" style="background: rgba(230,60,30,0.425)"></span>${(scale / 4).toFixed(3)}` +
      `<span class="swatch" style="background: rgba(230,60,30,0.85)"></span>${scale.toFixed(3)}` +
      `${tau !== null ? ` (clip ${esc(tau)})` : ""} · mean ${num(pair.student_kl, 3)}</div>`;
  }
  main.innerHTML = `<p><a href="#/pairs?phase=${esc(encodeURIComponent(pair.phase))}">&larr; pairs</a> · phase ` +
    `${esc(pair.phase)} · pair ${esc(Number(pair.index) + 1)} · ${esc(pair.group_id)}</p>${legend}
    <p><button id="show-privileged" ${pair.privileged_prompt ? "" : "disabled"}>show the teacher's privileged prompt</button></p>
    <pre class="privileged" id="privileged-prompt" hidden>${esc(pair.privileged_prompt)}</pre>
    <div class="pair"><div class="pair-reference"><h2>Reference (shortest correct sibling, #${esc(pair.reference.sample_index)})</h2>
      ${trajectoryHtml(pair.reference)}</div>
    <div class="pair-student"><h2>Student (#${esc(pair.student.sample_index)})</h2>${trajectoryHtml(pair.student, kl)}</div></div>`;
  document.getElementById("show-privileged").addEventListener("click", (e) => {
    const box = document.getElementById("privileged-prompt");
    box.hidden = !box.hidden;
    e.target.textContent = box.hidden ? "show the teacher's privileged prompt" : "hide the privileged prompt";
  });
}

const ROUTES = { overview: showOverview, trajectories: showTrajectories, trajectory: showTrajectory,
  pairs: showPairs, pair: showPair };
const NAV = { trajectory: "trajectories", pair: "pairs" };

async function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const name = ROUTES[path] ? path : "overview";
  document.querySelectorAll("header nav a").forEach((a) =>
    a.classList.toggle("active", a.id === `nav-${NAV[name] || name}`));
  main.innerHTML = `<p class="muted">loading...</p>`;
  delete main.dataset.ready;
  try {
    await ROUTES[name](Object.fromEntries(new URLSearchParams(query || "")));
    document.getElementById("run-name").textContent = RUN ? RUN.name : "";
  } catch (err) {
    main.innerHTML = `<p class="error">${esc(err.message)}</p>`;
  }
  main.dataset.ready = name;  // what the browser test waits for
}

window.addEventListener("hashchange", route);
route();
