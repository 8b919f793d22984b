// Hover and click for report.html: reads the embedded model and history, never the network.
"use strict";
(function () {
  const M = JSON.parse(document.getElementById("model").textContent);
  const OUT = Object.fromEntries(M.outcomes);
  const KEYS = M.outcomes.map((o) => o[0]);
  const tip = document.getElementById("tip");
  const details = document.getElementById("details");
  const svg = document.getElementById("timeline");
  let historyLines = null;

  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  }
  function att(i) {
    const a = M.attempts[i];
    return { i, job: a[0], attempt: a[1], lane: M.lanes[a[2]] ? M.lanes[a[2]].name : "?", t0: a[3], t1: a[4],
      outcome: KEYS[a[5]], reason: a[6], tLeaseEnd: a[7], lines: a[8], flagged: !!a[9] };
  }
  const byJob = new Map();
  M.attempts.forEach((a, i) => { if (!byJob.has(a[0])) byJob.set(a[0], []); byJob.get(a[0]).push(i); });

  async function gunzip(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text();
  }
  // The history lines by number: every line, or (a summary) the lines the page points at.
  async function loadHistory() {
    if (historyLines) return historyLines;
    const node = document.getElementById("history");
    const text = node.textContent.trim();
    const encoding = node.dataset.encoding;
    if (encoding === "json") {
      historyLines = JSON.parse(text);
    } else if (typeof DecompressionStream !== "function") {
      historyLines = null;
      return null;
    } else if (encoding === "sparse-gzip-base64") {
      historyLines = JSON.parse(await gunzip(text));
    } else {
      historyLines = (await gunzip(text)).split("\n");
    }
    return historyLines;
  }
  async function showLines(lines) {
    const all = await loadHistory();
    const sorted = Array.from(new Set(lines)).sort((a, b) => a - b);
    if (!all) return "<p class=hint>This browser cannot unpack the embedded history (no DecompressionStream).</p>";
    return "<pre>" + sorted.map((n) => esc(all[n] || "#" + n)).join("\n") + "</pre>";
  }

  // A summary's plain accepted attempts, from its side file (a script, so file:// works).
  let plain = null, plainLoading = null;
  function loadPlain() {
    if (!M.plain) return Promise.resolve(null);
    if (plainLoading) return plainLoading;
    plainLoading = new Promise((resolve) => {
      window.reportDetail = async (packed) => {
        const d = JSON.parse(await gunzip(packed));
        const n = d.job.length, job = new Float64Array(n), t0 = new Float64Array(n), t1 = new Float64Array(n);
        let j = 0, t = 0;
        for (let i = 0; i < n; i++) {
          j += d.job[i]; t += d.t0[i];
          job[i] = j; t0[i] = t / 1e6; t1[i] = (t + d.dur[i]) / 1e6;
        }
        plain = { lanes: d.lanes, lane: d.lane, job, t0, t1, n };
        resolve(plain);
      };
      const script = document.createElement("script");
      script.src = M.plain.detail;
      script.onerror = () => { resolve(null); };
      document.head.append(script);
    });
    return plainLoading;
  }
  function plainOf(job) {
    const found = [];
    if (!plain) return found;
    for (let i = 0; i < plain.n; i++) if (plain.job[i] === job) found.push(i);
    return found;
  }
  function fmt(t) { return t == null ? "-" : t.toFixed(3) + " s"; }

  function select(job) {
    svg.querySelectorAll(".att.sel").forEach((n) => n.classList.remove("sel"));
    svg.querySelectorAll('.att[data-job="' + job + '"]').forEach((n) => n.classList.add("sel"));
  }
  async function showJob(job) {
    select(job);
    const indices = byJob.get(job) || [];
    if (!indices.length && M.plain) await loadPlain();
    const plainRows = indices.length || !M.plain ? [] : plainOf(job).map((i) => ({
      attempt: "", lane: plain.lanes[plain.lane[i]], outcome: "accepted", t0: plain.t0[i], tLeaseEnd: null,
      t1: plain.t1[i], reason: "" }));
    const rows = indices.map(att).concat(plainRows).map((a) =>
      "<tr><td>" + a.attempt + "</td><td>" + esc(a.lane) + '</td><td><i class="sw o-' + a.outcome + '"></i> ' +
      esc(OUT[a.outcome]) + "</td><td>" + fmt(a.t0) + "</td><td>" + fmt(a.tLeaseEnd) + "</td><td>" + fmt(a.t1) +
      "</td><td>" + esc(a.reason) + "</td></tr>").join("");
    if (plainRows.length) {
      details.innerHTML = "<h2>job " + job + "</h2><table><tr><th>attempt</th><th>worker</th><th>outcome</th>" +
        "<th>leased</th><th>lease ended</th><th>reported / ended</th><th>reason</th></tr>" + rows +
        "</table><p class=hint>A plain accepted job of a summary report: its history lines are in the run's " +
        "event logs (grep '\"job\":" + job + ",' *.events.jsonl).</p>";
      return;
    }
    const named = M.violations.filter((v) => v.jobs.includes(job));
    let lines = (M.job_lines[String(job)] || []).slice();
    indices.forEach((i) => { lines = lines.concat(M.attempts[i][8]); });
    named.forEach((v) => { lines = lines.concat(v.lines); });
    details.innerHTML = "<h2>job " + job + "</h2>" +
      named.map((v) => '<p><b class="' + esc(v.severity) + '">' + esc(said(v)) + "</b>: " + esc(v.message) + "</p>").join("") +
      "<table><tr><th>attempt</th><th>worker</th><th>outcome</th><th>leased</th><th>lease ended</th><th>reported / ended</th><th>reason</th></tr>" +
      rows + "</table><div>history lines:</div>" + (await showLines(lines));
  }
  async function showFault(f) {
    const fault = M.faults[f];
    details.innerHTML = "<h2>fault: " + esc(fault.label) + "</h2><p>" + fmt(fault.t_start) +
      (fault.t_end != null ? " to " + fmt(fault.t_end) : "") + (fault.missed ? " - missed: " + esc(fault.missed) : "") +
      (fault.unverified ? " - did not take effect: " + esc(fault.unverified) : "") +
      "</p>" + (await showLines(fault.lines));
  }
  async function showBucket(lane, b) {
    const indices = ((M.buckets[lane] || {})[b] || []);
    let jobs = indices.map((i) => M.attempts[i][0]);
    if (M.plain && await loadPlain()) {
      const lo = toBucketT(b), hi = toBucketT(b + 1);
      for (let i = 0; i < plain.n; i++) {
        if (plain.lanes[plain.lane[i]] === lane && plain.t1[i] >= lo && plain.t0[i] < hi) jobs.push(plain.job[i]);
      }
    }
    jobs = Array.from(new Set(jobs)).sort((x, y) => x - y);
    const shown = jobs.slice(0, 400);
    details.innerHTML = "<h2>" + esc(lane) + ": " + jobs.length + " accepted job(s) here</h2><p>" +
      shown.map((j) => '<a data-goto="' + j + '">' + j + "</a>").join(" ") +
      (jobs.length > shown.length ? " ... " + (jobs.length - shown.length) + " more" : "") + "</p>";
  }
  // A violation the scenario expects (a known bug, still there) says so.
  function said(v) { return (v.expected ? "expected " : "") + v.severity + " " + v.check; }
  async function showViolation(v) {
    const violation = M.violations[v];
    if (violation.jobs.length) return showJob(violation.jobs[0]);
    details.innerHTML = "<h2>" + esc(said(violation)) + "</h2><p>" +
      esc(violation.message) + "</p>" + (await showLines(violation.lines));
  }

  function describe(target) {
    const d = target.dataset;
    if (d.a !== undefined) {
      const a = att(Number(d.a));
      return "job " + a.job + " · attempt " + a.attempt + " · " + a.lane + "\n" + OUT[a.outcome] +
        (a.reason ? " (" + a.reason + ")" : "") + "\nleased " + fmt(a.t0) + " → " + fmt(a.t1) +
        (a.flagged ? "\nnamed by a violation" : "");
    }
    if (d.f !== undefined) {
      const f = M.faults[Number(d.f)];
      return "fault: " + f.label + "\n" + fmt(f.t_start) + (f.t_end != null ? " → " + fmt(f.t_end) : "") +
        (f.missed ? "\nmissed: " + f.missed : "") +
        (f.unverified ? "\ndid not take effect: " + f.unverified : "");
    }
    if (d.m !== undefined) {
      const m = M.marks[Number(d.m)];
      return m[2] + " (" + m[0] + ") at " + fmt(m[1]);
    }
    if (d.p !== undefined && plain) {
      const i = Number(d.p);
      return "job " + plain.job[i] + " · " + plain.lanes[plain.lane[i]] + "\naccepted\nleased " +
        fmt(plain.t0[i]) + " → " + fmt(plain.t1[i]);
    }
    if (d.b !== undefined) {
      const lane = target.parentNode.dataset.lane;
      return lane + ": " + d.n + " accepted attempt(s) in this slice";
    }
    if (d.batch !== undefined) return "batch " + d.batch + " opened";
    return null;
  }
  function interesting(node) {
    while (node && node !== svg) {
      if (node.dataset && (node.dataset.a !== undefined || node.dataset.p !== undefined || node.dataset.f !== undefined ||
          node.dataset.m !== undefined || node.dataset.b !== undefined || node.dataset.batch !== undefined)) return node;
      node = node.parentNode;
    }
    return null;
  }
  svg.addEventListener("mousemove", (e) => {
    const node = interesting(e.target);
    const text = node && describe(node);
    if (!text) { tip.hidden = true; return; }
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(e.clientX + 14, window.innerWidth - 470) + "px";
    tip.style.top = e.clientY + 14 + "px";
  });
  svg.addEventListener("mouseleave", () => { tip.hidden = true; });

  // Zoom: drag across the chart to show that window of time; double-click to see it all.
  // Every x in #plot is moved by its time; text keeps its pixel offset (data-dx).
  const plot = document.getElementById("plot");
  const axis = svg.querySelector("g.axis");
  const brush = document.getElementById("brush");
  const zoomLine = document.getElementById("zoom-window");
  const G = Number(svg.dataset.gutter), PW = Number(svg.dataset.plotW), TMAX = Number(svg.dataset.tMax);
  const placed = [];
  plot.querySelectorAll("*").forEach((el) => {
    const dx = Number(el.getAttribute("data-dx") || 0);
    for (const name of ["x", "x1", "x2"]) {
      if (el.hasAttribute(name)) placed.push([el, name, Number(el.getAttribute(name)) - dx, dx]);
    }
    if (el.hasAttribute("width") && !el.hasAttribute("data-fixed")) {
      placed.push([el, "width", Number(el.getAttribute("width")), null]);
    }
  });
  let view = [0, TMAX];
  const toT = (x) => view[0] + ((x - G) / PW) * (view[1] - view[0]);
  const BUCKET_PX = 3;
  const toBucketT = (b) => (b * BUCKET_PX / PW) * TMAX;
  function niceStep(raw) {
    const e = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-6))));
    for (const f of [1, 2, 5, 10]) if (f * e >= raw) return f * e;
    return 10 * e;
  }
  function drawAxis() {
    const [t0, t1] = view;
    const step = niceStep((t1 - t0) / 12);
    const digits = step < 1 ? Math.max(0, -Math.floor(Math.log10(step))) : 0;
    const height = svg.getAttribute("height");
    const ns = "http://www.w3.org/2000/svg";
    axis.replaceChildren();
    for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
      const x = G + ((t - t0) / (t1 - t0)) * PW;
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", x); line.setAttribute("x2", x);
      line.setAttribute("y1", 28); line.setAttribute("y2", height);
      const text = document.createElementNS(ns, "text");
      text.setAttribute("x", x); text.setAttribute("y", 24);
      text.textContent = t.toFixed(digits) + " s";
      axis.append(line, text);
    }
  }
  function zoom(t0, t1) {
    t0 = Math.max(0, t0); t1 = Math.min(TMAX, t1);
    if (!(t1 - t0 > 1e-6)) return;
    view = [t0, t1];
    const k = TMAX / (t1 - t0), shift = (t0 * PW) / TMAX;
    for (const [el, name, base, dx] of placed) {
      el.setAttribute(name, dx === null ? base * k : G + (base - G - shift) * k + dx);
    }
    drawAxis();
    if (M.aggregated) drawDetail();
    const whole = t0 <= 0 && t1 >= TMAX;
    zoomLine.hidden = whole;
    zoomLine.querySelector("b").textContent = t0.toFixed(3) + " s to " + t1.toFixed(3) + " s";
  }
  // An aggregated chart zoomed in far enough draws the accepted attempts of the window as
  // thin bars in place of the histograms (at most DETAIL_MAX of them).
  const DETAIL_MAX = 1500;
  const detail = document.createElementNS("http://www.w3.org/2000/svg", "g");
  plot.append(detail);
  async function drawDetail() {
    const [t0, t1] = view;
    if (M.plain && !(t0 <= 0 && t1 >= TMAX)) await loadPlain();
    if (view[0] !== t0 || view[1] !== t1) return;  // zoomed again meanwhile
    const hists = Array.from(svg.querySelectorAll("g.hist"));
    const band = Object.fromEntries(hists.map((g) => [g.dataset.lane, [Number(g.dataset.top), Number(g.dataset.h)]]));
    const shown = [];  // [attribute, index, job, lane name, start, end, row]
    M.attempts.forEach((a, i) => {
      if (KEYS[a[5]] === "accepted" && !a[9] && a[4] >= t0 && a[3] <= t1 && M.lanes[a[2]] && band[M.lanes[a[2]].name]) {
        shown.push(["data-a", i, a[0], M.lanes[a[2]].name, a[3], a[4], a[10]]);
      }
    });
    if (plain) {
      const rows = {};
      for (let i = 0; i < plain.n && shown.length <= DETAIL_MAX; i++) {
        const name = plain.lanes[plain.lane[i]];
        if (plain.t1[i] >= t0 && plain.t0[i] <= t1 && band[name]) {
          // Stacked as the chart stacks bars: the first row free at its start.
          const ends = rows[name] || (rows[name] = []);
          let row = ends.findIndex((end) => end <= plain.t0[i]);
          if (row < 0) row = ends.length < M.max_rows ? ends.length : M.max_rows - 1;
          ends[row] = plain.t1[i];
          shown.push(["data-p", i, plain.job[i], name, plain.t0[i], plain.t1[i], row]);
        }
      }
    }
    detail.replaceChildren();
    const many = shown.length > DETAIL_MAX;
    hists.forEach((g) => { g.style.display = many ? "" : "none"; });
    if (many) return;
    const rowH = (h) => h / M.max_rows;
    for (const [name, i, job, lane, start, end, row] of shown) {
      const [top, h] = band[lane];
      const x0 = G + ((start - t0) / (t1 - t0)) * PW, x1 = G + ((end - t0) / (t1 - t0)) * PW;
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      rect.setAttribute("class", "att o-accepted thin");
      rect.setAttribute(name, i); rect.setAttribute("data-job", job);
      rect.setAttribute("x", x0); rect.setAttribute("width", Math.max(1.5, x1 - x0));
      rect.setAttribute("y", top + row * rowH(h)); rect.setAttribute("height", rowH(h) - 1);
      detail.append(rect);
    }
  }
  document.getElementById("zoom-reset").addEventListener("click", () => zoom(0, TMAX));
  function svgX(e) {
    const box = svg.getBoundingClientRect();
    return ((e.clientX - box.left) / box.width) * Number(svg.getAttribute("width"));
  }
  let drag = null, dragged = false;
  svg.addEventListener("mousedown", (e) => {
    const x = svgX(e);
    if (e.button === 0 && x >= G && x <= G + PW) { drag = x; dragged = false; }
  });
  window.addEventListener("mousemove", (e) => {
    if (drag === null) return;
    const x = Math.min(G + PW, Math.max(G, svgX(e)));
    if (Math.abs(x - drag) > 5) dragged = true;
    if (!dragged) return;
    brush.removeAttribute("hidden");
    brush.setAttribute("x", Math.min(x, drag)); brush.setAttribute("width", Math.abs(x - drag));
    brush.setAttribute("y", 0); brush.setAttribute("height", svg.getAttribute("height"));
  });
  window.addEventListener("mouseup", (e) => {
    if (drag === null) return;
    const x = Math.min(G + PW, Math.max(G, svgX(e)));
    brush.setAttribute("hidden", "hidden");
    if (dragged) zoom(toT(Math.min(x, drag)), toT(Math.max(x, drag)));
    drag = null;
  });
  svg.addEventListener("dblclick", () => zoom(0, TMAX));

  svg.addEventListener("click", (e) => {
    if (dragged) { dragged = false; return; }
    const node = interesting(e.target);
    if (!node) return;
    const d = node.dataset;
    if (d.a !== undefined) showJob(M.attempts[Number(d.a)][0]);
    else if (d.p !== undefined && plain) showJob(plain.job[Number(d.p)]);
    else if (d.f !== undefined) showFault(Number(d.f));
    else if (d.b !== undefined) showBucket(node.parentNode.dataset.lane, d.b);
    else if (d.m !== undefined) showLines([M.marks[Number(d.m)][3]]).then((h) => { details.innerHTML = h; });
  });
  details.addEventListener("click", (e) => {
    const job = e.target.dataset && e.target.dataset.goto;
    if (job !== undefined) showJob(Number(job));
  });
  document.querySelectorAll("li.violation").forEach((li) =>
    li.addEventListener("click", () => showViolation(Number(li.dataset.v))));
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") select(-1); });
  // report.html#job=6&t=1.0-1.3 opens with job 6 selected and that window of time shown.
  function fromHash() {
    const window_ = /t=([\d.]+)-([\d.]+)/.exec(location.hash);
    if (window_) zoom(Number(window_[1]), Number(window_[2]));
    const match = /job=(\d+)/.exec(location.hash);
    if (match && (byJob.has(Number(match[1])) || M.plain)) {
      loadPlain().then(() => showJob(Number(match[1])));
    }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
