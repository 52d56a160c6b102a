// ClaimDesk complaints pages: token in localStorage, JSON API calls, countdowns. No libraries.
"use strict";
const CD = (() => {
  const KEY = "claimdesk.token";
  const token = () => localStorage.getItem(KEY) || "";
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
    return node;
  };
  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + token(), ...(options.body ? { "Content-Type": "application/json" } : {}) };
    const r = await fetch(path, { ...options, headers });
    const data = await r.json().catch(() => ({}));
    if (r.status === 401) { showLogin("令牌无效或已过期 Token invalid or expired"); throw new Error("unauthorized"); }
    if (!r.ok) throw new Error(data.message || r.statusText);
    return data;
  }
  function showLogin(message) {
    const box = document.getElementById("login");
    box.hidden = false;
    document.getElementById("login-msg").textContent = message || "";
  }
  function setupLogin(onReady) {
    const form = document.getElementById("login-form");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      localStorage.setItem(KEY, document.getElementById("token").value.trim());
      document.getElementById("login").hidden = true;
      onReady();
    });
    if (token()) onReady(); else showLogin("");
  }
  function duration(seconds) {
    const neg = seconds < 0; let s = Math.abs(Math.round(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const text = d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
    return neg ? `逾期 overdue ${text}` : `剩余 ${text}`;
  }
  // Elements with data-remaining (seconds at load) and data-running count down each second.
  let loadedAt = Date.now();
  function markLoaded() { loadedAt = Date.now(); }
  function tick() {
    const elapsed = (Date.now() - loadedAt) / 1000;
    for (const node of document.querySelectorAll("[data-remaining]")) {
      const base = Number(node.getAttribute("data-remaining"));
      const left = node.getAttribute("data-running") === "1" ? base - elapsed : base;
      node.textContent = duration(left);
      node.classList.toggle("overdue", left < 0);
    }
  }
  setInterval(tick, 1000);
  const time = (iso) => iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false }) : "—";
  return { api, el, setupLogin, duration, tick, markLoaded, time, token };
})();
