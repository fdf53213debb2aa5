// The study page: a server-side paged and sorted trials table, the charts, live polling.
(function () {
  "use strict";
  const info = JSON.parse(document.getElementById("study-data").textContent);
  const base = "/api/studies/" + encodeURIComponent(info.name);
  const page = "/studies/" + encodeURIComponent(info.name);
  const table = {offset: 0, limit: 50, sort: "number", order: "desc", state: ""};
  let lastCount = -1, lastCharts = 0, running = info.running;

  function text(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/\.?0+$/, "");
    return String(v);
  }
  function cell(row, value) { const td = document.createElement("td"); td.textContent = value; row.appendChild(td); return td; }

  function renderBest(s) {
    const section = document.getElementById("best");
    const title = document.createElement("h2"); title.textContent = "Best configuration";
    const p = document.createElement("p");
    const a = document.createElement("a"); a.href = page + "/trials/" + s.best.number; a.textContent = "#" + s.best.number;
    const b = document.createElement("b"); b.textContent = text(s.best.value);
    p.append("Trial ", a, ": " + s.metric + " = ", b);
    const table = document.createElement("table"); table.className = "params";
    for (const [k, v] of Object.entries(s.best.params)) {
      const row = document.createElement("tr");
      const th = document.createElement("th"); th.textContent = k; row.appendChild(th);
      cell(row, text(v)); table.appendChild(row);
    }
    section.replaceChildren(title, p, table);
  }

  async function loadTrials() {
    const q = new URLSearchParams({offset: table.offset, limit: table.limit, sort: table.sort, order: table.order});
    if (table.state) q.append("state", table.state);
    const r = await fetch(base + "/trials?" + q);
    if (!r.ok) return;
    const data = await r.json();
    const body = document.querySelector("#trials tbody");
    body.replaceChildren();
    for (const t of data.trials) {
      const row = document.createElement("tr");
      const num = cell(row, "");
      const a = document.createElement("a"); a.href = page + "/trials/" + t.number; a.textContent = "#" + t.number; num.appendChild(a);
      cell(row, t.state).className = "state " + t.state;
      cell(row, Object.entries(t.params).map(([k, v]) => k + "=" + text(v)).join(", "));
      cell(row, text(t.value));
      cell(row, t.duration_s === null ? "-" : t.duration_s.toFixed(2));
      cell(row, (t.host || "") + (t.runner ? ":" + t.runner : ""));
      cell(row, t.error || "");
      if (info.best && info.best.number === t.number) row.className = "best";
      body.appendChild(row);
    }
    const end = Math.min(data.total, table.offset + data.trials.length);
    document.getElementById("page-info").textContent =
      data.total ? (table.offset + 1) + "–" + end + " of " + data.total : "no trials";
    document.getElementById("prev").disabled = table.offset === 0;
    document.getElementById("next").disabled = end >= data.total;
  }

  async function chart(name, extra) {
    const r = await fetch(base + "/charts/" + name + (extra || ""));
    if (!r.ok) return null;
    const fig = await r.json();
    const el = document.getElementById("chart-" + name);
    await Plotly.react(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
    el.dataset.rendered = "1";
    return fig;
  }

  function fillAxes(fig) {
    for (const [id, chosen] of [["contour-x", fig.x], ["contour-y", fig.y]]) {
      const sel = document.getElementById(id);
      if (sel.options.length !== (fig.params || []).length) {
        sel.replaceChildren(...(fig.params || []).map(p => new Option(p, p)));
      }
      if (chosen) sel.value = chosen;
    }
  }

  async function contour() {
    const x = document.getElementById("contour-x").value, y = document.getElementById("contour-y").value;
    const q = x && y ? "?" + new URLSearchParams({x: x, y: y}) : "";
    const fig = await chart("contour", q);
    if (fig) fillAxes(fig);
  }

  async function loadCharts() {
    lastCharts = Date.now();
    for (const name of ["history", "bars", "parallel", "slice", "importance", "timeline"]) await chart(name);
    await contour();
  }

  async function poll() {
    try {
      const r = await fetch(base);
      if (r.ok) {
        const s = await r.json();
        if (s.best && (!info.best || info.best.number !== s.best.number || !document.querySelector("#best table"))) renderBest(s);
        info.best = s.best;
        running = s.running;
        const st = document.getElementById("state");
        st.textContent = s.state + (s.state === "RUNNING" && !s.running ? " (no live controller)" : "");
        st.className = "state " + s.state;
        document.getElementById("summary").textContent = s.trials + " trial(s)" + (s.budget ? " of " + s.budget : "") +
          " · " + (s.direction === "minimize" ? "minimising " : "maximising ") + s.metric +
          (s.best ? " · best " + text(s.best.value) + " (trial #" + s.best.number + ")" : "");
        document.getElementById("stop").disabled = !s.running;
        document.getElementById("resume").disabled = s.running || s.state === "COMPLETE";
        const finished = Object.entries(s.counts).filter(([k]) => !["RUNNING", "WAITING", "STALE"].includes(k)).reduce((a, [, v]) => a + v, 0);
        const changed = finished !== lastCount;
        lastCount = finished;
        if (changed) {
          await loadTrials();
          if (Date.now() - lastCharts > 4000) await loadCharts();
        }
      }
    } finally {
      setTimeout(poll, running ? 2000 : 10000);
    }
  }

  async function act(what) {
    const msg = document.getElementById("message");
    const r = await fetch(base + "/" + what, {method: "POST", credentials: "same-origin"});
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
    const body = await r.json().catch(() => ({}));
    msg.textContent = r.ok ? (what === "stop" ? "stop requested: running trials finish first" : "started") :
      (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    running = what !== "stop";
    setTimeout(poll, 500);
  }

  document.getElementById("stop").addEventListener("click", () => act("stop"));
  document.getElementById("resume").addEventListener("click", () => act("resume"));
  document.getElementById("prev").addEventListener("click", () => { table.offset = Math.max(0, table.offset - table.limit); loadTrials(); });
  document.getElementById("next").addEventListener("click", () => { table.offset += table.limit; loadTrials(); });
  document.getElementById("state-filter").addEventListener("change", e => { table.state = e.target.value; table.offset = 0; loadTrials(); });
  document.getElementById("contour-x").addEventListener("change", contour);
  document.getElementById("contour-y").addEventListener("change", contour);
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      table.order = table.sort === key && table.order === "asc" ? "desc" : "asc";
      table.sort = key; table.offset = 0; loadTrials();
    });
  }
  loadTrials().then(loadCharts).then(() => { document.body.dataset.ready = "1"; poll(); });
})();
