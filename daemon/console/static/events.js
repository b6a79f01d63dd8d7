// The events page: newest first, filtered by camera and action, each with its snapshot,
// times, scores, track id, zone and clip.
"use strict";
const EVENTS_REFRESH_MS = 5000;
const shown = new Map(); // event id -> its article (kept so a playing clip is not reset)

function fmt(value, digits) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

function facts(ev) {
  const rows = [
    ["camera", ev.camera],
    ["started", actiond.time(ev.started_at_epoch)],
    ["ended", ev.open ? "still going" : actiond.time(ev.ended_at_epoch)],
    ["duration", ev.duration_s === null || ev.duration_s === undefined ? "—" : fmt(ev.duration_s, 1) + " s"],
    ["score max / mean", fmt(ev.score_max ?? ev.score, 2) + " / " + fmt(ev.score_mean, 2)],
    ["track", ev.track_id ?? "—"],
    ["zone", ev.zone || "—"],
  ];
  if (ev.end_reason) rows.push(["ended by", ev.end_reason]);
  const list = actiond.el("dl");
  for (const [key, value] of rows) list.append(actiond.el("dt", { text: key }), actiond.el("dd", { text: String(value) }));
  return list;
}

function media(ev) {
  if (ev.clip_url) {
    return actiond.el("video", { controls: true, preload: "metadata", src: ev.clip_url, "data-event": ev.id });
  }
  return actiond.el("p", { class: "noclip", text: ev.clip ? "clip being written…" : "no clip" });
}

function article(ev) {
  const snapshot = ev.snapshot_url
    ? actiond.el("img", { src: ev.snapshot_url, alt: "Snapshot of " + ev.action + " on " + ev.camera, loading: "lazy" })
    : actiond.el("p", { class: "noclip", text: "no snapshot" });
  const info = actiond.el("div", {}, actiond.el("h2", { text: ev.action }), facts(ev));
  return actiond.el("article", { class: "event", "data-id": ev.id, "data-state": ev.open + ":" + Boolean(ev.clip_url) },
    snapshot, info, actiond.el("div", { class: "clip" }, media(ev)));
}

function filters() {
  const params = new URLSearchParams();
  for (const key of ["camera", "action"]) {
    const value = document.getElementById(key).value;
    if (value) params.set(key, value);
  }
  return params;
}

function addOptions(select, values) {
  const have = new Set(Array.from(select.options, (o) => o.value));
  for (const value of values) if (!have.has(value)) select.append(actiond.el("option", { value, text: value }));
}

async function refresh() {
  try {
    const body = await actiond.json("/api/events?" + filters().toString());
    const list = document.getElementById("events");
    const keep = new Set();
    body.events.forEach((ev, index) => {
      keep.add(ev.id);
      let node = shown.get(ev.id);
      const state = ev.open + ":" + Boolean(ev.clip_url);
      if (!node || node.dataset.state !== state) {
        const fresh = article(ev);
        if (node) node.replaceWith(fresh);
        node = fresh;
        shown.set(ev.id, node);
      }
      if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
    });
    for (const [id, node] of shown) if (!keep.has(id)) { node.remove(); shown.delete(id); }
    actiond.message(body.events.length ? "" : "No events yet.");
  } catch (err) {
    actiond.message("Cannot reach the daemon: " + err.message);
  }
}

async function loadCameras() {
  try {
    const cams = await actiond.json("/api/cameras");
    addOptions(document.getElementById("camera"), cams.cameras.map((c) => c.name));
  } catch (err) { /* refresh() reports it */ }
}

async function loadOptions() {
  try {
    const known = await actiond.json("/api/actions");
    addOptions(document.getElementById("action"), known.actions);
  } catch (err) { /* refresh() reports it */ }
}

document.getElementById("filters").addEventListener("change", () => {
  for (const node of shown.values()) node.remove();
  shown.clear();
  refresh();
});
actiond.device();
loadCameras();
loadOptions();
refresh();
setInterval(() => { refresh(); loadOptions(); }, EVENTS_REFRESH_MS);
