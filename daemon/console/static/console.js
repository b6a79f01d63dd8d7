// actiond console: what every page shares (theme, fetching JSON, small DOM helpers).
"use strict";
(function () {
  const saved = localStorage.getItem("actiond-theme");
  if (saved === "dark" || saved === "light") document.documentElement.dataset.theme = saved;
})();

const actiond = {
  async json(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) { location.href = "/login"; throw new Error("log in first"); }
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  },
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value; else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  },
  message(text) {
    const box = document.getElementById("message");
    if (!box) return;
    box.hidden = !text;
    box.textContent = text || "";
  },
  time(epoch) {
    return epoch ? new Date(epoch * 1000).toLocaleString() : "—";
  },
  async device() {
    try {
      const status = await actiond.json("/api/status");
      document.getElementById("device").textContent = status.device_id;
      const logout = document.getElementById("logout");
      if (logout) logout.hidden = !status.auth_required;
    } catch (err) { /* the page's own fetch reports problems */ }
  },
};

document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("theme");
  if (!button) return;
  const current = () => document.documentElement.dataset.theme ||
    (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  const label = () => { button.textContent = current() === "dark" ? "Light theme" : "Dark theme"; };
  button.addEventListener("click", () => {
    const next = current() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("actiond-theme", next);
    label();
  });
  label();
});
