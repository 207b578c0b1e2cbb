// Dialtone console: progressive enhancement only. Every page works without this file;
// with it, status follows the cluster live (Server-Sent Events), secrets get copy
// buttons, and a phone list can be selected whole. No inline script anywhere (the CSP
// forbids it), no framework, no build step.
"use strict";

function badge(status) {
  const b = document.createElement("span");
  b.className = "badge st-" + status.toLowerCase().replace(/_/g, "-");
  b.textContent = status;
  return b;
}

function showStatus(cell, s) {
  const parts = [badge(s.status)];
  if (s.primary) {
    const e = document.createElement("span");
    e.className = "edge";
    e.textContent = "primary " + s.primary;
    parts.push(document.createTextNode(" "), e);
  }
  if (s.secondary || s.secondary_status) {
    const e = document.createElement("span");
    e.className = "edge";
    e.textContent = "secondary " + s.secondary + " " + s.secondary_status;
    parts.push(document.createTextNode(" "), e);
  }
  cell.replaceChildren(...parts);
  cell.dataset.status = s.status;
}

function followPhones() {
  const cells = document.querySelectorAll("[data-status-for]");
  if (!cells.length || !window.EventSource) return;
  const ids = Array.from(cells, (c) => c.dataset.statusFor);
  const src = new EventSource("/events/phones?ids=" + encodeURIComponent(ids.join(",")));
  src.addEventListener("status", (ev) => {
    const s = JSON.parse(ev.data);
    document.querySelectorAll("[data-status-for]").forEach((c) => {
      if (c.dataset.statusFor === s.id) showStatus(c, s);
    });
  });
}

function followCounts() {
  const table = document.querySelector("[data-live-counts]");
  if (!table || !window.EventSource) return;
  const src = new EventSource("/events/counts");
  src.addEventListener("counts", (ev) => {
    const c = JSON.parse(ev.data);
    let known = true;
    Object.entries(c.sites).forEach(([site, by]) => {
      ["OPERATIONAL", "DEGRADED", "OFFLINE", "NOT_APPLICABLE"].forEach((st) => {
        const td = Array.from(table.querySelectorAll("[data-count]")).find((t) => t.dataset.count === site + "|" + st);
        if (td) td.textContent = String(by[st] || 0); else known = false;
      });
    });
    const cap = table.querySelector("caption");
    if (cap) cap.textContent = c.counted + " phones";
    // A site the page has no row for: reload it whole.
    if (!known) window.location.reload();
  });
}

function copyButtons() {
  document.querySelectorAll("button[data-copy]").forEach((b) => {
    b.addEventListener("click", () => {
      const input = document.getElementById(b.dataset.copy);
      if (!input) return;
      input.select();
      const done = () => { b.textContent = "Copied"; };
      if (navigator.clipboard) navigator.clipboard.writeText(input.value).then(done, () => document.execCommand("copy") && done());
      else if (document.execCommand("copy")) done();
    });
  });
}

function selectAll() {
  const all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", () => {
    document.querySelectorAll('input[name="ids"]').forEach((c) => { c.checked = all.checked; });
  });
}

function confirmations() {
  document.querySelectorAll("button[data-confirm]").forEach((b) => {
    b.addEventListener("click", (ev) => {
      if (!window.confirm(b.dataset.confirm)) ev.preventDefault();
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  followPhones();
  followCounts();
  copyButtons();
  selectAll();
  confirmations();
});
