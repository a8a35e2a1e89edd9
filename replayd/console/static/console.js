// The replay console's live progress: it polls the console's JSON endpoints and updates the
// page in place, setting only text and numbers (textContent, progress values, SVG points), so
// nothing the server sends is ever parsed as HTML.
"use strict";
(function () {
  const every = 1000;
  const fmtPct = (p) => (Math.round(p * 10) / 10).toFixed(1);
  const fmtRate = (r) => (r > 0 ? r.toFixed(1) : "\u2013");
  const batches = (j) => (j.batches >= 0 ? j.batches_done + "/" + j.batches + " batches" : "batches unknown");

  function set(root, field, value) {
    const el = root.querySelector('[data-f="' + field + '"]');
    if (el && el.textContent !== String(value)) el.textContent = value;
  }

  function fill(root, j) {
    set(root, "state", j.state);
    set(root, "percent", fmtPct(j.percent) + "%");
    set(root, "batches", batches(j));
    set(root, "read", j.counts.read);
    set(root, "delivered", j.counts.delivered);
    set(root, "duplicates", j.counts.duplicates_dropped);
    set(root, "redelivered", j.counts.redelivered);
    set(root, "failed", j.counts.failed);
    set(root, "unreadable", j.counts.unreadable);
    set(root, "rate", fmtRate(j.events_per_second));
    set(root, "eta", j.eta);
    set(root, "reason", j.reason || "");
    const bar = root.querySelector("progress");
    if (bar) bar.value = j.percent;
    const state = root.querySelector('[data-f="state"]');
    if (state) state.className = "state-" + j.state.toLowerCase();
  }

  async function get(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) { location.reload(); return null; }
    if (!r.ok) return null;
    return r.json();
  }

  function pollJobs(table) {
    const url = table.dataset.poll;
    const tick = async () => {
      try {
        const res = await get(url);
        if (res) {
          const rows = table.querySelectorAll("tr[data-job]");
          const ids = Array.from(rows, (r) => r.dataset.job);
          if (ids.join() !== res.jobs.map((j) => j.job_id).join()) { location.reload(); return; }
          res.jobs.forEach((j, i) => fill(rows[i], j));
        }
      } catch (e) { /* the next tick tries again */ }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  }

  function points(samples, key, top) {
    if (samples.length < 2) return "";
    const t0 = Date.parse(samples[0].at), span = Math.max(Date.parse(samples[samples.length - 1].at) - t0, 1);
    return samples.map((s) => (600 * (Date.parse(s.at) - t0) / span).toFixed(1) + "," + (160 - 160 * s[key] / top).toFixed(1)).join(" ");
  }

  function pollJob(box) {
    const url = box.dataset.poll;
    const tick = async () => {
      let active = true;
      try {
        const j = await get(url);
        if (j) {
          fill(box, j);
          set(box, "checkpoint", j.checkpoint);
          set(box, "first_undelivered", j.first_undelivered || "none");
          set(box, "started_at", j.started_at || "");
          set(box, "finished_at", j.finished_at || "");
          set(box, "lease_owner", j.lease_owner || "");
          if (j.completion_event) set(box, "completion_event", j.completion_event);
          if (j.completion_status) set(box, "completion_status", j.completion_status);
          const top = Math.max(1, ...j.samples.map((s) => Math.max(s.read, s.delivered)));
          set(box, "max", top);
          box.querySelector("polyline.read").setAttribute("points", points(j.samples, "read", top));
          box.querySelector("polyline.delivered").setAttribute("points", points(j.samples, "delivered", top));
          active = j.active || j.completion_status === "pending";
        }
      } catch (e) { /* the next tick tries again */ }
      if (active) setTimeout(tick, every);
    };
    if (box.dataset.active === "true") setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("jobs");
    if (table) pollJobs(table);
    const box = document.getElementById("job");
    if (box) pollJob(box);
  });
})();
