// The planner's page: the demand map, drawing and creating demand areas (with bounties), the
// list of areas, the reward schedule, replaying a closed epoch under an edited policy, and the
// policy's governance: proposing the edited text, reading proposals' simulated effect, voting.
import {
  $, METRICS, api, createMap, delta, esc, fillId, fitPoints, keepFresh, keyField, legendHTML, num,
  popupOnClick, units, when,
} from "./common.js";

const EMPTY = { type: "FeatureCollection", features: [] };
const DRAFT = "#2b6cb0";
const AREA = "#54278f";

const map = createMap("map", {
  layers: ["demand"],
  extra: {
    sources: {
      areas: { type: "geojson", data: EMPTY },
      draft: { type: "geojson", data: EMPTY },
    },
    layers: [
      { id: "areas-line", type: "line", source: "areas",
        paint: { "line-color": AREA, "line-width": 1.5, "line-dasharray": [3, 2] } },
      { id: "draft-fill", type: "fill", source: "draft", filter: ["==", ["geometry-type"], "Polygon"],
        paint: { "fill-color": DRAFT, "fill-opacity": 0.15 } },
      { id: "draft-line", type: "line", source: "draft", filter: ["==", ["geometry-type"], "LineString"],
        paint: { "line-color": DRAFT, "line-width": 2 } },
      { id: "draft-vertex", type: "circle", source: "draft", filter: ["==", ["geometry-type"], "Point"],
        paint: { "circle-radius": 4, "circle-color": "#fff", "circle-stroke-color": DRAFT, "circle-stroke-width": 2 } },
    ],
  },
});
window.covermap = { map, fillId };
$("#legend").innerHTML = legendHTML(METRICS.demand[0]);

let key = null;
keyField($("#key-form"), "planner", (k) => {
  key = k.key;
  // After this module has run (the first call may come before `draw` exists).
  queueMicrotask(() => {
    if (draw.closed) showPreview();
  });
});

// ---- Drawing: corners clicked on the map, closed by a double-click or "finish". ----

const draw = { active: false, closed: false, vertices: [], cursor: null };
const button = (action) => $(`[data-action="${action}"]`);

function renderDraft() {
  const v = draw.vertices;
  const ring = draw.active && draw.cursor ? [...v, draw.cursor] : v;
  const features = v.map((c) => ({ type: "Feature", properties: {}, geometry: { type: "Point", coordinates: c } }));
  if (ring.length >= 2) {
    const line = draw.closed ? [...ring, ring[0]] : ring;
    features.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: line } });
  }
  if (ring.length >= 3) {
    features.push({ type: "Feature", properties: {}, geometry: { type: "Polygon", coordinates: [[...ring, ring[0]]] } });
  }
  map.getSource("draft")?.setData({ type: "FeatureCollection", features });
  map.getContainer().classList.toggle("drawing", draw.active);
  button("draw").classList.toggle("pressed", draw.active);
  button("finish").disabled = !draw.active || v.length < 3;
  $("#draw-status").textContent = draw.closed
    ? `area of ${v.length} corners drawn`
    : draw.active ? `${v.length} corner${v.length === 1 ? "" : "s"}; click to add` : "";
}

function startDrawing() {
  Object.assign(draw, { active: true, closed: false, vertices: [], cursor: null });
  map.doubleClickZoom.disable();
  renderDraft();
}

function finishDrawing() {
  if (draw.vertices.length < 3) return;
  Object.assign(draw, { active: false, closed: true, cursor: null });
  // Re-enabled after the double-click that finished has been handled.
  setTimeout(() => map.doubleClickZoom.enable(), 0);
  renderDraft();
  showPreview();
}

function clearDrawing() {
  Object.assign(draw, { active: false, closed: false, vertices: [], cursor: null });
  map.doubleClickZoom.enable();
  renderDraft();
  showPreview();
}

/** The drawn area as a GeoJSON Polygon, or null. */
function drawnPolygon() {
  if (!draw.closed) return null;
  const ring = draw.vertices.map(([x, y]) => [Number(x.toFixed(7)), Number(y.toFixed(7))]);
  return { type: "Polygon", coordinates: [[...ring, ring[0]]] };
}

map.on("click", (e) => {
  if (!draw.active) return;
  const last = draw.vertices.at(-1);
  // The two clicks of a double-click land on the same spot: one corner, not two.
  if (last) {
    const p = map.project(last);
    if (Math.hypot(p.x - e.point.x, p.y - e.point.y) < 4) return;
  }
  draw.vertices.push([e.lngLat.lng, e.lngLat.lat]);
  renderDraft();
});
map.on("dblclick", (e) => {
  if (!draw.active) return;
  e.preventDefault();
  finishDrawing();
});
map.on("mousemove", (e) => {
  if (!draw.active || draw.vertices.length === 0) return;
  draw.cursor = [e.lngLat.lng, e.lngLat.lat];
  renderDraft();
});
button("draw").addEventListener("click", startDrawing);
button("finish").addEventListener("click", finishDrawing);
button("clear").addEventListener("click", clearDrawing);
popupOnClick(map, () => [fillId("demand")], () => !draw.active);
keepFresh(map, () => ["demand", "roads"], 5000);

// ---- Creating an area, after a preview of what it would do. ----

/** The area as the API takes it, from the drawing and the form; null before a polygon is drawn. */
function areaBody() {
  const polygon = drawnPolygon();
  if (!polygon) return null;
  const body = { name: $("#area-name").value.trim(), polygon, weight: Number($("#area-weight").value || 1) };
  const budget = $("#area-budget").value.trim();
  const expires = $("#area-expires").value;
  if (budget) body.budget = Number(budget);
  if (expires) body.expires_at = new Date(expires).toISOString();
  return body;
}

let previewSeq = 0;

/** Asks the server what the drawn area would do and shows it; the latest request wins. */
async function showPreview() {
  const out = $("#area-preview");
  const body = areaBody();
  const seq = ++previewSeq;
  delete out.dataset.cells;
  if (!body || !key) {
    out.innerHTML = body ? `<span class="muted">a planner key is needed for a preview</span>` : "";
    return;
  }
  // What was shown stays (greyed) until the new figures come, so nothing jumps under the pointer.
  out.classList.add("stale");
  let p;
  try {
    p = await api("/api/v1/demand/preview", { key, method: "POST", body });
  } catch (e) {
    if (seq === previewSeq) {
      out.classList.remove("stale");
      out.innerHTML = `<span class="error">${esc(e.message)}</span>`;
    }
    return;
  }
  if (seq !== previewSeq) return;
  out.classList.remove("stale");
  const km = (m) => `${num(m / 1000)} km`;
  const pct = (v) => (v == null ? "no roads" : `${Math.round(v * 100)} %`);
  const rows = [
    ["cells", `${units(p.cells)} <span class="muted">(resolution ${esc(p.resolution)}; ${units(p.cells_never_captured)} never captured)</span>`],
    ["road length", `${km(p.road_length_m)} in ${units(p.cells_with_roads)} cells`],
    ["not driven lately", `${pct(p.uncovered_share)}${p.road_length_m ? ` <span class="muted">(${km(p.driven_m)} driven)</span>` : ""}`],
    ["reward weight", `×${num(p.weight_now.mean)} now → <b>×${num(p.weight_with_area.mean)}</b> with this area <span class="muted">(mean; max ×${num(p.weight_with_area.max)})</span>`],
  ];
  if (p.bounty) {
    rows.push(["bounty", `${units(p.bounty.per_cell)} base units to the first capture of each cell
      <span class="muted">(claims take at most ${units(p.bounty.epoch_pool)} an epoch, ${Math.round(p.bounty.pool_share * 100)} % of its emission)</span>`]);
  }
  out.dataset.cells = String(p.cells);
  out.innerHTML = `<div class="muted">if created:</div><table class="preview">${rows.map(([k, v]) => `<tr data-preview="${esc(k)}"><td>${esc(k)}</td><td>${v}</td></tr>`).join("")}</table>`;
}

for (const id of ["#area-weight", "#area-budget", "#area-expires"]) {
  $(id).addEventListener("change", showPreview);
}

$("#area-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#area-result");
  const fail = (message) => {
    out.className = "error";
    out.textContent = message;
  };
  const body = areaBody();
  if (!body) return fail("draw the area on the map first");
  if (!key) return fail("a planner key is needed");
  out.className = "muted";
  out.textContent = "creating…";
  try {
    const area = await api("/api/v1/demand", { key, method: "POST", body });
    out.className = "ok";
    out.dataset.created = area.name;
    out.textContent = `created area #${area.id} “${area.name}”: ${units(area.cells)} cells`;
    clearDrawing();
    await loadAreas();
    map.refreshTiles("demand");
  } catch (err) {
    fail(err.message);
  }
});

// ---- The areas. ----

let areas = [];

async function loadAreas() {
  try {
    areas = (await api("/api/v1/demand")).areas;
    $("#areas-error").textContent = "";
  } catch (e) {
    $("#areas-error").textContent = `demand areas: ${e.message}`;
    return;
  }
  $("#areas").innerHTML = areas.map((a) => `
    <tr data-area="${a.id}" data-name="${esc(a.name)}" title="created ${esc(when(a.created_at))}">
      <td>${esc(a.name)}</td>
      <td class="num">${num(a.weight)}</td>
      <td class="num">${units(a.cells)}</td>
      <td class="num">${a.budget == null ? "" : units(a.budget)}</td>
      <td class="num">${a.budget == null ? "" : `${units(a.paid)} <span class="muted">(${units(a.claimed_cells)} cells)</span>`}</td>
      <td>${esc(when(a.expires_at))}${a.refunded != null ? ` <span class="muted">refunded ${units(a.refunded)}</span>` : ""}</td>
    </tr>`).join("") || `<tr><td colspan="6" class="muted">none yet</td></tr>`;
  await map.styled;
  map.getSource("areas").setData({
    type: "FeatureCollection",
    features: areas.map((a) => ({ type: "Feature", properties: { id: a.id, name: a.name }, geometry: a.polygon })),
  });
}

$("#areas").addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-area]");
  const area = row && areas.find((a) => String(a.id) === row.dataset.area);
  if (!area) return;
  const flat = (c) => (typeof c[0] === "number" ? [c] : c.flatMap(flat));
  fitPoints(map, flat(area.polygon?.coordinates ?? []), { padding: 40 });
});

// ---- The policy: schedule and what-if. ----

let policyText = "";

async function loadPolicy() {
  let p;
  try {
    p = await api("/api/v1/policy");
  } catch (e) {
    $("#policy-error").textContent = `policy: ${e.message}`;
    return;
  }
  const ep = p.epoch;
  const hours = (s) => (s % 3600 === 0 ? `${s / 3600} h` : `${s} s`);
  $("#policy-head").innerHTML = `policy v${esc(p.version)} <span class="mono">${esc(String(p.hash).slice(0, 16))}</span>
    · epochs of ${hours(ep.length_seconds)} from ${esc(when(ep.genesis))}, closed ${hours(ep.grace_seconds)} after their end
    · ${units(ep.emission)} base units each · ${p.current_epoch == null ? "before the first epoch" : `now in epoch ${esc(p.current_epoch)}`}`;
  $("#schedule").innerHTML = p.schedule.map((s) => `
    <tr data-epoch="${esc(s.epoch)}"${s.epoch === p.current_epoch ? ' style="font-weight:600"' : ""}>
      <td class="num">${esc(s.epoch)}</td><td>${esc(when(s.start))}</td><td>${esc(when(s.end))}</td>
      <td class="num">${units(s.emission)}</td><td>${esc(when(s.closes_after))}</td>
    </tr>`).join("");
  policyText = p.text;
  if (!$("#policy-text").value) $("#policy-text").value = policyText;
  if (!$("#sim-epoch").value) {
    let closed = [];
    try {
      closed = (await api("/api/v1/epochs")).epochs.filter((e) => e.status === "closed").map((e) => e.epoch);
    } catch {
      // Without the list the current epoch's predecessor is the best guess.
    }
    const guess = closed.length ? Math.max(...closed) : Math.max(0, (p.current_epoch ?? 0) - 1);
    $("#sim-epoch").value = String(guess);
  }
}

button("reset-policy").addEventListener("click", () => {
  $("#policy-text").value = policyText;
});

function root(r) {
  return `<span class="mono" title="${esc(r)}">${esc(String(r ?? "").slice(0, 16))}…</span>`;
}

/** A closed epoch replayed under another policy: totals, contributors, the cells most changed. */
function simulationHTML(r) {
  const same = r.recorded.root === r.simulated.root;
  const magnitude = (v) => Math.abs(Number(v));
  const cells = [...r.cells].sort((a, b) => magnitude(b.delta) - magnitude(a.delta)).slice(0, 25);
  return `
    <table data-simulated="${esc(r.epoch)}">
      <thead><tr><th>epoch ${esc(r.epoch)}</th><th class="num">distributed</th><th class="num">unallocated</th><th>root</th></tr></thead>
      <tbody>
        <tr><td>recorded</td><td class="num">${units(r.recorded.distributed)}</td><td class="num">${units(r.recorded.unallocated)}</td><td>${root(r.recorded.root)}</td></tr>
        <tr><td>simulated <span class="muted">v${esc(r.simulated.policy_version)}</span></td><td class="num">${units(r.simulated.distributed)}</td><td class="num">${units(r.simulated.unallocated)}</td><td>${root(r.simulated.root)}</td></tr>
      </tbody>
    </table>
    <p class="${same ? "ok" : "muted"}">${same ? "same root: this policy pays exactly what was paid" : "the roots differ"}</p>
    <table>
      <thead><tr><th>contributor</th><th class="num">received</th><th class="num">simulated</th><th class="num">delta</th></tr></thead>
      <tbody>${r.contributors.map((c) => `
        <tr data-contributor="${esc(c.contributor)}"><td>${esc(c.contributor)}</td><td class="num">${units(c.received)}</td>
        <td class="num">${units(c.simulated)}</td><td class="num">${delta(c.delta)}</td></tr>`).join("")
        || `<tr><td colspan="4" class="muted">no contributors</td></tr>`}</tbody>
    </table>
    <h2>Cells most changed</h2>
    <table>
      <thead><tr><th>cell</th><th class="num">received</th><th class="num">simulated</th><th class="num">delta</th></tr></thead>
      <tbody>${cells.map((c) => `
        <tr><td class="mono">${esc(c.cell)}</td><td class="num">${units(c.received)}</td>
        <td class="num">${units(c.simulated)}</td><td class="num">${delta(c.delta)}</td></tr>`).join("")
        || `<tr><td colspan="4" class="muted">no cells</td></tr>`}</tbody>
    </table>
    ${r.cells.length > cells.length ? `<div class="muted">${r.cells.length - cells.length} more cells</div>` : ""}`;
}

$("#simulate-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = $("#sim-error");
  const out = $("#sim-result");
  err.textContent = "";
  if (!key) {
    err.textContent = "a planner key is needed";
    return;
  }
  const epoch = $("#sim-epoch").value.trim();
  out.innerHTML = `<p class="muted">simulating epoch ${esc(epoch)}…</p>`;
  let r;
  try {
    r = await api(`/api/v1/policy/simulate?epoch=${encodeURIComponent(epoch)}`, {
      key, method: "POST", body: $("#policy-text").value, contentType: "application/toml",
    });
  } catch (x) {
    out.innerHTML = "";
    err.textContent = x.message;
    return;
  }
  out.innerHTML = simulationHTML(r);
});

// ---- Governance: proposals, their simulated effect, signed ballots. ----

const state = (p) => p.outcome ?? (new Date(p.voting_ends_at) > new Date() ? "open" : "closing");

async function loadProposals() {
  try {
    const [policy, list] = await Promise.all([api("/api/v1/policy"), api("/api/v1/policy/proposals")]);
    $("#in-force").innerHTML = "in force: " + policy.in_force.map((f) =>
      `v${esc(f.version)} from epoch ${esc(f.from_epoch)}${f.proposal ? ` (proposal #${esc(f.proposal)})` : " (genesis)"}`).join(" · ");
    $("#proposals").innerHTML = list.proposals.map((p) => `
      <tr data-proposal="${esc(p.id)}" class="clickable">
        <td class="num">${esc(p.id)}</td><td>${esc(p.title)}</td><td class="num">${esc(p.version)}</td>
        <td>${esc(p.proposed_by)}</td>
        <td data-state="${esc(state(p))}">${esc(state(p))}${p.activates_epoch != null ? ` · epoch ${esc(p.activates_epoch)}` : ""}</td>
        <td>${esc(when(p.voting_ends_at))}</td>
      </tr>`).join("") || `<tr><td colspan="6" class="muted">no proposals</td></tr>`;
    $("#proposals-error").textContent = "";
  } catch (e) {
    $("#proposals-error").textContent = `proposals: ${e.message}`;
  }
}

let shown = null;

async function showProposal(id) {
  let v;
  try {
    v = await api(`/api/v1/policy/proposals/${encodeURIComponent(id)}`);
  } catch (e) {
    $("#proposal").innerHTML = `<div class="error">${esc(e.message)}</div>`;
    return;
  }
  shown = v.id;
  const t = v.tally;
  const sims = Array.isArray(v.simulation) ? v.simulation : [];
  $("#proposal").innerHTML = `
    <h2 data-shown="${esc(v.id)}">#${esc(v.id)} ${esc(v.title)}</h2>
    <p>${esc(v.rationale) || '<span class="muted">no rationale</span>'}</p>
    <p class="muted">v${esc(v.version)} <span class="mono">${esc(String(v.policy_hash).slice(0, 16))}</span>
      amends <span class="mono">${esc(String(v.base_hash).slice(0, 16))}</span> · proposed by ${esc(v.proposed_by)}
      · ${esc(v.voting_rules.weighting)} weighting, quorum ${num(v.voting_rules.quorum)}, threshold ${num(v.voting_rules.threshold)}
      · electorate ${esc(v.electorate.length)} (epochs ${esc(v.electorate_from ?? "–")}–${esc(v.electorate_to ?? "–")})</p>
    <p id="tally" data-yes="${esc(t.yes)}" data-no="${esc(t.no)}">yes ${esc(t.yes)} · no ${esc(t.no)} · abstain ${esc(t.abstain)}
      of ${esc(t.eligible)} · quorum ${t.quorum_met ? "met" : "not met"} · ${v.outcome ? `<strong>${esc(v.outcome)}</strong>` : t.passed ? "passing so far" : "not passing so far"}
      ${v.activates_epoch != null ? ` · in force from epoch ${esc(v.activates_epoch)}` : ""}</p>
    ${v.open ? `<p><button type="button" data-vote="yes">vote yes</button> <button type="button" data-vote="no">vote no</button>
      <button type="button" data-vote="abstain">abstain</button> <span id="vote-result" aria-live="polite"></span></p>` : ""}
    <details><summary>ballots (${esc(v.votes.length)})</summary><table>
      <thead><tr><th>contributor</th><th>choice</th><th>device</th><th>signature</th><th>cast</th></tr></thead>
      <tbody>${v.votes.map((b) => `<tr><td>${esc(b.contributor)}</td><td>${esc(b.choice)}</td><td class="mono">${esc(b.device)}</td>
        <td>${b.signature_valid ? "holds" : '<span class="error">does not hold</span>'}</td><td>${esc(when(b.cast_at))}</td></tr>`).join("")}</tbody>
    </table></details>
    <h2>Simulated effect</h2>
    ${sims.map(simulationHTML).join("") || '<p class="muted">no closed epoch to replay yet</p>'}`;
}

$("#proposals").addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-proposal]");
  if (row) showProposal(row.dataset.proposal);
});

$("#propose-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#propose-result");
  if (!key) {
    out.innerHTML = '<span class="error">a planner key is needed</span>';
    return;
  }
  out.textContent = "proposing (simulating it on the last closed epochs)…";
  try {
    const v = await api("/api/v1/policy/proposals", {
      key, method: "POST",
      body: { title: $("#proposal-title").value, rationale: $("#proposal-rationale").value, policy: $("#policy-text").value },
    });
    out.innerHTML = `<span class="ok">proposal #${esc(v.id)}: the vote closes ${esc(when(v.voting_ends_at))}</span>`;
    await loadProposals();
    await showProposal(v.id);
  } catch (x) {
    out.innerHTML = `<span class="error">${esc(x.message)}</span>`;
  }
});

// A ballot is a request signed the way devices sign (covermap-signature-v2), by a key this
// browser makes once and registers as a device of the voter's, with the voter's device key.
let voterKey = null;
keyField($("#voter-form"), "voter", ({ key: k }) => { voterKey = k; });

const hex = (bytes) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function browserDevice(voter) {
  const name = "covermap.voting-device";
  const saved = JSON.parse(localStorage.getItem(name) || "null");
  if (saved && saved.voter === voter) {
    const privateKey = await crypto.subtle.importKey("pkcs8", unb64(saved.pkcs8), { name: "Ed25519" }, false, ["sign"]);
    return { ...saved, privateKey };
  }
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const publicKey = hex(await crypto.subtle.exportKey("raw", pair.publicKey));
  const device = `browser-${publicKey.slice(0, 16)}`;
  const record = await api("/api/v1/devices", { key: voter, method: "POST", body: { device, public_key: publicKey } });
  const pkcs8 = b64(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const dev = { voter, device, contributor: record.contributor ?? "", pkcs8 };
  localStorage.setItem(name, JSON.stringify(dev));
  return { ...dev, privateKey: pair.privateKey };
}

async function castBallot(id, choice) {
  const dev = await browserDevice(voterKey);
  const path = `/api/v1/policy/proposals/${id}/votes`;
  const body = JSON.stringify({ choice });
  const digest = hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body)));
  const timestamp = Math.floor(Date.now() / 1000);
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const message = ["covermap-signature-v2", dev.device, dev.contributor, "POST", path, digest, timestamp, nonce].join("\n");
  const signature = hex(await crypto.subtle.sign({ name: "Ed25519" }, dev.privateKey, new TextEncoder().encode(message)));
  const r = await fetch(path, {
    method: "POST",
    headers: {
      "Content-Type": "application/json", "X-Covermap-Device": dev.device, "X-Covermap-Timestamp": String(timestamp),
      "X-Covermap-Nonce": nonce, "X-Covermap-Signature": signature,
    },
    body,
  });
  const answer = await r.json().catch(() => null);
  if (!r.ok) throw new Error(answer?.error?.message ?? `${r.status} ${r.statusText}`);
  return answer;
}

$("#proposal").addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-vote]");
  if (!b || shown == null) return;
  const out = $("#vote-result");
  if (!voterKey) {
    out.innerHTML = '<span class="error">your device key is needed to vote</span>';
    return;
  }
  out.textContent = "signing…";
  try {
    const ballot = await castBallot(shown, b.dataset.vote);
    const id = shown;
    await showProposal(id);
    $("#vote-result").innerHTML = `<span class="ok" data-ballot="${esc(ballot.id)}">your ballot (${esc(ballot.choice)}) is counted</span>`;
  } catch (x) {
    out.innerHTML = `<span class="error">${esc(x.message)}</span>`;
  }
});

loadAreas();
loadPolicy();
loadProposals();
