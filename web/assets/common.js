// What every page shares: calling the JSON API (keys, the one error shape), the key field,
// formatting numbers and times, and the map the pages draw on.
/* global maplibregl */

/** Escapes text for HTML. */
export const esc = (v) =>
  String(v ?? "").replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

export const $ = (sel, root = document) => root.querySelector(sel);

/** An API call that failed, with the server's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the API. `body` is sent as JSON unless `contentType` says otherwise. The server's
 * errors are `{"error": {"code", "message", "field"}}`; they are thrown as ApiError.
 */
export async function api(path, { key, method = "GET", body, contentType } = {}) {
  const headers = {};
  if (key) headers.Authorization = `Bearer ${key}`;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType ?? "application/json";
    payload = contentType ? body : JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: a proxy's page or a bare status; the status line says enough.
  }
  if (!r.ok) {
    const e = json && json.error;
    const field = e && e.field ? ` (${e.field})` : "";
    throw new ApiError(r.status, e?.code ?? "http_" + r.status,
      e?.message ? e.message + field : `${path}: ${r.status} ${r.statusText}`);
  }
  return json;
}

/** Fetches an image that needs a key and returns an object URL for it. */
export async function imageURL(path, key) {
  const r = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  if (!r.ok) throw new ApiError(r.status, "http_" + r.status, `${r.status} ${r.statusText}`);
  return URL.createObjectURL(await r.blob());
}

/**
 * A key a link carried in its fragment (`#key=…`), which browsers never send to the server, so
 * it stays out of access logs. Read when this module loads, before any page makes its map (whose
 * position lives in the fragment too), and taken out of the address at once.
 */
const LINKED_KEY = (() => {
  const m = /^#(?:.*&)?key=([^&]+)/.exec(location.hash);
  if (!m) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(m[1]);
})();

/**
 * The key field of a page. The key stays in this browser (localStorage, one per page, since
 * an auditor's and a driver's keys differ); a link may carry it as `#key=` (see LINKED_KEY; the
 * older `?key=` is still taken, and taken out of the address at once). `onKey({key, me})` runs
 * with the key and what `/api/v1/me` says of it, or `{key: null}` when it is cleared.
 */
export function keyField(form, page, onKey) {
  const storeName = `covermap.key.${page}`;
  const input = form.querySelector("input");
  const who = form.querySelector(".who");
  const params = new URLSearchParams(location.search);
  if (params.has("key")) {
    localStorage.setItem(storeName, params.get("key"));
    params.delete("key");
    history.replaceState(null, "", location.pathname + (params.size ? `?${params}` : "") + location.hash);
  }
  if (LINKED_KEY) localStorage.setItem(storeName, LINKED_KEY);
  async function use(key) {
    form.removeAttribute("data-role");
    if (!key) {
      who.textContent = "no key";
      onKey({ key: null, me: null });
      return;
    }
    who.textContent = "checking…";
    try {
      const me = await api("/api/v1/me", { key });
      who.textContent = `${me.role} key #${me.key_id}` + (me.contributor ? ` · ${me.contributor}` : "");
      who.className = "who";
      form.dataset.role = me.role;
      onKey({ key, me });
    } catch (e) {
      who.textContent = e.message;
      who.className = "who error";
      onKey({ key: null, me: null, error: e });
    }
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (key) localStorage.setItem(storeName, key);
    else localStorage.removeItem(storeName);
    use(key);
  });
  const saved = localStorage.getItem(storeName);
  if (saved) input.value = saved;
  use(saved);
}

/** Base units (integers, possibly sent as strings when they outgrow f64) with thin spaces. */
export function units(v) {
  if (v === null || v === undefined) return "";
  const s = String(v);
  return /^-?\d+$/.test(s) ? s.replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f") : esc(s);
}

/** A signed difference, with a class for its colour. */
export function delta(v) {
  const s = String(v ?? 0);
  const neg = s.startsWith("-");
  const zero = /^-?0+$/.test(s);
  const cls = zero ? "" : neg ? "delta-neg" : "delta-pos";
  return `<span class="${cls}">${zero || neg ? "" : "+"}${units(s)}</span>`;
}

/** A time the API sent: unix seconds, or an RFC 3339 string. */
export function when(t) {
  if (t === null || t === undefined || t === "") return "";
  const d = typeof t === "number" ? new Date(t < 1e12 ? t * 1000 : t) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A number for display: integers as they are, others to a few significant digits. */
export function num(v, digits = 3) {
  if (typeof v !== "number") return esc(v);
  if (Number.isInteger(v)) return units(v);
  return String(Number(v.toPrecision(digits)));
}

/** Reason codes in words, for drivers and auditors; unknown codes are shown as they are. */
const REASON_WORDS = {
  "fix:bad_position": "position out of range or not a number",
  "fix:duplicate": "the same fix twice",
  "fix:implausible_jump": "a jump no vehicle could make",
  "fix:in_future": "time in the future",
  "fix:no_time": "no time",
  "fix:out_of_order": "earlier than the fix before it",
  "fix:too_old": "older than the server accepts",
  "frame:corrupt_exif": "EXIF unreadable",
  "frame:near_duplicate": "almost the same as the frame before",
  "frame:no_capture_time": "no capture time",
  "frame:no_position": "no position",
  "frame:not_jpeg": "not a JPEG",
  "frame:outside_track": "taken outside the track's time span",
  "frame:too_many_pixels": "too many pixels to process",
  "frame:xmp_only_gps": "GPS only in XMP",
  "frame:too_small": "a thumbnail, not a street frame",
  "frame:dark": "too dark",
  "frame:overexposed": "washed out",
  "frame:defocus": "out of focus",
  "frame:motion_blur": "blurred by motion",
  "frame:obstructed": "the view is blocked",
  "frame:duplicate": "repeats a frame already uploaded",
};

/** What a reason code of `stage` means, in words (the code itself when it has none). */
export const reasonWords = (stage, reason) => REASON_WORDS[`${stage}:${reason}`] ?? String(reason).replace(/_/g, " ");

const percent = (v) => `${num(v * 100, 2)} %`;

/**
 * The measures behind a refusal as an auditor reads them: each with its unit and the threshold
 * it was judged by, the one behind the reason first and marked. Frames refused before the scores
 * carried sizes and thresholds show what they have.
 */
export function measuresHTML(reason, scores) {
  const q = scores?.quality ?? {};
  const lim = scores?.limits ?? {};
  const rows = [];
  const add = (id, text) => rows.push([id, text]);
  if (scores?.width && scores?.height) {
    const min = lim.min_width ? ` (thumbnails: under ${lim.min_width} × ${lim.min_height} px)` : "";
    add("too_small", `size ${units(scores.width)} × ${units(scores.height)} px${min}`);
  }
  if (Array.isArray(q.brightness)) {
    const [p5, p50, p95] = q.brightness;
    const dark = lim.dark_median != null ? ` (dark below ${num(lim.dark_median)})` : "";
    add("dark", `brightness: median ${p50} of 255${dark}, 5–95 % of pixels ${p5}–${p95}`);
  }
  if (typeof q.clipped === "number") {
    const over = lim.overexposed_share != null ? ` (overexposed above ${percent(lim.overexposed_share)})` : "";
    add("overexposed", `washed out: ${percent(q.clipped)} of pixels at 250 or brighter${over}`);
  }
  if (typeof q.sharpness === "number") {
    const soft = lim.min_sharpness != null ? ` (out of focus below ${num(lim.min_sharpness)})` : "";
    add("defocus", `sharpness ${num(q.sharpness)}${soft}`);
  }
  if (typeof q.anisotropy === "number") {
    const smear = lim.max_anisotropy != null ? ` (motion blur above ${num(lim.max_anisotropy)})` : "";
    add("motion_blur", `edges ${num(q.anisotropy)}× stronger one way than the other${smear}`);
  }
  if (q.model && typeof q.model === "object") {
    const top = Object.entries(q.model).sort((a, b) => b[1] - a[1]).slice(0, 2);
    const sure = lim.model_confidence != null ? ` (a reason from ${percent(lim.model_confidence)})` : "";
    add(top[0][0] === reason ? reason : "model",
      `quality model: ${top.map(([c, p]) => `${esc(c.replace(/_/g, " "))} ${percent(p)}`).join(", ")}${sure}`);
  }
  if (typeof scores?.duplicate_bits === "number") {
    add("duplicate", `${scores.duplicate_bits} of 64 image-hash bits differ from the frame it repeats`);
  }
  if (typeof scores?.faces === "number" || typeof scores?.plates === "number") {
    const n = (v, one) => `${units(v ?? 0)} ${one}${v === 1 ? "" : "s"}`;
    add("privacy", `${n(scores.faces, "face")} and ${n(scores.plates, "plate")} blurred in the copy shown`);
  }
  rows.sort((a, b) => (b[0] === reason) - (a[0] === reason));
  return `<ul class="measures">${rows.map(([id, text]) =>
    `<li data-measure="${esc(id)}"${id === reason ? ' class="cause"' : ""}>${text}</li>`).join("")}</ul>`;
}

/** Renders `[label, value]` pairs as a definition list's inner HTML. */
export const pairs = (rows) =>
  rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd data-stat="${esc(k)}">${v}</dd>`).join("");

/** Runs `fn` now and every `ms` while the page is visible, without overlapping runs. */
export function every(ms, fn) {
  let busy = false;
  const tick = async () => {
    if (busy || document.visibilityState !== "visible") return;
    busy = true;
    try {
      await fn();
    } catch (e) {
      // A refresh that failed is tried again at the next tick; the page shows what it can.
      console.warn(e);
    } finally {
      busy = false;
    }
  };
  tick();
  return setInterval(tick, ms);
}

// ---------------------------------------------------------------------------------------------
// The map: MapLibre over covermap's own vector tiles. The `roads` layer is the basemap, its names
// drawn with glyphs covermap serves from a font compiled in (/fonts/…), so the map needs nothing
// from outside (no style, glyphs or sprites to fetch). Pages that use it load
// /vendor/maplibre-gl/maplibre-gl.js first.

const pct = (v) => `${Math.round(v * 100)}%`;
const dbm = (v) => `${v} dBm`;
const SIGNAL = [[-120, "#d73027"], [-100, "#fc8d59"], [-85, "#fee08b"], [-70, "#91cf60"], [-50, "#1a9850"]];
const COUNTS = [[1, "#fff5eb"], [10, "#fdae6b"], [100, "#d94801"], [1000, "#7f2704"]];
const TECHNOLOGIES = ["gsm", "wcdma", "lte", "nr", "wifi", "bluetooth"];

/**
 * What each hexagon layer can be coloured by: the property, its colour stops (which the paint
 * and the legend both read), and how the legend writes the values. `log` ramps interpolate on
 * the logarithm, for counts.
 */
export const METRICS = {
  coverage: [
    { id: "freshness", label: "freshness", prop: "freshness",
      stops: [[0, "#d73027"], [0.5, "#fee08b"], [1, "#1a9850"]], ticks: ["stale", "ageing", "fresh"] },
    { id: "coverage", label: "road length driven", prop: "coverage",
      stops: [[0, "#deebf7"], [0.5, "#6baed6"], [1, "#08519c"]], format: pct },
    { id: "observations", label: "observations", prop: "observations", stops: COUNTS, log: true },
    { id: "contributors", label: "contributors", prop: "contributors",
      stops: [[1, "#edf8fb"], [3, "#8c96c6"], [10, "#6e016b"]], log: true },
  ],
  radio: [
    { id: "best_signal_dbm", label: "best signal", prop: "best_signal_dbm", stops: SIGNAL, format: dbm },
    ...TECHNOLOGIES.map((t) => ({
      id: `${t}_best_dbm`, label: `best ${t === "nr" ? "5G NR" : t.toUpperCase()} signal`, prop: `${t}_best_dbm`,
      stops: SIGNAL, format: dbm,
    })),
    { id: "observations", label: "observations", prop: "observations", stops: COUNTS, log: true },
    { id: "emitters", label: "emitters", prop: "emitters", stops: COUNTS, log: true },
  ],
  demand: [
    { id: "weight", label: "reward weight", prop: "weight",
      stops: [[0, "#f2f0f7"], [0.5, "#cbc9e2"], [1, "#9e9ac8"], [2, "#756bb1"], [4, "#54278f"]] },
    { id: "staleness", label: "staleness", prop: "staleness",
      stops: [[0, "#ffffcc"], [0.5, "#fd8d3c"], [1, "#bd0026"]], format: pct },
    { id: "coverage_gap", label: "coverage gap", prop: "coverage_gap",
      stops: [[0, "#ffffcc"], [0.5, "#fd8d3c"], [1, "#bd0026"]], format: pct },
    { id: "open_bounties", label: "open bounties", prop: "open_bounties",
      stops: [[0, "#f7fcb9"], [1, "#addd8e"], [3, "#238443"]] },
  ],
};

const AGE = [[0, "#34506e"], [30, "#7b8ea3"], [180, "#b4bec9"]];
const NEVER_DRIVEN = "#d3d9df";
const MAJOR = ["motorway", "trunk", "primary", "motorway_link", "trunk_link", "primary_link"];
const MIDDLE = ["secondary", "tertiary", "secondary_link", "tertiary_link"];

/** The id of the layer that fills `layer`'s hexagons (the tests query it). */
export const fillId = (layer) => `${layer}-fill`;

const stopValue = (m, v) => (m.log ? Math.log(Math.max(1, v)) : v);

function ramp(m) {
  const value = ["to-number", ["get", m.prop], 0];
  const input = m.log ? ["ln", ["max", 1, value]] : value;
  return ["interpolate", ["linear"], input, ...m.stops.flatMap(([v, c]) => [stopValue(m, v), c])];
}

function hexLayers(layer, metric, visible) {
  const visibility = visible ? "visible" : "none";
  return [
    {
      id: fillId(layer), type: "fill", source: layer, "source-layer": layer,
      filter: ["has", metric.prop], layout: { visibility },
      paint: { "fill-color": ramp(metric), "fill-opacity": 0.62 },
    },
    {
      id: `${layer}-line`, type: "line", source: layer, "source-layer": layer,
      filter: ["has", metric.prop], layout: { visibility },
      paint: {
        "line-color": "#ffffff",
        "line-width": 0.6,
        "line-opacity": ["interpolate", ["linear"], ["zoom"], 12, 0, 15, 0.8],
      },
    },
  ];
}

function roadLayer() {
  const width = (scale) => ["match", ["get", "highway"], MAJOR, 1.6 * scale, MIDDLE, 1.1 * scale, 0.6 * scale];
  return {
    id: "roads-line", type: "line", source: "roads", "source-layer": "roads",
    layout: { "line-cap": "round", "line-join": "round" },
    paint: {
      "line-color": ["case", ["has", "age_days"],
        ["interpolate", ["linear"], ["to-number", ["get", "age_days"], 0], ...AGE.flat()],
        NEVER_DRIVEN],
      "line-width": ["interpolate", ["exponential", 1.5], ["zoom"], 10, width(0.6), 14, width(2), 18, width(7)],
    },
  };
}

/** The font covermap serves glyphs of (tiles/src/glyphs.rs). */
const LABEL_FONT = ["DejaVu Sans"];

/** Road names along the roads, from zoom 14, over the hexagons so they stay readable. */
function roadLabels() {
  return {
    id: "roads-label", type: "symbol", source: "roads", "source-layer": "roads", minzoom: 14,
    filter: ["has", "name"],
    layout: {
      "symbol-placement": "line",
      "text-field": ["get", "name"],
      "text-font": LABEL_FONT,
      "text-size": ["interpolate", ["linear"], ["zoom"], 14, 10, 18, 14],
      "text-max-angle": 35,
      "text-padding": 4,
      "symbol-spacing": 320,
    },
    paint: { "text-color": "#34404c", "text-halo-color": "rgba(255,255,255,0.92)", "text-halo-width": 1.5 },
  };
}

/** A vector source reading covermap's TileJSON for `layer`. */
const tileSource = (layer) => ({ type: "vector", url: `${location.origin}/tiles/${layer}.json` });

/**
 * A map of the roads with the hexagon `layers` over them, `active` shown. `extra` adds sources
 * and layers drawn on top (the planner's drawing).
 */
export function createMap(container, { layers = [], active = layers[0], hash = true, extra = {} } = {}) {
  const sources = { roads: tileSource("roads"), ...extra.sources };
  const styleLayers = [
    { id: "background", type: "background", paint: { "background-color": "#eef1f4" } },
    roadLayer(),
  ];
  for (const l of layers) {
    sources[l] = tileSource(l);
    styleLayers.push(...hexLayers(l, METRICS[l][0], l === active));
  }
  styleLayers.push(roadLabels(), ...(extra.layers ?? []));
  // Read before the map exists: MapLibre writes its own position into the fragment at once.
  const viewInAddress = hash && /^#[\d.]+\/-?[\d.]+\/-?[\d.]+/.test(location.hash);
  const map = new maplibregl.Map({
    container,
    style: { version: 8, sources, layers: styleLayers, glyphs: `${location.origin}/fonts/{fontstack}/{range}.pbf` },
    hash,
    center: [0, 20],
    zoom: 1,
    maxZoom: 19,
    // The TileJSON carries the attribution (OpenStreetMap for the roads).
    attributionControl: { compact: true },
    // Tiles may be named relative to the server (the worker that fetches them has no base
    // address), and must be asked for again on each refresh, not taken from the HTTP cache.
    transformRequest: (url, type) => ({
      url: new URL(url, location.href).href,
      ...(type === "Tile" ? { cache: "no-cache" } : {}),
    }),
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-left");
  map.addControl(new maplibregl.ScaleControl(), "bottom-left");
  // Without a listener MapLibre logs every failed tile as an error; a missing tile is not one.
  map.on("error", (e) => console.warn("map:", e.error?.message ?? e));
  // Open where the data is (the TileJSON's bounds: the road network, else what was observed),
  // unless the address already says where to look.
  map.placed = viewInAddress
    ? Promise.resolve()
    : fetch(`${location.origin}/tiles/roads.json`)
      .then((r) => (r.ok ? r.json() : null))
      .then((tj) => {
        const b = tj?.bounds;
        if (b && b[0] > -180) map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 24, animate: false });
      })
      .catch((e) => console.warn("map: no bounds to open on:", e));
  // Layers can be changed once the style is parsed (a frame after this), not before.
  map.styled = new Promise((resolve) => map.once("style.load", resolve));
  return map;
}

/** Moves `map` to show every `[lon, lat]` of `points` (nothing for none), with `options`. */
export function fitPoints(map, points, options) {
  if (!points.length) return;
  const lons = points.map((p) => p[0]);
  const lats = points.map((p) => p[1]);
  map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]], options);
}

/** Shows `layer`'s hexagons and hides the other ones of `layers`. */
export function showLayer(map, layers, layer) {
  for (const l of layers) {
    const v = l === layer ? "visible" : "none";
    map.setLayoutProperty(fillId(l), "visibility", v);
    map.setLayoutProperty(`${l}-line`, "visibility", v);
  }
}

/** Colours `layer`'s hexagons by `metric` (one of METRICS[layer]). */
export function colourBy(map, layer, metric) {
  map.setPaintProperty(fillId(layer), "fill-color", ramp(metric));
  map.setFilter(fillId(layer), ["has", metric.prop]);
  map.setFilter(`${layer}-line`, ["has", metric.prop]);
}

/** The legend of a metric's ramp, and of the roads under it. */
export function legendHTML(m) {
  const lo = stopValue(m, m.stops[0][0]);
  const hi = stopValue(m, m.stops.at(-1)[0]);
  const at = (v) => (((stopValue(m, v) - lo) / (hi - lo)) * 100).toFixed(1);
  const gradient = m.stops.map(([v, c]) => `${c} ${at(v)}%`).join(", ");
  const ticks = m.ticks ?? m.stops.map(([v]) => (m.format ? m.format(v) : String(v)));
  const road = (c, label) => `<span class="swatch" style="background:${c}"></span>${label}`;
  return `<div>${esc(m.label)}</div>
    <div class="ramp" style="background:linear-gradient(to right, ${gradient})"></div>
    <div class="ticks">${ticks.map((t) => `<span>${esc(t)}</span>`).join("")}</div>
    <div style="margin-top:8px">roads, by when last driven:</div>
    <div>${road(AGE[0][1], "today")} ${road(AGE[1][1], "30 d")} ${road(AGE[2][1], "180 d+")} ${road(NEVER_DRIVEN, "never")}</div>`;
}

/** How long ago a time the API sent was, in words ("3 h ago"); the exact time in a tooltip. */
export function ago(t, now = Date.now()) {
  if (t === null || t === undefined || t === "") return "";
  const ms = typeof t === "number" ? (t < 1e12 ? t * 1000 : t) : Date.parse(t);
  if (Number.isNaN(ms)) return esc(t);
  const s = Math.round((now - ms) / 1000);
  const span = Math.abs(s);
  const words = span < 45 ? "just now"
    : span < 3600 ? `${Math.round(span / 60)} min`
    : span < 86400 ? `${Math.round(span / 3600)} h`
    : span < 86400 * 60 ? `${Math.round(span / 86400)} d`
    : span < 86400 * 730 ? `${Math.round(span / (86400 * 30.44))} months`
    : `${Math.round(span / (86400 * 365.25))} years`;
  const text = words === "just now" ? words : s >= 0 ? `${words} ago` : `in ${words}`;
  return `<span title="${esc(when(ms))}">${esc(text)}</span>`;
}

const has = (v) => v !== undefined && v !== null;
const TECHNOLOGY_NAMES = { gsm: "GSM", wcdma: "UMTS", lte: "LTE", nr: "5G NR", wifi: "Wi-Fi", bluetooth: "Bluetooth" };
const LAYER_TITLES = { coverage: "Coverage", radio: "Radio", demand: "Demand" };
const signal = (v) => `${String(Math.round(v)).replace("-", "\u2212")} dBm`;
const share = (v) => `${Math.round(v * 100)} %`;
const count = (v, one, many) => `${units(v)} ${v === 1 ? one : many}`;

/**
 * What a popup says of a feature, as labelled rows with units: `[label, html]`, most telling
 * first. Properties the page cannot name are not shown (the tiles' `vector_layers` list them all).
 */
function popupRows(layer, p) {
  const has = (k) => p[k] !== undefined && p[k] !== null;
  const rows = [];
  const row = (k, label, fmt) => {
    if (has(k)) rows.push([label, fmt(p[k])]);
  };
  if (layer === "roads") {
    row("highway", "road class", (v) => esc(String(v).replace(/_/g, " ")));
    rows.push(["last driven", has("last_seen") ? ago(p.last_seen) : "never"]);
    row("osm_way_id", "OpenStreetMap way", (v) => `<span class="mono">${esc(v)}</span>`);
    return rows;
  }
  if (layer === "coverage") {
    row("last_seen", "last seen", ago);
    row("freshness", "freshness", share);
    row("coverage", "road length driven", share);
    row("observations", "observations", units);
    row("uploads", "uploads", units);
    row("contributors", "contributors", units);
  } else if (layer === "radio") {
    row("best_signal_dbm", "best signal", signal);
    row("last_seen", "last measured", ago);
    row("emitters", "emitters heard", units);
    row("observations", "measurements", units);
    for (const [t, name] of Object.entries(TECHNOLOGY_NAMES)) {
      if (!has(`${t}_samples`) && !has(`${t}_best_dbm`)) continue;
      const parts = [];
      if (has(`${t}_best_dbm`)) parts.push(`best ${signal(p[`${t}_best_dbm`])}`);
      if (has(`${t}_median_dbm`)) parts.push(`median ${signal(p[`${t}_median_dbm`])}`);
      const n = has(`${t}_samples`) ? ` (${count(p[`${t}_samples`], "sample", "samples")})` : "";
      rows.push([name, parts.join(", ") + n]);
    }
  } else if (layer === "demand") {
    row("weight", "reward weight", (v) => `×${num(v)}`);
    row("demand", "planners' demand", (v) => `×${num(v)}`);
    row("staleness", "staleness", share);
    row("coverage_gap", "road length not driven", share);
    row("open_bounties", "open bounties", units);
  }
  row("cell", "H3 cell", (v) => `<span class="mono">${esc(v)}</span>`);
  return rows;
}

/** A feature of one of the map's layers as a popup: a title and labelled values with units. */
export function propertiesHTML(f) {
  const layer = f.sourceLayer ?? f.layer?.["source-layer"];
  const p = f.properties;
  const title = layer === "roads"
    ? (p.name ? esc(p.name) : "Unnamed road")
    : `${LAYER_TITLES[layer] ?? esc(layer)}${has(p.res) ? ` <span class="muted">· resolution ${esc(p.res)}</span>` : ""}`;
  const rows = popupRows(layer, p);
  return `<div class="popup" data-layer="${esc(layer)}"><strong>${title}</strong>
    <table>${rows.map(([k, v]) => `<tr data-field="${esc(k)}"><td>${esc(k)}</td><td>${v}</td></tr>`).join("")}</table></div>`;
}

/**
 * Opens a popup with what was clicked in `layerIds()` (roads when nothing else is there),
 * unless `enabled()` says no (the planner while drawing). The popup follows the page: after
 * `follow()` (called when the shown layer changes) it shows what now lies at the same place, or
 * closes when nothing does.
 */
export function popupOnClick(map, layerIds, enabled = () => true) {
  let popup = null;
  const hitAt = (point) => {
    const ids = layerIds().filter((id) => map.getLayer(id));
    return map.queryRenderedFeatures(point, { layers: ids })[0]
      ?? map.queryRenderedFeatures([[point.x - 3, point.y - 3], [point.x + 3, point.y + 3]], { layers: ["roads-line"] })[0];
  };
  map.on("click", (e) => {
    if (!enabled()) return;
    const hit = hitAt(e.point);
    if (!hit) return;
    popup?.remove();
    popup = new maplibregl.Popup({ maxWidth: "340px" }).setLngLat(e.lngLat).setHTML(propertiesHTML(hit)).addTo(map);
    popup.on("close", () => {
      popup = null;
    });
  });
  return {
    /** Shows what the open popup's place holds in the layers now shown, once they are drawn. */
    follow() {
      if (!popup) return;
      const open = popup;
      map.once("idle", () => {
        if (popup !== open) return;
        const hit = hitAt(map.project(open.getLngLat()));
        if (hit) open.setHTML(propertiesHTML(hit));
        else open.remove();
      });
      map.triggerRepaint();
    },
    get popup() {
      return popup;
    },
  };
}

/**
 * Fetches `sources()`'s visible tiles again every `ms` (new uploads appear without a reload),
 * while the page is visible and the map is still and done loading — never while the last round
 * of tiles is still coming (on a slow machine that would keep the map loading for ever).
 */
export function keepFresh(map, sources, ms, onRefresh = () => {}) {
  // Refreshed again only after the map has been idle since the last refresh (has drawn all it
  // loaded), so an `idle` always comes between two rounds.
  let idle = false;
  map.on("idle", () => {
    idle = true;
  });
  return setInterval(() => {
    if (document.visibilityState !== "visible" || map.isMoving() || !map.loaded() || !idle) return;
    idle = false;
    for (const s of sources()) {
      if (map.getSource(s)) map.refreshTiles(s);
    }
    onRefresh(new Date());
  }, ms);
}
