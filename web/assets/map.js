// The coverage map page: one hexagon layer at a time (coverage, radio or demand) over the
// roads, its legend, the network's counts, all kept fresh while the page is open.
import {
  $, METRICS, api, colourBy, createMap, esc, every, fillId, keepFresh, legendHTML, pairs,
  popupOnClick, showLayer, units, when,
} from "./common.js";

const LAYERS = ["coverage", "radio", "demand"];
const params = new URLSearchParams(location.search);
let active = LAYERS.includes(params.get("layer")) ? params.get("layer") : "coverage";
const metricOf = Object.fromEntries(LAYERS.map((l) => [l, METRICS[l][0]]));

const map = createMap("map", { layers: LAYERS, active });
window.covermap = { map, fillId };

function renderControls() {
  $(`#layers input[value="${active}"]`).checked = true;
  $("#metric").innerHTML = METRICS[active]
    .map((m) => `<option value="${m.id}"${m === metricOf[active] ? " selected" : ""}>${esc(m.label)}</option>`)
    .join("");
  $("#legend").innerHTML = legendHTML(metricOf[active]);
}

$("#layers").addEventListener("change", async (e) => {
  active = e.target.value;
  params.set("layer", active);
  history.replaceState(null, "", `${location.pathname}?${params}${location.hash}`);
  renderControls();
  await map.styled;
  showLayer(map, LAYERS, active);
  popup.follow();
});
$("#metric").addEventListener("change", async (e) => {
  metricOf[active] = METRICS[active].find((m) => m.id === e.target.value);
  renderControls();
  await map.styled;
  colourBy(map, active, metricOf[active]);
  popup.follow();
});
renderControls();

const popup = popupOnClick(map, () => [fillId(active)]);
window.covermap.popup = popup;
keepFresh(map, () => [active, "roads"], 5000, (t) => {
  $("#updated").textContent = `tiles refreshed ${when(t)}`;
});

every(5000, async () => {
  try {
    const s = await api("/api/v1/stats");
    const st = s.stats;
    $("#stats").innerHTML = pairs([
      ["storage", esc(s.backend)],
      ["cells covered", units(st.cells)],
      ["uploads processed", units(st.uploads_processed)],
      ["uploads rejected", units(st.uploads_rejected)],
      ["uploads queued", units(st.uploads_queued)],
      ["jobs waiting", units(st.jobs_queued + st.jobs_leased)],
      ["jobs failed", units(st.jobs_failed)],
      ["road segments", units(st.road_segments)],
      ["reward policy", `v${esc(s.policy_version)} <span class="mono" title="${esc(s.policy_hash)}">${esc(String(s.policy_hash).slice(0, 10))}</span>`],
    ]);
    $("#stats-error").textContent = "";
  } catch (e) {
    $("#stats-error").textContent = `stats: ${e.message}`;
  }
});
