// The coverage map: roads and covered H3 cells from the JSON API, drawn on a canvas in Web
// Mercator, refreshed every few seconds.
"use strict";
const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
let roads = [], cells = [], view = null, drag = null;

const merc = ([lon, lat]) => {
  const x = (lon + 180) / 360;
  const s = Math.sin((lat * Math.PI) / 180);
  return [x, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
};

function fit(features) {
  let minx = Infinity, miny = Infinity, maxx = -Infinity, maxy = -Infinity;
  for (const f of features) {
    const cs = f.geometry.type === "Polygon" ? f.geometry.coordinates[0] : f.geometry.coordinates;
    for (const c of cs) {
      const [x, y] = merc(c);
      minx = Math.min(minx, x); maxx = Math.max(maxx, x);
      miny = Math.min(miny, y); maxy = Math.max(maxy, y);
    }
  }
  if (!isFinite(minx)) return null;
  const w = canvas.width, h = canvas.height;
  const scale = 0.9 * Math.min(w / Math.max(maxx - minx, 1e-9), h / Math.max(maxy - miny, 1e-9));
  return { scale, cx: (minx + maxx) / 2, cy: (miny + maxy) / 2 };
}

const toScreen = (c) => {
  const [x, y] = merc(c);
  return [(x - view.cx) * view.scale + canvas.width / 2, (y - view.cy) * view.scale + canvas.height / 2];
};

function color(freshness) {
  const stops = [[215, 48, 39], [254, 224, 139], [26, 152, 80]];
  const t = Math.max(0, Math.min(1, freshness)) * 2;
  const i = Math.min(1, Math.floor(t)), f = t - i;
  const [a, b] = [stops[i], stops[i + 1]];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
}

function draw() {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth * dpr, h = canvas.clientHeight * dpr;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  ctx.clearRect(0, 0, w, h);
  if (!view) view = fit(roads.length ? roads : cells);
  if (!view) return;
  ctx.lineCap = "round";
  for (const f of roads) {
    const major = ["motorway", "trunk", "primary", "secondary"].includes(f.properties.highway);
    ctx.strokeStyle = major ? "#9aa7b4" : "#bcc5ce";
    ctx.lineWidth = (major ? 3 : 1.5) * dpr;
    ctx.beginPath();
    f.geometry.coordinates.forEach((c, i) => { const [x, y] = toScreen(c); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke();
  }
  for (const f of cells) {
    ctx.fillStyle = color(f.properties.freshness);
    ctx.globalAlpha = Math.min(0.9, 0.45 + 0.1 * f.properties.uploads);
    ctx.beginPath();
    f.geometry.coordinates[0].forEach((c, i) => { const [x, y] = toScreen(c); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.fill();
  }
  ctx.globalAlpha = 1;
}

async function getJSON(url, key) {
  const r = await fetch(url, key ? { headers: { Authorization: `Bearer ${key}` } } : {});
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

// Uploads are not public: an auditor's (or a device's) key, kept in this browser only. A link
// may carry it as ?key=...; it is taken out of the address at once.
{
  const params = new URLSearchParams(location.search);
  if (params.has("key")) {
    localStorage.setItem("covermap-key", params.get("key"));
    params.delete("key");
    history.replaceState(null, "", location.pathname + (params.toString() ? `?${params}` : ""));
  }
}
document.getElementById("keyform").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem("covermap-key", document.getElementById("key").value.trim());
  refresh();
});

async function recentUploads() {
  const key = localStorage.getItem("covermap-key");
  if (!key) return null;
  try {
    return await getJSON("/api/v1/uploads?limit=15", key);
  } catch (e) {
    return { error: String(e) };
  }
}

async function refresh() {
  try {
    const [r, c, s, u] = await Promise.all([
      roads.length ? null : getJSON("/api/v1/roads"),
      getJSON("/api/v1/coverage"),
      getJSON("/api/v1/stats"),
      recentUploads(),
    ]);
    if (r) roads = r.features;
    cells = c.features;
    const st = s.stats;
    document.getElementById("stats").innerHTML = [
      ["storage", s.backend], ["cells covered", st.cells], ["uploads processed", st.uploads_processed],
      ["uploads rejected", st.uploads_rejected], ["jobs waiting", st.jobs_queued + st.jobs_leased],
      ["road segments", st.road_segments],
    ].map(([k, v]) => `<dt>${k}</dt><dd data-stat="${k}">${v}</dd>`).join("");
    const esc = (v) => String(v ?? "").replace(/[&<>"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
    document.getElementById("uploads").innerHTML = !u ? "" : u.error
      ? `<tr><td colspan="5">${esc(u.error)}</td></tr>`
      : u.uploads.map((x) =>
        `<tr><td>${x.id}</td><td>${esc(x.device)}</td><td title="${esc(x.reason)}">${x.status}</td><td>${x.fixes_accepted ?? x.observations_accepted ?? ""}</td><td>${x.cells ?? ""}</td></tr>`).join("");
    draw();
    document.body.dataset.cells = String(cells.length);
  } catch (e) {
    console.error(e);
  }
}

canvas.addEventListener("mousedown", (e) => { drag = [e.clientX, e.clientY]; canvas.style.cursor = "grabbing"; });
window.addEventListener("mouseup", () => { drag = null; canvas.style.cursor = "grab"; });
window.addEventListener("mousemove", (e) => {
  if (drag && view) {
    const dpr = window.devicePixelRatio || 1;
    view.cx -= ((e.clientX - drag[0]) * dpr) / view.scale;
    view.cy -= ((e.clientY - drag[1]) * dpr) / view.scale;
    drag = [e.clientX, e.clientY];
    draw();
  }
});
canvas.addEventListener("wheel", (e) => {
  if (!view) return;
  e.preventDefault();
  view.scale *= e.deltaY < 0 ? 1.2 : 1 / 1.2;
  draw();
}, { passive: false });
window.addEventListener("resize", () => { view = null; draw(); });

refresh();
setInterval(refresh, 3000);
