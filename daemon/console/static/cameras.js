// The cameras page: every camera live, with its state, fps, drops and restarts.
"use strict";
const REFRESH_MS = 2000;
const cards = new Map();
const FACT_LABELS = {
  fps: ["decoded fps", "Frames per second the camera's stream delivered (decoded), between two status updates; the person pipeline analyses fewer (analyse_fps)"],
  drops: ["drops", "Frames dropped in this camera's rings (a stage behind)"],
  restarts: ["restarts", "Restarts of this camera's workers"],
};

function card(camera) {
  const img = actiond.el("img", { alt: "Live image of " + camera.name, hidden: true });
  const placeholder = actiond.el("div", { class: "placeholder", text: "connecting…" });
  const state = actiond.el("span", { class: "state" });
  const facts = { fps: actiond.el("dd"), drops: actiond.el("dd"), restarts: actiond.el("dd") };
  const list = actiond.el("dl", { class: "facts" });
  for (const [name, dd] of Object.entries(facts)) {
    const term = actiond.el("dt", { text: FACT_LABELS[name][0], title: FACT_LABELS[name][1] });
    list.append(actiond.el("div", {}, term, dd));
  }
  const node = actiond.el("article", { class: "card", "data-camera": camera.name },
    actiond.el("div", { class: "head" }, actiond.el("h2", { text: camera.name }), state),
    actiond.el("div", { class: "view" }, img, placeholder), list);
  img.addEventListener("error", () => { img.hidden = true; img.removeAttribute("src"); placeholder.hidden = false; });
  return { node, img, placeholder, state, facts };
}

function show(entry, camera) {
  entry.state.textContent = camera.state;
  entry.state.className = "state " + camera.state;
  entry.facts.fps.textContent = camera.fps.toFixed(1);
  entry.facts.drops.textContent = camera.drops;
  entry.facts.restarts.textContent = camera.restarts;
  if (camera.has_image && !entry.img.getAttribute("src")) {
    entry.img.src = camera.live_url;
    entry.img.hidden = false;
    entry.placeholder.hidden = true;
  } else if (!camera.has_image && !entry.img.getAttribute("src")) {
    entry.placeholder.textContent = camera.state === "failed" ? "failed" : "connecting…";
  }
}

async function refresh() {
  try {
    const body = await actiond.json("/api/cameras");
    document.getElementById("device").textContent = body.device_id;
    const grid = document.getElementById("cameras");
    for (const camera of body.cameras) {
      if (!cards.has(camera.name)) {
        const entry = card(camera);
        cards.set(camera.name, entry);
        grid.append(entry.node);
      }
      show(cards.get(camera.name), camera);
    }
    actiond.message(body.cameras.length ? "" : "No cameras are enabled.");
  } catch (err) {
    actiond.message("Cannot reach the daemon: " + err.message);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
actiond.device();
