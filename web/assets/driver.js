// The driver's page: the device's uploads with what was kept and left out, rewards per epoch,
// and the Merkle proof of an epoch's cumulative total, checked here in the browser.
import { $, api, esc, every, keyField, num, units, when } from "./common.js";

let key = null;
const details = new Map(); // upload id -> the HTML of its opened rejections

// ---- Uploads ----

function uploadRow(u) {
  const pair = (a, b) => (a == null && b == null ? "" : `${units(a ?? 0)} / ${units(b ?? 0)}`);
  const open = details.has(String(u.id));
  return `
    <tr data-upload="${u.id}" data-status="${esc(u.status)}">
      <td class="num">${u.id}</td><td>${esc(when(u.received_at))}</td><td>${esc(u.kind)}</td>
      <td class="${u.status === "rejected" ? "error" : u.status === "processed" ? "ok" : "muted"}">${esc(u.status)}</td>
      <td class="num">${pair(u.fixes_accepted, u.fixes_rejected)}</td>
      <td class="num">${pair(u.observations_accepted, u.observations_rejected)}</td>
      <td class="num">${u.cells == null ? "" : units(u.cells)}</td>
      <td class="num">${u.matched_m == null ? "" : `${num(u.matched_m / 1000)} km`}</td>
      <td>${esc(u.reason)}</td>
      <td><button type="button" data-action="rejections" data-upload="${u.id}">${open ? "hide" : "left out"}</button></td>
    </tr>${open ? details.get(String(u.id)) : ""}`;
}

async function loadUploads() {
  if (!key) {
    $("#uploads").innerHTML = `<tr><td colspan="10" class="muted">a device key is needed</td></tr>`;
    return;
  }
  try {
    const r = await api("/api/v1/uploads?limit=200", { key });
    $("#uploads").innerHTML = r.uploads.map(uploadRow).join("")
      || `<tr><td colspan="10" class="muted">no uploads yet</td></tr>`;
    $("#uploads-error").textContent = "";
  } catch (e) {
    $("#uploads-error").textContent = e.message;
  }
}

function rejectionsHTML(id, list) {
  if (!list.length) return `<tr class="detail" data-detail="${id}"><td colspan="10" class="muted">nothing was left out</td></tr>`;
  const counts = new Map();
  for (const r of list) {
    const k = `${r.stage}: ${r.reason}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const summary = [...counts].sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `<b>${esc(k)}</b> × ${units(n)}`).join(" · ");
  const lines = list.slice(0, 100).map((r) =>
    `<tr><td>${esc(r.stage)}</td><td class="num">${r.item}</td><td>${esc(r.reason)}</td><td>${esc(r.detail)}</td></tr>`).join("");
  return `<tr class="detail" data-detail="${id}"><td colspan="10">
    <div>${summary}</div>
    <table><thead><tr><th>stage</th><th class="num">item</th><th>reason</th><th>detail</th></tr></thead><tbody>${lines}</tbody></table>
    ${list.length > 100 ? `<div class="muted">and ${units(list.length - 100)} more</div>` : ""}
  </td></tr>`;
}

$("#uploads").addEventListener("click", async (e) => {
  const b = e.target.closest('button[data-action="rejections"]');
  if (!b) return;
  const id = b.dataset.upload;
  if (details.has(id)) {
    details.delete(id);
    $(`tr[data-detail="${id}"]`)?.remove();
    b.textContent = "left out";
    return;
  }
  b.disabled = true;
  let html;
  try {
    const r = await api(`/api/v1/uploads/${id}/rejections`, { key });
    html = rejectionsHTML(id, r.rejections);
  } catch (x) {
    html = `<tr class="detail" data-detail="${id}"><td colspan="10" class="error">${esc(x.message)}</td></tr>`;
  }
  details.set(id, html);
  b.disabled = false;
  b.textContent = "hide";
  b.closest("tr").insertAdjacentHTML("afterend", html);
});

// ---- Rewards ----

let rewards = [];

async function loadRewards() {
  const who = $("#contributor").value.trim();
  rewards = [];
  if (!who) {
    $("#rewards").innerHTML = `<tr><td colspan="8" class="muted">no contributor: uploads under a key without one earn no rewards</td></tr>`;
    return;
  }
  try {
    rewards = (await api(`/api/v1/rewards/${encodeURIComponent(who)}`)).epochs;
    $("#rewards-error").textContent = "";
  } catch (e) {
    $("#rewards-error").textContent = e.message;
  }
  $("#rewards").innerHTML = rewards.map((r) => `
    <tr data-epoch="${r.epoch}">
      <td class="num">${r.epoch}</td><td class="num">${num(r.points / 1e6, 6)}</td>
      <td class="num">${units(r.base)}</td><td class="num">${units(r.bounty)}</td>
      <td class="num">${units(r.amount)}</td><td class="num">${units(r.cumulative)}</td>
      <td>${r.flagged ? '<span class="error">flagged</span>' : ""}</td>
      <td><button type="button" data-action="proof" data-epoch="${r.epoch}">proof</button></td>
    </tr>`).join("") || `<tr><td colspan="8" class="muted">no rewards in any closed epoch yet</td></tr>`;
  if (rewards.length && !$("#proof-epoch").value) $("#proof-epoch").value = String(rewards.at(-1).epoch);
}

$("#rewards-form").addEventListener("submit", (e) => {
  e.preventDefault();
  loadRewards();
});
$("#rewards").addEventListener("click", (e) => {
  const b = e.target.closest('button[data-action="proof"]');
  if (!b) return;
  $("#proof-epoch").value = b.dataset.epoch;
  showProof();
});

// ---- The proof, checked as scoring/src/ledger.rs builds the tree ----

const hexOf = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
const bytesOf = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));

function bigEndian(value, bytes) {
  const out = new Uint8Array(bytes);
  let v = BigInt(value);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

async function sha256(...parts) {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
}

/** `0x00 ‖ epoch u64be ‖ len u32be ‖ distributor ‖ len u32be ‖ contributor ‖ cumulative u128be` */
async function leafHash(epoch, distributor, contributor, cumulative) {
  const text = new TextEncoder();
  const d = text.encode(distributor);
  const c = text.encode(contributor);
  return sha256(Uint8Array.of(0), bigEndian(epoch, 8), bigEndian(d.length, 4), d,
    bigEndian(c.length, 4), c, bigEndian(cumulative, 16));
}

function compare(a, b) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** `0x01 ‖ min(a, b) ‖ max(a, b)`: pairs are sorted, so a proof is the siblings alone. */
async function nodeHash(a, b) {
  const [lo, hi] = compare(a, b) <= 0 ? [a, b] : [b, a];
  return sha256(Uint8Array.of(1), lo, hi);
}

async function verify(p) {
  const leaf = await leafHash(p.epoch, p.distributor, p.contributor, p.cumulative);
  if (hexOf(leaf) !== p.leaf) return { ok: false, why: `the leaf's fields hash to ${hexOf(leaf)}, not the leaf sent` };
  let h = leaf;
  for (const sibling of p.proof) h = await nodeHash(h, bytesOf(sibling));
  if (hexOf(h) !== p.root) return { ok: false, why: `the siblings lead to ${hexOf(h)}, not the root` };
  return { ok: true };
}

async function showProof() {
  const out = $("#proof");
  const who = $("#contributor").value.trim();
  const epoch = $("#proof-epoch").value.trim();
  if (!who) {
    out.innerHTML = `<p class="error">name a contributor first</p>`;
    return;
  }
  out.innerHTML = `<p class="muted">fetching…</p>`;
  let p;
  try {
    const q = epoch ? `?epoch=${encodeURIComponent(epoch)}` : "";
    p = await api(`/api/v1/rewards/${encodeURIComponent(who)}/proof${q}`);
  } catch (e) {
    out.innerHTML = `<p class="error">${esc(e.message)}</p>`;
    return;
  }
  const v = await verify(p);
  out.innerHTML = `
    <div class="verdict ${v.ok ? "ok" : "error"}" data-verified="${v.ok}">${v.ok ? "proof verified" : "proof does NOT verify"}</div>
    ${v.ok ? "" : `<div class="error">${esc(v.why)}</div>`}
    <table>
      <tr><td>epoch</td><td>${esc(p.epoch)}</td></tr>
      <tr><td>distributor</td><td>${esc(p.distributor)}</td></tr>
      <tr><td>contributor</td><td>${esc(p.contributor)}</td></tr>
      <tr><td>cumulative</td><td>${units(p.cumulative)}</td></tr>
      <tr><td>leaf</td><td class="mono">${esc(p.leaf)}</td></tr>
      <tr><td>siblings</td><td class="mono">${p.proof.map(esc).join("<br>") || "none (the only leaf)"}</td></tr>
      <tr><td>root</td><td class="mono">${esc(p.root)}</td></tr>
      <tr><td>scheme</td><td class="muted">${esc(p.scheme)}</td></tr>
    </table>`;
}

$("#proof-form").addEventListener("submit", (e) => {
  e.preventDefault();
  showProof();
});

keyField($("#key-form"), "driver", ({ key: k, me }) => {
  key = k;
  details.clear();
  if (me?.contributor) $("#contributor").value = me.contributor;
  loadUploads();
  loadRewards();
});
every(10000, () => (key ? loadUploads() : undefined));
