// The driver's page: the device's uploads with what was kept and left out, rewards per epoch,
// the Merkle proof of an epoch's cumulative total, checked here in the browser, and erasure of
// an upload or all of them (after a confirm step that says what goes and what stays).
/* global maplibregl */
import {
  $, api, createMap, esc, every, fitPoints, keyField, measuresHTML, num, reasonWords, units, when,
} from "./common.js";

let key = null;
const details = new Map(); // upload id -> {html, mount} of its opened details
const confirming = new Set(); // upload ids whose erase is waiting for its confirmation

// ---- Uploads ----

/** How many of an upload's fixes and items processing left out. */
const leftOut = (u) => (u.fixes_rejected ?? 0) + (u.observations_rejected ?? 0);

/** The details button's words while the details are closed. */
const detailsLabel = (u) => (leftOut(u) ? `details · ${units(leftOut(u))} left out` : "details");

function uploadRow(u) {
  const pair = (a, b) => (a == null && b == null ? "" : `${units(a ?? 0)} / ${units(b ?? 0)}`);
  const open = details.has(String(u.id));
  const left = leftOut(u);
  // Details where there is something to show: a processed upload's drive, or what was left out.
  const label = open ? "hide" : detailsLabel(u);
  const button = u.status === "processed" || left
    ? `<button type="button" data-action="details" data-upload="${u.id}">${label}</button>` : "";
  const erase = `<button type="button" class="danger" data-action="erase" data-upload="${u.id}">Erase</button>`;
  return `
    <tr data-upload="${u.id}" data-status="${esc(u.status)}" data-kind="${esc(u.kind)}">
      <td class="num">${u.id}</td><td>${esc(when(u.received_at))}</td><td>${esc(u.kind)}</td>
      <td class="${u.status === "rejected" ? "error" : u.status === "processed" ? "ok" : "muted"}">${esc(u.status)}</td>
      <td class="num">${pair(u.fixes_accepted, u.fixes_rejected)}</td>
      <td class="num">${pair(u.observations_accepted, u.observations_rejected)}</td>
      <td class="num">${u.cells == null ? "" : units(u.cells)}</td>
      <td class="num">${u.matched_m == null ? "" : `${num(u.matched_m / 1000)} km`}</td>
      <td>${esc(u.reason)}</td>
      <td>${button} ${erase}</td>
    </tr>${confirming.has(String(u.id)) ? confirmRow(u.id) : ""}${open ? details.get(String(u.id)).html : ""}`;
}

/** What an erasure takes and what it leaves, in the words the confirm step shows. */
const ERASE_WORDS = `Its bytes, its frames (originals and blurred copies) and the places it drove
  (coverage, matched roads, radio samples, where fixes were left out) are deleted for good, and it
  counts in no later epoch. The rewards ledger keeps its history: amounts already paid stay, and
  closed epochs still verify.`;

function confirmRow(id) {
  return `<tr class="detail" data-confirm="${id}"><td colspan="10"><div class="confirm">
    <p><b>Erase upload ${id}?</b> ${ERASE_WORDS}</p>
    <button type="button" class="danger primary" data-action="erase-confirm" data-upload="${id}">Erase upload ${id} for good</button>
    <button type="button" data-action="erase-cancel" data-upload="${id}">Keep it</button>
  </div></td></tr>`;
}

let uploads = [];
let shown = "";

async function loadUploads() {
  if (!key) {
    $("#uploads").innerHTML = `<tr><td colspan="10" class="muted">a device key is needed</td></tr>`;
    return;
  }
  try {
    const r = await api("/api/v1/uploads?limit=200", { key });
    // Drawn again only when something changed, so opened maps are not rebuilt every refresh.
    const seen = JSON.stringify(r.uploads);
    if (seen === shown) return;
    shown = seen;
    uploads = r.uploads;
    // Maps of opened drives survive the refresh: their rows are drawn again around them.
    redrawUploads();
    $("#uploads-error").textContent = "";
  } catch (e) {
    $("#uploads-error").textContent = e.message;
  }
}

/** A frame refusal's detail is `NAME: {scores}`; the scores as an object, or null. */
function refusalScores(detail) {
  const at = String(detail ?? "").indexOf(": {");
  if (at < 0) return null;
  try {
    return JSON.parse(detail.slice(at + 2));
  } catch {
    return null;
  }
}

/** What was left out, grouped by why, each in words, with readable details. */
function leftOutHTML(list) {
  if (!list.length) return "";
  const counts = new Map();
  for (const r of list) {
    const k = `${r.stage}:${r.reason}`;
    counts.set(k, { stage: r.stage, reason: r.reason, n: (counts.get(k)?.n ?? 0) + 1 });
  }
  const summary = [...counts.values()].sort((a, b) => b.n - a.n)
    .map((c) => `<li data-left-out="${esc(c.stage)}:${esc(c.reason)}">${units(c.n)} ${esc(c.stage)}${c.n === 1 ? "" : "s"}: ${esc(reasonWords(c.stage, c.reason))}</li>`)
    .join("");
  const readable = (r) => {
    const scores = r.stage === "frame" ? refusalScores(r.detail) : null;
    if (scores) return measuresHTML(r.reason, scores);
    return esc(r.detail ?? "");
  };
  const lines = list.slice(0, 100).map((r) => `<tr><td>${esc(r.stage)} ${r.item}</td>
    <td>${esc(reasonWords(r.stage, r.reason))} <span class="muted mono">${esc(r.reason)}</span></td>
    <td>${readable(r)}</td></tr>`).join("");
  return `<h3>Left out</h3><ul class="left-out">${summary}</ul>
    <table><thead><tr><th>item</th><th>why</th><th>detail</th></tr></thead><tbody>${lines}</tbody></table>
    ${list.length > 100 ? `<div class="muted">and ${units(list.length - 100)} more</div>` : ""}`;
}

/** The drive's frames as thumbnails (published ones, blurred) with their verdicts. */
function framesHTML(u, frames, refused) {
  if (!frames.length && !refused.length) return "";
  const kept = frames.map((f) => {
    const v = f.vision;
    const verdict = !v ? "waiting for the vision stage" : "published";
    const blurred = v ? ` · ${units(v.faces)} face${v.faces === 1 ? "" : "s"}, ${units(v.plates)} plate${v.plates === 1 ? "" : "s"} blurred` : "";
    const img = v ? `<img src="/api/v1/frames/${u}/${f.frame}/image" alt="frame ${f.frame}, blurred" loading="lazy">` : `<div class="thumb none">not yet looked at</div>`;
    return `<figure class="frame-thumb" data-frame="${f.frame}" data-verdict="${v ? "published" : "waiting"}">${img}
      <figcaption><b>frame ${f.frame}</b> · ${verdict}${blurred}<br><span class="muted">${esc(when(f.captured_at))}</span></figcaption></figure>`;
  });
  const out = refused.map((r) => `<figure class="frame-thumb" data-frame="${r.item}" data-verdict="refused">
      <div class="thumb none">not published</div>
      <figcaption><b>frame ${r.item}</b> · <span class="error">refused: ${esc(reasonWords("frame", r.reason))}</span></figcaption></figure>`);
  return `<h3>Frames</h3><div class="frame-grid">${[...kept, ...out].join("")}</div>`;
}

const EMPTY = { type: "FeatureCollection", features: [] };

/** The fixes left out where their detail places them (`at LAT, LON`), as GeoJSON points. */
function leftOutFixes(rejections) {
  const features = [];
  for (const r of rejections) {
    const m = r.stage === "fix" && /^at (-?\d+(?:\.\d+)?), (-?\d+(?:\.\d+)?)/.exec(r.detail ?? "");
    if (!m) continue;
    features.push({
      type: "Feature",
      properties: { item: r.item, reason: r.reason, why: reasonWords("fix", r.reason) },
      geometry: { type: "Point", coordinates: [Number(m[2]), Number(m[1])] },
    });
  }
  return { type: "FeatureCollection", features };
}

/**
 * A small map of the drive: the roads it was matched to, its frames by verdict, and the fixes
 * left out (click one for why).
 */
function driveMap(container, roads, frames, dropped) {
  const map = createMap(container, {
    hash: false,
    extra: {
      sources: {
        driven: { type: "geojson", data: roads ?? EMPTY },
        dropped: { type: "geojson", data: dropped },
        shots: {
          type: "geojson",
          data: {
            type: "FeatureCollection",
            features: frames.map((f) => ({
              type: "Feature",
              properties: { frame: f.frame, verdict: f.vision ? "published" : "waiting" },
              geometry: { type: "Point", coordinates: [f.pos.lon, f.pos.lat] },
            })),
          },
        },
      },
      layers: [
        { id: "driven-line", type: "line", source: "driven",
          layout: { "line-cap": "round", "line-join": "round" },
          paint: { "line-color": "#2b6cb0", "line-width": 4, "line-opacity": 0.85 } },
        { id: "shots-dot", type: "circle", source: "shots",
          paint: {
            "circle-radius": 4,
            "circle-color": ["match", ["get", "verdict"], "published", "#1a9850", "#8a96a3"],
            "circle-stroke-color": "#fff", "circle-stroke-width": 1,
          } },
        { id: "dropped-dot", type: "circle", source: "dropped",
          paint: { "circle-radius": 5, "circle-color": "#d73027", "circle-stroke-color": "#fff", "circle-stroke-width": 1.5 } },
      ],
    },
  });
  map.on("click", "dropped-dot", (e) => {
    const p = e.features[0].properties;
    new maplibregl.Popup().setLngLat(e.lngLat)
      .setHTML(`<strong>fix ${esc(p.item)} left out</strong>${esc(p.why)} <span class="muted mono">${esc(p.reason)}</span>`)
      .addTo(map);
  });
  const points = [
    ...(roads?.features ?? []).flatMap((f) => f.geometry.coordinates),
    ...frames.map((f) => [f.pos.lon, f.pos.lat]),
    ...dropped.features.map((f) => f.geometry.coordinates),
  ];
  // After the map's own opening move to the whole network.
  map.placed.then(() => fitPoints(map, points, { padding: 24, maxZoom: 17, duration: 0 }));
  return map;
}

async function openDetails(u) {
  const id = String(u.id);
  const [matched, frames, rejections] = await Promise.all([
    api(`/api/v1/uploads/${id}/matched`, { key }).catch(() => null),
    u.kind === "drive" ? api(`/api/v1/uploads/${id}/frames`, { key }).then((r) => r.frames).catch(() => []) : [],
    leftOut(u) ? api(`/api/v1/uploads/${id}/rejections`, { key }).then((r) => r.rejections) : [],
  ]);
  const roads = matched?.roads;
  const driven = (matched?.stretches ?? []).reduce((m, s) => m + s.length_m, 0);
  const refused = rejections.filter((r) => r.stage === "frame");
  const dropped = leftOutFixes(rejections);
  const hasMap = (roads?.features?.length ?? 0) > 0 || frames.length > 0 || dropped.features.length > 0;
  const mapId = `drive-map-${id}`;
  const parts = [
    hasMap ? `<h3>Map</h3><div class="muted">${roads?.features?.length ? `${num(driven / 1000)} km matched to ${units(roads.features.length)} road segments (blue)` : "no roads matched"}${frames.length ? "; frames by verdict (green: published, grey: waiting)" : ""}${dropped.features.length ? `; ${units(dropped.features.length)} fixes left out (red: click one for why)` : ""}</div>
      <div id="${mapId}" class="map drive-map" data-segments="${roads?.features?.length ?? 0}" data-left-out="${dropped.features.length}"></div>` : "",
    framesHTML(id, frames, refused),
    leftOutHTML(rejections),
  ].filter(Boolean);
  const html = `<tr class="detail" data-detail="${id}"><td colspan="10">${parts.join("") || `<span class="muted">nothing more to show: nothing was left out</span>`}</td></tr>`;
  let map = null;
  const mount = () => {
    const el = document.getElementById(mapId);
    if (!el || !hasMap) return;
    map?.remove();
    map = driveMap(mapId, roads, frames, dropped);
  };
  return { html, mount };
}

/** Draws the uploads from what was last fetched, with opened details and confirm steps. */
function redrawUploads() {
  $("#uploads").innerHTML = uploads.map(uploadRow).join("")
    || `<tr><td colspan="10" class="muted">no uploads yet</td></tr>`;
  for (const [, d] of details) d.mount?.();
}

/** After an erasure: the uploads and the erasures fetched again. */
async function afterErasure() {
  shown = "";
  await Promise.all([loadUploads(), loadErasures()]);
}

async function eraseUpload(id, b) {
  b.disabled = true;
  try {
    await api(`/api/v1/uploads/${encodeURIComponent(id)}`, { key, method: "DELETE" });
    confirming.delete(id);
    details.delete(id);
    $("#uploads-error").textContent = "";
  } catch (x) {
    b.disabled = false;
    $("#uploads-error").textContent = `upload ${id} was not erased: ${x.message}`;
    return;
  }
  await afterErasure();
}

$("#uploads").addEventListener("click", async (e) => {
  const asked = e.target.closest("button[data-action^=\"erase\"]");
  if (asked) {
    const id = asked.dataset.upload;
    if (asked.dataset.action === "erase-confirm") {
      await eraseUpload(id, asked);
      return;
    }
    if (asked.dataset.action === "erase") confirming.add(id);
    else confirming.delete(id);
    redrawUploads();
    return;
  }
  const b = e.target.closest('button[data-action="details"]');
  if (!b) return;
  const id = b.dataset.upload;
  const u = uploads.find((x) => String(x.id) === id);
  if (details.has(id)) {
    details.delete(id);
    $(`tr[data-detail="${id}"]`)?.remove();
    b.textContent = detailsLabel(u);
    return;
  }
  b.disabled = true;
  let d;
  try {
    d = await openDetails(u);
  } catch (x) {
    d = { html: `<tr class="detail" data-detail="${id}"><td colspan="10" class="error">${esc(x.message)}</td></tr>` };
  }
  details.set(id, d);
  b.disabled = false;
  b.textContent = "hide";
  b.closest("tr").insertAdjacentHTML("afterend", d.html);
  d.mount?.();
});

// ---- Erasures ----

$('button[data-action="erase-all"]').addEventListener("click", () => {
  if (!key) {
    $("#erase-all-confirm").innerHTML = `<p class="error">a device key is needed</p>`;
    return;
  }
  $("#erase-all-confirm").innerHTML = `<div class="confirm">
    <p><b>Erase all your uploads?</b> Every upload of yours (your contributor's, from any of your
    devices) goes. ${ERASE_WORDS}</p>
    <button type="button" class="danger primary" data-action="erase-all-confirm">Erase all of them for good</button>
    <button type="button" data-action="erase-all-cancel">Keep them</button>
  </div>`;
});

$("#erase-all-confirm").addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-action]");
  if (!b) return;
  if (b.dataset.action === "erase-all-cancel") {
    $("#erase-all-confirm").innerHTML = "";
    return;
  }
  b.disabled = true;
  try {
    const r = await api("/api/v1/erasures", { key, method: "POST" });
    $("#erase-all-confirm").innerHTML = `<p class="ok" data-erased="${r.erasures.length}">${units(r.erasures.length)} upload${r.erasures.length === 1 ? "" : "s"} erased</p>`;
    confirming.clear();
    details.clear();
  } catch (x) {
    b.disabled = false;
    $("#erase-all-confirm").insertAdjacentHTML("beforeend", `<p class="error">${esc(x.message)}</p>`);
    return;
  }
  await afterErasure();
});

/** What an erasure took, in words: only the kinds it took any of. */
function erasedWords(items) {
  const words = Object.entries(items ?? {}).filter(([, n]) => n > 0)
    .map(([k, n]) => `${units(n)} ${k.replace(/_/g, " ")}`);
  return words.join(", ") || "nothing left to take";
}

async function loadErasures() {
  if (!key) {
    $("#erasures").innerHTML = `<tr><td colspan="6" class="muted">a device key is needed</td></tr>`;
    return;
  }
  try {
    const r = await api("/api/v1/erasures?limit=200", { key });
    $("#erasures").innerHTML = r.erasures.map((x) => `
      <tr data-erased="${x.upload_id}">
        <td class="num">${x.upload_id}</td><td>${esc(when(x.requested_at))}</td><td>${esc(x.requested_by)}</td>
        <td>${esc(erasedWords(x.erased))}</td>
        <td class="num">${x.counted_in_epoch ?? ""}</td>
        <td>${x.completed_at ? esc(when(x.completed_at)) : '<span class="muted">blobs still to delete</span>'}</td>
      </tr>`).join("") || `<tr><td colspan="6" class="muted">nothing erased</td></tr>`;
    $("#erasures-error").textContent = "";
  } catch (x) {
    $("#erasures-error").textContent = x.message;
  }
}

// ---- The estimate before driving: a route drawn or read from a file, POST /api/v1/estimate ----

const route = { drawing: false, line: [], file: null, map: null };

function estimateMap() {
  if (route.map) return route.map;
  route.map = createMap("estimate-map", {
    hash: false,
    extra: {
      sources: { route: { type: "geojson", data: EMPTY }, estimate: { type: "geojson", data: EMPTY } },
      layers: [
        { id: "estimate-fill", type: "fill", source: "estimate",
          paint: {
            "fill-color": ["interpolate", ["linear"], ["get", "points"], 0, "#f7fbff", 1000000, "#6baed6", 3000000, "#08306b"],
            "fill-opacity": 0.7,
          } },
        { id: "estimate-bounty", type: "line", source: "estimate", filter: [">", ["get", "bounty"], 0],
          paint: { "line-color": "#d95f0e", "line-width": 2 } },
        { id: "route-line", type: "line", source: "route",
          paint: { "line-color": "#2b6cb0", "line-width": 3, "line-dasharray": [2, 1] } },
      ],
    },
  });
  const map = route.map;
  window.covermap = { ...(window.covermap ?? {}), map };
  map.on("click", (e) => {
    if (!route.drawing) return;
    route.line.push([Number(e.lngLat.lng.toFixed(7)), Number(e.lngLat.lat.toFixed(7))]);
    drawRoute();
  });
  map.on("click", "estimate-fill", (e) => {
    if (route.drawing) return;
    const p = e.features[0].properties;
    new maplibregl.Popup().setLngLat(e.lngLat).setHTML(`<div class="popup"><strong>cell ${esc(p.cell)}</strong>
      <table>${[["points", num(p.points / 1e6, 3)], ["bounty", units(p.bounty)], ["weight", num(p.weight)],
        ["demand", num(p.demand)], ["staleness", num(p.staleness)], ["coverage gap", num(p.coverage_gap)],
        ["last capture", p.last_seen && p.last_seen !== "null" ? when(p.last_seen) : "never"]]
        .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("")}</table></div>`).addTo(map);
  });
  return map;
}

function drawRoute() {
  const map = estimateMap();
  const line = route.line;
  map.getSource("route")?.setData(line.length > 1
    ? { type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: line } } : EMPTY);
  map.getContainer().classList.toggle("drawing", route.drawing);
  $('[data-action="route-draw"]').classList.toggle("pressed", route.drawing);
  $('[data-action="route-finish"]').disabled = !route.drawing || line.length < 2;
  $("#route-status").textContent = route.file
    ? `file ${route.file.name}`
    : route.drawing ? `${line.length} point${line.length === 1 ? "" : "s"}; click to add`
      : line.length > 1 ? `route of ${line.length} points drawn` : "";
}

$('[data-action="route-draw"]').addEventListener("click", () => {
  Object.assign(route, { drawing: true, line: [], file: null });
  $("#route-file").value = "";
  drawRoute();
});
$('[data-action="route-finish"]').addEventListener("click", () => {
  route.drawing = false;
  drawRoute();
});
$("#route-file").addEventListener("change", (e) => {
  Object.assign(route, { drawing: false, line: [], file: e.target.files[0] ?? null });
  drawRoute();
});

/** The request body: the file's route (GPX text, or GeoJSON) or the drawn line. */
async function estimateBody() {
  const at = $("#estimate-at").value;
  const body = at ? { at: new Date(at).toISOString() } : {};
  if (route.file) {
    const text = await route.file.text();
    if (text.trimStart().startsWith("<")) return { ...body, gpx: text };
    let geo;
    try {
      geo = JSON.parse(text);
    } catch {
      throw new Error(`${route.file.name} is neither GPX nor GeoJSON`);
    }
    const kind = geo.type === "Feature" ? geo.geometry?.type : geo.type;
    return /Polygon/.test(kind ?? "") ? { ...body, area: geo } : { ...body, route: geo };
  }
  if (route.line.length < 2) throw new Error("draw a route (two points or more) or choose a file first");
  return { ...body, route: { type: "LineString", coordinates: route.line } };
}

const range = (r) => (r ? `${units(r.low)} – ${units(r.high)} (expected ${units(r.expected)})` : "no closed epoch to measure against yet");

async function showEstimate() {
  $("#estimate-error").textContent = "";
  let e;
  try {
    e = await api("/api/v1/estimate", { method: "POST", body: await estimateBody() });
  } catch (x) {
    $("#estimate-error").textContent = x.message;
    return;
  }
  const map = estimateMap();
  map.getSource("estimate")?.setData(e.hexagons);
  const features = e.hexagons.features;
  fitPoints(map, features.flatMap((f) => f.geometry.coordinates[0]), { padding: 24, maxZoom: 17, duration: 0 });
  const epochs = e.basis.trailing_epochs.map((t) => t.epoch);
  const top = [...features].sort((a, b) => b.properties.points - a.properties.points).slice(0, 20);
  $("#estimate-result").innerHTML = `
    <dl class="stats" data-cells="${e.cells}" data-points="${e.points}">
      <dt>cells crossed</dt><dd>${units(e.cells)}${e.route_m ? ` · ${num(e.route_m / 1000)} km` : ""}</dd>
      <dt>points</dt><dd>${num(e.points / 1e6, 3)}</dd>
      <dt>bounties</dt><dd>${units(e.bounty)}</dd>
      <dt>base units</dt><dd>${range(e.base)}</dd>
      <dt>in all</dt><dd>${range(e.total)}</dd>
    </dl>
    <div class="muted">At ${esc(when(e.at))}. Points count one capture per cell (a camera drive's
      first frame there), radio not counted. The range is your share of the base pool under each
      of the last closed epochs${epochs.length ? ` (${epochs.join(", ")})` : ""}: low under the
      busiest, high under the quietest. Bounties pay only a cell's first capture.</div>
    <table><thead><tr><th>cell</th><th class="num">points</th><th class="num">bounty</th>
      <th class="num">weight</th><th class="num">demand</th><th class="num">staleness</th><th class="num">gap</th></tr></thead>
    <tbody>${top.map((f) => { const p = f.properties; return `<tr data-cell="${esc(p.cell)}">
      <td class="mono">${esc(p.cell)}</td><td class="num">${num(p.points / 1e6, 3)}</td><td class="num">${units(p.bounty)}</td>
      <td class="num">${num(p.weight)}</td><td class="num">${num(p.demand)}</td><td class="num">${num(p.staleness)}</td>
      <td class="num">${num(p.coverage_gap)}</td></tr>`; }).join("")}</tbody></table>
    ${features.length > top.length ? `<div class="muted">the ${top.length} cells worth most of ${units(features.length)}</div>` : ""}`;
}

$("#estimate-form").addEventListener("submit", (e) => {
  e.preventDefault();
  showEstimate();
});
estimateMap();

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
  shown = "";
  if (me?.contributor) $("#contributor").value = me.contributor;
  confirming.clear();
  $("#erase-all-confirm").innerHTML = "";
  loadUploads();
  loadErasures();
  loadRewards();
});
every(10000, () => (key ? loadUploads() : undefined));
