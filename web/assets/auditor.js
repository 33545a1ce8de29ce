// The auditors' page: the queue of refused frames with their blurred copies, reasons and scores,
// approving or rejecting each, where they were taken, the log of decisions, and the published
// frames someone reported, kept, blurred further where the auditor drags boxes over them, or
// removed.
import { $, api, createMap, esc, fitPoints, imageURL, keyField, measuresHTML, num, when } from "./common.js";

const PAGE = 50;
const EMPTY = { type: "FeatureCollection", features: [] };

const map = createMap("queue-map", {
  hash: false,
  extra: {
    sources: { queue: { type: "geojson", data: EMPTY } },
    layers: [
      { id: "queue-dot", type: "circle", source: "queue",
        paint: {
          "circle-radius": 5,
          "circle-color": ["match", ["get", "decided"], "approve", "#1a9850", "reject", "#8a96a3", "#f46d43"],
          "circle-stroke-color": "#fff", "circle-stroke-width": 1,
        } },
      { id: "queue-selected", type: "circle", source: "queue", filter: ["==", ["get", "id"], ""],
        paint: { "circle-radius": 9, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": "#2b6cb0", "circle-stroke-width": 3 } },
    ],
  },
});
window.covermap = { map };

let key = null;
let items = [];
let next = null;
let fitted = false;
const thumbs = new Map(); // frame id -> object URL, revoked when the queue is read again

const idOf = (f) => `${f.upload_id}/${f.frame}`;

function scoresText(scores, prefix = "") {
  if (!scores || typeof scores !== "object") return scores == null ? "" : esc(scores);
  return Object.entries(scores)
    .map(([k, v]) => (v && typeof v === "object" ? scoresText(v, `${prefix}${k}.`) : `${esc(prefix + k)} ${num(v)}`))
    .join(" · ");
}

function decisionHTML(d) {
  if (!d) return "";
  const verb = d.decision === "approve" ? "approved" : "rejected";
  return `${verb} by ${esc(d.auditor)} at ${esc(when(d.decided_at))}${d.note ? ` — “${esc(d.note)}”` : ""}`;
}

function itemHTML(f) {
  const id = idOf(f);
  const d = f.decision;
  const who = [f.device, f.contributor].filter(Boolean).map(esc).join(" · ");
  const dup = f.duplicate_of
    ? `<div class="muted">duplicate of <a href="/api/v1/frames/${f.duplicate_of.upload_id}/${f.duplicate_of.frame}/image" target="_blank">frame ${f.duplicate_of.upload_id}/${f.duplicate_of.frame}</a></div>`
    : "";
  return `
    <article class="frame" data-frame="${id}"${d ? ` data-decided="${esc(d.decision)}"` : ""}>
      <div class="thumb none" data-thumb="${id}">${f.image ? "loading…" : "no image kept"}</div>
      <div>
        <div><span class="reason">${esc(f.reason)}</span> <b>upload ${f.upload_id} · frame ${f.frame}</b> <span class="muted">${who}</span></div>
        <div class="muted">captured ${esc(when(f.captured_at))} ·
          <a href="/?layer=coverage#17/${f.lat}/${f.lon}" title="open on the coverage map">${num(f.lat, 7)}, ${num(f.lon, 7)}</a> ·
          cell <span class="mono">${esc(f.cell)}</span></div>
        ${measuresHTML(f.reason, f.scores)}
        <details class="scores"><summary>all scores</summary>${scoresText(f.scores)}</details>
        ${dup}
        <div class="decision ${d ? esc(d.decision) : ""}" data-decision="${id}">${decisionHTML(d)}</div>
        <div class="actions">
          <input type="text" placeholder="note (optional)" data-note="${id}" maxlength="500">
          <button type="button" data-action="approve" data-frame="${id}"${d?.decision === "approve" ? ' class="pressed"' : ""}>approve</button>
          <button type="button" data-action="reject" data-frame="${id}"${d?.decision === "reject" ? ' class="pressed"' : ""}>reject</button>
        </div>
      </div>
    </article>`;
}

function visible() {
  return $("#undecided").checked ? items.filter((f) => !f.decision) : items;
}

function render() {
  const shown = visible();
  $("#queue").innerHTML = shown.map(itemHTML).join("")
    || `<p class="muted">${key ? "nothing in the queue" : "an auditor key is needed"}</p>`;
  $("#queue-count").textContent = key ? `${shown.length} shown${next ? ", more waiting" : ""}` : "";
  $('[data-action="more"]').hidden = !next;
  for (const f of shown) {
    const url = thumbs.get(idOf(f));
    if (url) placeThumb(idOf(f), url);
  }
  renderDots();
}

function placeThumb(id, url) {
  const slot = $(`[data-thumb="${id}"]`);
  if (!slot) return;
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = `frame ${id}, blurred`;
  img.src = url;
  slot.replaceWith(img);
}

async function renderDots() {
  await map.styled;
  const features = visible().map((f) => ({
    type: "Feature",
    properties: { id: idOf(f), decided: f.decision?.decision ?? "" },
    geometry: { type: "Point", coordinates: [f.lon, f.lat] },
  }));
  map.getSource("queue").setData({ type: "FeatureCollection", features });
  if (!fitted && features.length) {
    fitted = true;
    fitPoints(map, features.map((f) => f.geometry.coordinates), { padding: 30, maxZoom: 16, duration: 0 });
  }
}

/** Loads the blurred copies a few at a time (they need the key, so no plain <img src>). */
async function loadThumbs(list) {
  const queue = list.filter((f) => f.image && !thumbs.has(idOf(f)));
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      try {
        const url = await imageURL(f.image, key);
        thumbs.set(idOf(f), url);
        placeThumb(idOf(f), url);
      } catch (e) {
        const slot = $(`[data-thumb="${idOf(f)}"]`);
        if (slot) slot.textContent = `image: ${e.message}`;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

async function loadQueue(more = false) {
  if (!more) {
    for (const url of thumbs.values()) URL.revokeObjectURL(url);
    thumbs.clear();
    items = [];
    next = null;
  }
  if (!key) {
    render();
    return;
  }
  const q = new URLSearchParams({ limit: String(PAGE) });
  if ($("#reason").value) q.set("reason", $("#reason").value);
  if (more && next) q.set("after", next);
  try {
    const r = await api(`/api/v1/audit/frames?${q}`, { key });
    items = more ? [...items, ...r.frames] : r.frames;
    next = r.next;
    $("#queue-error").textContent = "";
  } catch (e) {
    $("#queue-error").textContent = e.message;
  }
  render();
  // The first undecided frame starts selected, so the keys work at once.
  const first = visible().find((f) => !f.decision);
  if (first && !more) select(idOf(first), false);
  $("#queue").dataset.loaded = "true";
  loadThumbs(items);
}

async function loadLog() {
  const body = $("#audit-log tbody");
  if (!key) {
    body.innerHTML = "";
    return;
  }
  try {
    const r = await api("/api/v1/audit/log?limit=100", { key });
    body.innerHTML = r.decisions.map((d) => `
      <tr data-frame="${d.upload_id}/${d.frame}" data-logged="${esc(d.decision)}">
        <td>${esc(when(d.decided_at))}</td><td>${d.upload_id}/${d.frame}</td>
        <td class="${d.decision === "approve" ? "ok" : "error"}">${esc(d.decision)}</td>
        <td>${esc(d.note)}</td><td>${esc(d.auditor)}</td>
      </tr>`).join("") || `<tr><td colspan="5" class="muted">no decisions yet</td></tr>`;
    $("#log-error").textContent = "";
  } catch (e) {
    $("#log-error").textContent = e.message;
  }
}

/** The open reports, each with the hidden frame's blurred image and keep / remove buttons. */
async function loadReports() {
  const body = $("#reports tbody");
  if (!key) {
    body.innerHTML = "";
    return;
  }
  try {
    const r = await api("/api/v1/audit/reports?open=true&limit=100", { key });
    body.innerHTML = r.reports.map((p) => `
      <tr data-report="${p.id}" data-frame="${p.upload_id}/${p.frame}">
        <td>${esc(when(p.reported_at))}</td>
        <td><div class="thumb none" data-report-thumb="${p.id}">loading…</div>${p.upload_id}/${p.frame}</td>
        <td><span class="reason">${esc(p.reason)}</span></td><td>${esc(p.note ?? "")}</td>
        <td>${esc(p.reporter)}</td>
        <td><button type="button" data-report-action="keep" data-report-id="${p.id}">keep</button>
          <button type="button" data-report-action="mark" data-report-id="${p.id}" title="drag boxes over what is still readable">blur…</button>
          <button type="button" data-report-action="remove" data-report-id="${p.id}">remove</button>
          <div class="decision" data-report-decision="${p.id}"></div></td>
      </tr>`).join("") || `<tr><td colspan="6" class="muted">no open reports</td></tr>`;
    $("#reports-error").textContent = "";
    $("#reports").dataset.loaded = "true";
    for (const url of reportImages.values()) URL.revokeObjectURL(url);
    reportImages.clear();
    marks.clear();
    for (const p of r.reports) {
      const slot = $(`[data-report-thumb="${p.id}"]`);
      imageURL(`/api/v1/audit/frames/${p.upload_id}/${p.frame}/published`, key)
        .then((url) => {
          reportImages.set(String(p.id), url);
          slot.outerHTML = `<img class="thumb" src="${url}" alt="reported frame ${p.upload_id}/${p.frame}">`;
        })
        .catch((e) => (slot.textContent = `image: ${e.message}`));
    }
  } catch (e) {
    $("#reports-error").textContent = e.message;
  }
}

// ---- Blurring a reported frame further: the auditor drags boxes over what is still readable
// on the frame (shown large), then sends them, in the frame's own pixels, with "blur". ----

const reportImages = new Map(); // report id -> object URL of the hidden frame's image
const marks = new Map(); // report id -> [{x1, y1, x2, y2}] in the frame's pixels

function openMarker(id, row) {
  const open = $(`tr[data-blur-editor="${id}"]`);
  if (open) {
    open.remove();
    return;
  }
  const url = reportImages.get(id);
  const editor = document.createElement("tr");
  editor.className = "blur-editor";
  editor.dataset.blurEditor = id;
  editor.innerHTML = `<td colspan="6">
    ${url
      ? `<div class="marker" data-marker="${id}"><img src="${url}" alt="reported frame, to mark" draggable="false"></div>`
      : `<div class="error">the frame's image did not load</div>`}
    <div class="actions">
      <button type="button" class="primary" data-report-action="blur" data-report-id="${id}" disabled>Blur these and publish</button>
      <button type="button" data-report-action="clear" data-report-id="${id}">clear</button>
      <span class="muted" data-mark-count="${id}">drag over each face, plate or anything else to blur</span>
    </div></td>`;
  row.after(editor);
  marks.set(id, []);
  const marker = editor.querySelector(".marker");
  if (marker) markBoxes(id, marker);
}

/** Rectangles dragged on `marker`'s image become boxes in the image's own pixels. */
function markBoxes(id, marker) {
  const img = marker.querySelector("img");
  let start = null;
  let drawn = null;
  const at = (e) => {
    const r = img.getBoundingClientRect();
    const sx = img.naturalWidth / r.width;
    const sy = img.naturalHeight / r.height;
    const x = Math.min(Math.max(e.clientX - r.left, 0), r.width);
    const y = Math.min(Math.max(e.clientY - r.top, 0), r.height);
    return { x: x * sx, y: y * sy };
  };
  const place = (div, b) => {
    Object.assign(div.style, {
      left: `${(100 * b.x1) / img.naturalWidth}%`, top: `${(100 * b.y1) / img.naturalHeight}%`,
      width: `${(100 * (b.x2 - b.x1)) / img.naturalWidth}%`, height: `${(100 * (b.y2 - b.y1)) / img.naturalHeight}%`,
    });
  };
  const box = (a, b) => ({
    x1: Math.min(a.x, b.x), y1: Math.min(a.y, b.y), x2: Math.max(a.x, b.x), y2: Math.max(a.y, b.y),
  });
  marker.addEventListener("pointerdown", (e) => {
    if (!img.naturalWidth) return;
    e.preventDefault();
    marker.setPointerCapture(e.pointerId);
    start = at(e);
    drawn = document.createElement("div");
    drawn.className = "mark";
    marker.append(drawn);
    place(drawn, box(start, start));
  });
  marker.addEventListener("pointermove", (e) => {
    if (start) place(drawn, box(start, at(e)));
  });
  const finish = (e) => {
    if (!start) return;
    const b = box(start, at(e));
    start = null;
    // A click, not a drag: under two screen pixels either way marks nothing.
    const r = img.getBoundingClientRect();
    if ((b.x2 - b.x1) * (r.width / img.naturalWidth) < 2 || (b.y2 - b.y1) * (r.height / img.naturalHeight) < 2) {
      drawn.remove();
      return;
    }
    drawn.dataset.box = JSON.stringify(b);
    marks.get(id).push(b);
    showMarks(id);
  };
  marker.addEventListener("pointerup", finish);
  marker.addEventListener("pointercancel", finish);
}

function showMarks(id) {
  const n = marks.get(id)?.length ?? 0;
  const send = $(`button[data-report-action="blur"][data-report-id="${id}"]`);
  if (send) send.disabled = n === 0;
  const count = $(`[data-mark-count="${id}"]`);
  if (count) count.textContent = n ? `${n} box${n > 1 ? "es" : ""} marked` : "drag over each face, plate or anything else to blur";
  const marker = $(`[data-marker="${id}"]`);
  if (marker) marker.dataset.marks = String(n);
}

const DONE = {
  keep: ["approve", "kept: shown again"],
  blur: ["approve", "blurred further: the blurred copy is shown"],
  remove: ["reject", "removed for good"],
};

$("#reports").addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-report-action]");
  if (!b) return;
  const id = b.dataset.reportId;
  const row = $(`#reports tr[data-report="${id}"]`);
  const action = b.dataset.reportAction;
  if (action === "mark") {
    openMarker(id, row);
    return;
  }
  if (action === "clear") {
    marks.set(id, []);
    document.querySelectorAll(`[data-marker="${id}"] .mark`).forEach((m) => m.remove());
    showMarks(id);
    return;
  }
  const line = $(`[data-report-decision="${id}"]`);
  const editor = $(`tr[data-blur-editor="${id}"]`);
  const buttons = [...row.querySelectorAll("button"), ...(editor?.querySelectorAll("button") ?? [])];
  buttons.forEach((x) => (x.disabled = true));
  const body = { decision: action };
  if (action === "blur") body.boxes = marks.get(id) ?? [];
  try {
    const r = await api(`/api/v1/audit/reports/${id}/decision`, { key, method: "POST", body });
    row.dataset.decided = r.decision;
    const [tone, said] = DONE[r.decision] ?? ["approve", r.decision];
    line.className = `decision ${tone}`;
    line.textContent = said;
    editor?.remove();
    if (r.decision === "blur") {
      // What is published now, in place of the copy that was marked.
      const url = await imageURL(`/api/v1/audit/frames/${r.upload_id}/${r.frame}/published`, key)
        .catch(() => null);
      const thumb = row.querySelector("img.thumb");
      if (url && thumb) thumb.src = url;
    }
  } catch (err) {
    line.className = "decision error";
    line.textContent = err.message;
    buttons.forEach((x) => (x.disabled = false));
    if (action === "blur") showMarks(id);
  }
});

async function loadFlagged() {
  const body = $("#flagged tbody");
  if (!key) {
    body.innerHTML = "";
    return;
  }
  try {
    const r = await api("/api/v1/uploads?trust=flagged&limit=100", { key });
    body.innerHTML = r.uploads.map((u) => `
      <tr data-upload="${u.id}">
        <td><button type="button" data-evidence="${u.id}" title="what was measured">${u.id}</button></td>
        <td>${esc(u.contributor ?? "")}</td><td>${esc(u.device)}</td><td>${esc(u.kind)}</td>
        <td>${esc(when(u.received_at))}</td>
        <td>${u.trust.findings.map((f) => `<div><b>${esc(f.code)}</b> ${esc(f.detail)}</div>`).join("")}</td>
        <td>${u.trust.epoch ?? "—"}</td>
      </tr>`).join("") || `<tr><td colspan="7" class="muted">nothing flagged</td></tr>`;
    $("#flagged-error").textContent = "";
  } catch (e) {
    $("#flagged-error").textContent = e.message;
  }
}

async function decide(id, decision) {
  const item = items.find((f) => idOf(f) === id);
  const article = $(`article[data-frame="${id}"]`);
  const note = $(`[data-note="${id}"]`)?.value.trim() ?? "";
  const buttons = article ? [...article.querySelectorAll("button[data-action]")] : [];
  buttons.forEach((b) => (b.disabled = true));
  const line = $(`[data-decision="${id}"]`);
  try {
    const r = await api(`/api/v1/audit/frames/${id}/decision`, {
      key, method: "POST", body: { decision, note },
    });
    // The stored decision, or an object holding it.
    const stored = typeof r?.decision === "string" ? r : (r?.decision ?? { decision, note });
    if (item) item.decision = stored;
    if (article) {
      article.dataset.decided = stored.decision;
      line.className = `decision ${stored.decision}`;
      line.innerHTML = decisionHTML(stored);
      buttons.forEach((b) => b.classList.toggle("pressed", b.dataset.action === stored.decision));
    }
    renderDots();
    await loadLog();
  } catch (e) {
    if (line) {
      line.className = "decision error";
      line.textContent = e.message;
    }
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function select(id, fly) {
  for (const a of document.querySelectorAll("article.frame.selected")) a.classList.remove("selected");
  const article = $(`article[data-frame="${id}"]`);
  article?.classList.add("selected");
  if (map.getLayer("queue-selected")) map.setFilter("queue-selected", ["==", ["get", "id"], id]);
  const f = items.find((x) => idOf(x) === id);
  if (fly && f) map.easeTo({ center: [f.lon, f.lat], zoom: Math.max(map.getZoom(), 16) });
  return article;
}

$("#queue").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-action]");
  if (b) {
    decide(b.dataset.frame, b.dataset.action);
    return;
  }
  const article = e.target.closest("article.frame");
  if (article && !e.target.closest("a, input")) select(article.dataset.frame, true);
});
map.on("click", "queue-dot", (e) => {
  const id = e.features[0]?.properties.id;
  if (id) select(id, false)?.scrollIntoView({ behavior: "smooth", block: "center" });
});
map.on("mouseenter", "queue-dot", () => (map.getCanvas().style.cursor = "pointer"));
map.on("mouseleave", "queue-dot", () => (map.getCanvas().style.cursor = ""));
$("#flagged").addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-evidence]");
  if (!b) return;
  const row = b.closest("tr");
  const shown = row.nextElementSibling?.classList.contains("evidence");
  if (shown) {
    row.nextElementSibling.remove();
    return;
  }
  const detail = document.createElement("tr");
  detail.className = "evidence";
  try {
    const r = await api(`/api/v1/uploads/${b.dataset.evidence}/evidence`, { key });
    detail.innerHTML = `<td colspan="7"><pre>${esc(JSON.stringify(r.evidence, null, 2))}</pre></td>`;
  } catch (err) {
    detail.innerHTML = `<td colspan="7" class="error">${esc(err.message)}</td>`;
  }
  row.after(detail);
});
// ---- Keys: n / p (or j / k) move through the queue, a approves and r rejects the selected frame
// and moves on to the next undecided one, Escape leaves a note field. ----

const selectedId = () => $("article.frame.selected")?.dataset.frame ?? null;
const shownIds = () => [...document.querySelectorAll("article.frame")].map((a) => a.dataset.frame);

function move(step) {
  const ids = shownIds();
  if (!ids.length) return;
  const at = ids.indexOf(selectedId());
  const id = at < 0 ? ids[0] : ids[Math.min(ids.length - 1, Math.max(0, at + step))];
  select(id, true)?.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function nextUndecided(after) {
  const ids = shownIds();
  const from = ids.indexOf(after);
  const id = [...ids.slice(from + 1), ...ids.slice(0, from + 1)]
    .find((x) => !$(`article.frame[data-frame="${x}"]`)?.dataset.decided);
  if (id) select(id, true)?.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

document.addEventListener("keydown", async (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.closest?.("input, textarea, select")) {
    if (e.key === "Escape") e.target.blur();
    return;
  }
  const k = e.key.toLowerCase();
  if (k === "n" || k === "j") move(1);
  else if (k === "p" || k === "k") move(-1);
  else if (k === "a" || k === "r") {
    const id = selectedId();
    if (!id) return;
    e.preventDefault();
    await decide(id, k === "a" ? "approve" : "reject");
    nextUndecided(id);
    return;
  } else return;
  e.preventDefault();
});

$('[data-action="more"]').addEventListener("click", () => loadQueue(true));
$("#reason").addEventListener("change", () => loadQueue());
$("#undecided").addEventListener("change", render);

keyField($("#key-form"), "auditor", (k) => {
  key = k.key;
  fitted = false;
  loadQueue();
  loadLog();
  loadFlagged();
  loadReports();
});
