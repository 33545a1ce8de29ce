// End-to-end check of covermap's web UI in headless Chromium, driven by playwright-core (no test
// runner): the map renders hexagons from the vector tiles, a hexagon's popup follows the layer
// switch and road names are drawn with covermap's own glyphs, an auditor reads a refused frame's
// measures and approves it from the keyboard, a planner draws a demand area, reads its preview,
// creates it and replays a closed epoch in the what-if, a driver sees its uploads, a map of a
// drive's matched roads, a refused frame's verdict and measures, and checks the Merkle proof of
// its reward in the browser, estimates a planned route, then erases its GPS drive (the proof still verifies). The frame the auditor approved is then reported, kept, reported
// again and blurred further where the auditor drags a box over it.
//
// Run it against a running server that holds the Monaco test data:
//
//   npm ci --prefix web
//   BASE_URL=http://127.0.0.1:8080 OUT=/tmp/covermap-ui \
//   AUDITOR_KEY=... PLANNER_KEY=... DEVICE_KEY=... CONTRIBUTOR=alice EPOCH=N \
//   ROUTE_GPX=route.gpx node web/e2e/ui.mjs
//
// EPOCH is a closed epoch in which CONTRIBUTOR (the device key's contributor) earned a reward;
// ROUTE_GPX a GPX file of a route over the data's roads, which the driver estimates.
//
// CHROMIUM names the browser binary (default /usr/bin/chromium); WebGL runs on SwiftShader, so no
// GPU or display is needed. Each step saves OUT/<step>.png (also when it fails). Progress goes to
// stderr; the only line on stdout, at the end, is
//
//   {"ok":true,"hexes":N,"popup_followed":"radio","road_labels":N,"approved":"UPLOAD/FRAME",
//    "report_kept":"UPLOAD/FRAME","report_blurred":"UPLOAD/FRAME","preview_cells":N,
//    "demand_area":"NAME","simulated":EPOCH,"proof_verified":EPOCH,"estimate_cells":N,
//    "estimate_points":N,"erased":UPLOAD}
//
// A failed check, a missing variable, or an uncaught error in a page exits 1 with the reason on
// stderr. Console errors of the pages (failed requests among them) are reported, not failed on.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const REQUIRED = ["BASE_URL", "OUT", "AUDITOR_KEY", "PLANNER_KEY", "DEVICE_KEY", "CONTRIBUTOR", "EPOCH", "ROUTE_GPX"];
const missing = REQUIRED.filter((name) => !process.env[name]);
if (missing.length) {
  console.error(`ui: missing environment variable${missing.length > 1 ? "s" : ""}: ${missing.join(", ")}`);
  process.exit(1);
}
const BASE = process.env.BASE_URL.replace(/\/+$/, "");
const OUT = process.env.OUT;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const EPOCH = process.env.EPOCH;
mkdirSync(OUT, { recursive: true });

/** The map page's hexagon fill layer (fillId("coverage") in assets/common.js). */
const COVERAGE_FILL = "coverage-fill";
/** A triangle around Monaco, and a view wide enough to click all of its corners. */
const TRIANGLE = [[7.395, 43.718], [7.452, 43.722], [7.418, 43.768]];
const TRIANGLE_VIEW = [[7.37, 43.70], [7.47, 43.78]];

const log = (...a) => console.error("ui:", ...a);

class CheckFailed extends Error {}
const fail = (message) => {
  throw new CheckFailed(message);
};

const args = [
  // Software WebGL: ANGLE on SwiftShader, allowed although it is a software renderer.
  "--use-angle=swiftshader",
  "--enable-unsafe-swiftshader",
  "--ignore-gpu-blocklist",
  // Containers often have a small /dev/shm.
  "--disable-dev-shm-usage",
];
// Chromium's sandbox refuses to start as root.
if (process.getuid?.() === 0) args.push("--no-sandbox");

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
const pageErrors = [];
const result = { ok: true };

/** Runs one step on a fresh page, saving OUT/<name>.png whatever happens. */
async function step(name, body) {
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") log(`${name}: console error: ${m.text()}`);
  });
  const started = Date.now();
  try {
    await body(page);
  } finally {
    await page.screenshot({ path: join(OUT, `${name}.png`) }).catch((e) => log(`${name}: no screenshot: ${e.message}`));
    await page.close();
  }
  if (pageErrors.length) fail(`uncaught error in a page: ${pageErrors.join("; ")}`);
  log(`${name}: ok in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** Waits for `selector`; on timeout fails with `what` and the errors the page shows. */
async function expect(page, selector, what, timeout = 15000) {
  try {
    return await page.waitForSelector(selector, { timeout });
  } catch {
    const shown = await page.$$eval(".error, .who", (els) =>
      els.map((e) => e.textContent.trim()).filter(Boolean).join(" | ")).catch(() => "");
    fail(`${what} (no ${selector} within ${timeout / 1000} s)${shown ? `; the page says: ${shown}` : ""}`);
  }
}

/** Types a key into the page's key field and waits until the server has accepted it. */
async function useKey(page, key, role) {
  await page.fill("#key", key);
  await page.click("#key-form button");
  const form = await expect(page, "#key-form[data-role]", `the ${role} key was not accepted by /api/v1/me`);
  const got = await form.getAttribute("data-role");
  if (got !== role && got !== "admin") fail(`the key given for the ${role} page is a ${got} key`);
}

/** Waits until the page's map has drawn everything it was loading and stands still. */
async function mapIdle(page, timeout = 60000) {
  await page.waitForFunction(() => window.covermap?.map, null, { timeout })
    .catch(() => fail("the page made no map (is WebGL working?)"));
  // The map first moves to where the data is (the TileJSON's bounds).
  await page.evaluate(() => window.covermap.map.placed);
  // Polled rather than waiting for an `idle` event, which a busy machine may deliver late.
  await page.waitForFunction(() => {
    const map = window.covermap.map;
    return map.loaded() && !map.isMoving();
  }, null, { timeout, polling: 200 }).catch(() => fail(`the map was not done loading within ${timeout / 1000} s`));
}

try {
  await step("map", async (page) => {
    await page.goto(`${BASE}/`);
    await mapIdle(page);
    const opened = await page.evaluate(async () => {
      const tj = await (await fetch("/tiles/roads.json")).json();
      const c = window.covermap.map.getCenter();
      const [w, s, e, n] = tj.bounds;
      return { inside: c.lng >= w && c.lng <= e && c.lat >= s && c.lat <= n, bounds: tj.bounds, center: tj.center };
    });
    if (!opened.inside || opened.bounds[0] <= -180) fail(`the map did not open where the data is: ${JSON.stringify(opened)}`);
    log(`map: opened on the data, bounds ${opened.bounds.map((v) => v.toFixed(3)).join(",")}`);
    const found = await page.waitForFunction((layer) => {
      const features = window.covermap.map.queryRenderedFeatures({ layers: [layer] });
      // A hexagon cut by tile edges comes once per tile: count cells.
      const cells = new Set(features.map((f) => f.properties.cell));
      return cells.size || null;
    }, COVERAGE_FILL, { timeout: 45000, polling: 250 }).catch(() => fail("no coverage hexagons rendered within 45 s"));
    result.hexes = await found.jsonValue();
    log(`map: ${result.hexes} hexagons rendered`);

    // A hexagon's popup: labelled, with units, and it follows the switch to the radio layer.
    const at = await page.evaluate((layer) => {
      const map = window.covermap.map;
      const f = map.queryRenderedFeatures({ layers: [layer] })[0];
      const ring = f.geometry.type === "Polygon" ? f.geometry.coordinates[0] : f.geometry.coordinates[0][0];
      const [lng, lat] = ring.slice(1).reduce(([x, y], [a, b]) => [x + a / (ring.length - 1), y + b / (ring.length - 1)], [0, 0]);
      const p = map.project([lng, lat]);
      return { x: p.x, y: p.y };
    }, COVERAGE_FILL);
    const canvas = await page.$("#map canvas.maplibregl-canvas");
    const box = await canvas.boundingBox();
    await page.mouse.click(box.x + at.x, box.y + at.y);
    await expect(page, '.maplibregl-popup .popup[data-layer="coverage"]', "clicking a hexagon opened no coverage popup");
    const seen = await page.textContent('.maplibregl-popup tr[data-field="last seen"]').catch(() => "");
    if (!/ago|just now/.test(seen)) fail(`the coverage popup does not say when the cell was last seen in words: “${seen}”`);
    const fresh = await page.textContent('.maplibregl-popup tr[data-field="freshness"]').catch(() => "");
    if (!/\d+ %/.test(fresh)) fail(`the coverage popup gives no freshness in %: “${fresh}”`);
    await page.click('#layers label:has(input[value="radio"])');
    await expect(page, '.maplibregl-popup .popup[data-layer="radio"]', "the popup did not follow the switch to the radio layer", 45000);
    const signal = await page.textContent('.maplibregl-popup tr[data-field="best signal"]').catch(() => "");
    if (!/dBm/.test(signal)) fail(`the radio popup gives no best signal in dBm: “${signal}”`);
    const lte = await page.textContent('.maplibregl-popup tr[data-field="LTE"]').catch(() => "");
    if (!/best .*dBm.*samples?\)/.test(lte)) fail(`the radio popup has no LTE line with its samples: “${lte}”`);
    result.popup_followed = "radio";
    log(`map: the popup followed to the radio layer: ${signal.trim()} · ${lte.trim()}`);

    // Close in, road names are drawn along the roads with the glyphs covermap serves.
    await page.click(".maplibregl-popup-close-button");
    await page.evaluate(() => window.covermap.map.jumpTo({ zoom: 16.5 }));
    await mapIdle(page);
    const labels = await page.waitForFunction(() => {
      const names = window.covermap.map.queryRenderedFeatures({ layers: ["roads-label"] })
        .map((f) => f.properties.name);
      return names.length ? [...new Set(names)] : null;
    }, null, { timeout: 45000, polling: 250 }).catch(() => fail("no road names drawn at zoom 16.5 (glyphs from /fonts?)"));
    result.road_labels = (await labels.jsonValue()).length;
    log(`map: road names drawn: ${(await labels.jsonValue()).slice(0, 4).join(", ")}`);
  });

  await step("auditor", async (page) => {
    await page.goto(`${BASE}/auditor`);
    await useKey(page, process.env.AUDITOR_KEY, "auditor");
    await expect(page, "#queue[data-loaded]", "the auditors' queue did not load");
    const open = 'article.frame:not([data-decided]) button[data-action="approve"]';
    const button = await page.$(open);
    if (!button) fail("the auditors' queue holds no undecided refused frame to approve");
    const frame = await button.getAttribute("data-frame");
    // The refusal's measures in words and units, the one behind the reason marked.
    const cause = await expect(page, `article.frame[data-frame="${frame}"] ul.measures li.cause`,
      `frame ${frame} shows no readable measure behind its reason`);
    log(`auditor: frame ${frame}: ${(await cause.textContent()).trim()}`);
    // Approved from the keyboard: a note, Escape out of it, select the frame, "a".
    await page.fill(`[data-note="${frame}"]`, "e2e: approved by ui.mjs");
    await page.press(`[data-note="${frame}"]`, "Escape");
    await page.click(`article.frame[data-frame="${frame}"] b`);
    await expect(page, `article.frame.selected[data-frame="${frame}"]`, `clicking frame ${frame} did not select it`);
    await page.keyboard.press("a");
    await expect(page, `article.frame[data-frame="${frame}"][data-decided="approve"]`,
      `frame ${frame} did not show its approval`);
    await expect(page, `#audit-log tr[data-frame="${frame}"][data-logged="approve"]`,
      `the audit log does not show frame ${frame} approved`);
    // For the screenshot: its blurred copy, if it has one.
    await page.waitForSelector(`article.frame[data-frame="${frame}"] img.thumb`, { timeout: 5000 }).catch(() => {});
    result.approved = frame;
    log(`auditor: approved frame ${frame}`);

    // Published now, the frame is reported by someone without a key: hidden at once, it waits
    // in the reports with its image; the auditor keeps it, and it is shown again.
    const [upload, index] = frame.split("/");
    const reported = await fetch(`${BASE}/api/v1/frames/${upload}/${index}/report`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ reason: "face", note: "e2e: reported by ui.mjs" }),
    });
    if (reported.status !== 202) fail(`reporting frame ${frame}: ${reported.status} ${await reported.text()}`);
    const hidden = await fetch(`${BASE}/api/v1/frames/${upload}/${index}/image`);
    if (hidden.status !== 404) fail(`a reported frame is still served: ${hidden.status}`);
    await page.reload();
    await useKey(page, process.env.AUDITOR_KEY, "auditor");
    const row = `#reports[data-loaded] tr[data-frame="${frame}"]`;
    await expect(page, row, `the report of frame ${frame} is not in the auditor's reports`);
    await expect(page, `${row} img.thumb`, `the reported frame ${frame} shows no image to decide by`);
    await page.click(`${row} button[data-report-action="keep"]`);
    await expect(page, `${row}[data-decided="keep"]`, `keeping the report of frame ${frame} did not show`);
    const shown = await fetch(`${BASE}/api/v1/frames/${upload}/${index}/image`);
    if (shown.status !== 200) fail(`a kept frame is not served again: ${shown.status}`);
    const keptBytes = Buffer.from(await shown.arrayBuffer());
    result.report_kept = frame;
    log(`auditor: kept reported frame ${frame}`);

    // Reported again: this time the auditor drags a box over the frame and blurs it there. The
    // frame is shown again, as other bytes.
    const again = await fetch(`${BASE}/api/v1/frames/${upload}/${index}/report`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ reason: "plate", note: "e2e: reported again by ui.mjs" }),
    });
    if (again.status !== 202) fail(`reporting frame ${frame} again: ${again.status} ${await again.text()}`);
    await page.reload();
    await useKey(page, process.env.AUDITOR_KEY, "auditor");
    await expect(page, `${row} img.thumb`, `the second report of frame ${frame} shows no image`);
    // The key is taken twice after a reload (the saved one, then the one typed), and each time
    // the reports are listed again, replacing an open editor: wait until the page is quiet.
    await page.waitForLoadState("networkidle").catch(() => {});
    await expect(page, `${row} img.thumb`, `the second report of frame ${frame} shows no image`);
    await page.click(`${row} button[data-report-action="mark"]`);
    const marked = await expect(page, "tr.blur-editor [data-marker] img", `frame ${frame} opened no picture to mark`);
    await page.waitForFunction(() => document.querySelector("tr.blur-editor [data-marker] img")?.naturalWidth > 0,
      null, { timeout: 10000 }).catch(() => fail(`the picture of frame ${frame} to mark did not load`));
    // The drag is tried again if no box was marked: the page may lay itself out again (a list
    // refreshed) between the button's press and release.
    let box = marked;
    for (let attempt = 1; ; attempt += 1) {
      const area = await box.boundingBox();
      await page.mouse.move(area.x + area.width * 0.2, area.y + area.height * 0.2);
      await page.mouse.down();
      await page.mouse.move(area.x + area.width * 0.8, area.y + area.height * 0.75, { steps: 8 });
      await page.mouse.up();
      const ok = await page.waitForSelector('tr.blur-editor [data-marker][data-marks="1"]', { timeout: 3000 })
        .then(() => true, () => false);
      if (ok) break;
      if (attempt === 3) {
        await expect(page, 'tr.blur-editor [data-marker][data-marks="1"]', `dragging over frame ${frame} marked no box`);
      }
      log(`auditor: drag ${attempt} over frame ${frame} marked no box; again`);
      if (!(await page.$("tr.blur-editor [data-marker] img"))) {
        await page.click(`${row} button[data-report-action="mark"]`);
      }
      box = await expect(page, "tr.blur-editor [data-marker] img", `frame ${frame} has no picture to mark any more`);
      await page.waitForFunction(() => document.querySelector("tr.blur-editor [data-marker] img")?.naturalWidth > 0,
        null, { timeout: 10000 }).catch(() => fail(`the picture of frame ${frame} to mark did not load`));
    }
    await page.click('tr.blur-editor button[data-report-action="blur"]');
    await expect(page, `${row}[data-decided="blur"]`, `blurring frame ${frame} did not show as decided`);
    const blurred = await fetch(`${BASE}/api/v1/frames/${upload}/${index}/image`);
    if (blurred.status !== 200) fail(`a frame blurred further is not served again: ${blurred.status}`);
    const blurredBytes = Buffer.from(await blurred.arrayBuffer());
    if (Buffer.compare(blurredBytes, keptBytes) === 0) fail(`frame ${frame} is served unchanged after it was blurred`);
    result.report_blurred = frame;
    log(`auditor: blurred reported frame ${frame} further (${keptBytes.length} -> ${blurredBytes.length} bytes)`);
  });

  await step("planner", async (page) => {
    await page.goto(`${BASE}/planner`);
    await useKey(page, process.env.PLANNER_KEY, "planner");
    await mapIdle(page);
    await page.evaluate((view) => new Promise((resolve) => {
      const map = window.covermap.map;
      map.once("moveend", resolve);
      map.fitBounds(view, { duration: 0 });
    }), TRIANGLE_VIEW);
    const canvas = await page.$("#map canvas.maplibregl-canvas");
    const box = await canvas.boundingBox();
    const points = await page.evaluate((corners) =>
      corners.map((c) => window.covermap.map.project(c)).map((p) => [p.x, p.y]), TRIANGLE);
    await page.click('[data-action="draw"]');
    for (const [x, y] of points) {
      if (x < 0 || y < 0 || x > box.width || y > box.height) fail(`corner ${x},${y} is off the map`);
      await page.mouse.click(box.x + x, box.y + y);
      // Apart in time as in space, so no two clicks read as a double-click.
      await page.waitForTimeout(400);
    }
    await page.click('[data-action="finish"]');
    const status = await page.textContent("#draw-status");
    if (!/3 corners/.test(status)) fail(`the drawn area is not a triangle: “${status}”`);
    // Before it is created: a preview of what it would do, over Monaco's roads.
    const preview = await expect(page, "#area-preview[data-cells]", "no preview of the drawn area");
    const cells = Number(await preview.getAttribute("data-cells"));
    const roads = await page.textContent('#area-preview tr[data-preview="road length"]');
    if (!(cells > 0) || !/[1-9][\d.]* km/.test(roads)) fail(`the preview shows no cells or no road length: ${cells} cells, “${roads}”`);
    result.preview_cells = cells;
    log(`planner: preview: ${cells} cells, ${roads.replace(/\s+/g, " ").trim()}`);
    const name = `e2e triangle ${new Date().toISOString().replace(/\..*/, "")}`;
    await page.fill("#area-name", name);
    await page.fill("#area-weight", "2");
    await page.click('#area-form button[type="submit"]');
    await expect(page, "#area-result.ok", "the demand area was not created");
    await expect(page, `#areas tr[data-name="${name}"]`, `the new area “${name}” is not in the list`);
    result.demand_area = name;
    log(`planner: created “${await page.textContent("#area-result")}”`);

    // The what-if: the closed epoch replayed under the policy text (here the one in force).
    await page.fill("#sim-epoch", EPOCH);
    await page.click('#simulate-form button[type="submit"]');
    await expect(page, `#sim-result table[data-simulated="${EPOCH}"]`, `the what-if did not replay epoch ${EPOCH}`, 30000);
    await expect(page, `#sim-result tr[data-contributor="${process.env.CONTRIBUTOR}"]`,
      `the what-if of epoch ${EPOCH} does not list ${process.env.CONTRIBUTOR}`);
    await page.$eval("#sim-result", (e) => e.scrollIntoView());
    result.simulated = Number(EPOCH);
    log(`planner: replayed epoch ${EPOCH}`);

    // Governance: the edited text (a newer version paying twice the radio points) proposed,
    // its simulated effect read, and a ballot signed in this browser with a key it registers
    // as one of the contributor's devices.
    const text = await page.inputValue("#policy-text");
    const version = Number(/^version = (\d+)/m.exec(text)[1]);
    await page.fill("#policy-text", text.replace(/^version = \d+/m, `version = ${version + 1}`)
      .replace("points = 0.25", "points = 0.5"));
    await page.fill("#proposal-title", "Twice the radio points");
    await page.fill("#proposal-rationale", "Radio is scarce here.");
    await page.click('#propose-form button[type="submit"]');
    await expect(page, "#proposal h2[data-shown]", "the proposal was not made", 30000);
    await expect(page, `#proposal table[data-simulated="${EPOCH}"]`, `the proposal does not show its effect on epoch ${EPOCH}`);
    await expect(page, `#proposals tr[data-proposal] td[data-state="open"]`, "the proposal is not listed as open");
    await page.fill("#voter-key", process.env.DEVICE_KEY);
    await page.click("#voter-form button");
    await expect(page, "#voter-form[data-role]", "the voter's device key was not accepted");
    await page.click('#proposal button[data-vote="yes"]');
    await expect(page, "#vote-result [data-ballot]", "the signed ballot was not counted");
    await expect(page, '#tally[data-yes="1"]', "the count does not show the ballot");
    await page.$eval("#proposal", (e) => e.scrollIntoView());
    result.ballot_counted = true;
    log("planner: proposed and voted");
  });

  await step("driver", async (page) => {
    // As the demo links it: the key in the fragment, which never reaches the server's logs and
    // is taken out of the address once read.
    await page.goto(`${BASE}/driver#key=${encodeURIComponent(process.env.DEVICE_KEY)}`);
    const form = await expect(page, "#key-form[data-role]", "the driver's key in the link was not taken");
    if ((await form.getAttribute("data-role")) !== "device") fail("the linked key is not a device key");
    if (page.url().includes(process.env.DEVICE_KEY)) fail(`the key stayed in the address: ${page.url()}`);
    await expect(page, "#uploads tr[data-upload]", "the driver's uploads table has no rows", 20000);
    const rows = await page.$$eval("#uploads tr[data-upload]", (r) => r.length);
    log(`driver: ${rows} uploads listed`);

    // The GPS drive: a map of the roads it was matched to.
    await page.click('#uploads tr[data-kind="gpx"] button[data-action="details"]');
    const driveMap = await expect(page, "tr.detail .drive-map canvas", "the GPS drive's details show no map");
    const segments = Number(await page.$eval("tr.detail .drive-map", (e) => e.dataset.segments));
    if (!(segments > 0)) fail("the GPS drive's map shows no matched road");
    const dropped = Number(await page.$eval("tr.detail .drive-map", (e) => e.dataset.leftOut));
    if (!(dropped > 0)) fail("the GPS drive's map does not show the fix that was left out");
    const jump = await page.textContent('tr.detail li[data-left-out="fix:implausible_jump"]').catch(() => "");
    if (!/jump no vehicle could make/.test(jump)) fail(`the GPS drive does not say why its fix was left out: “${jump}”`);
    await driveMap.scrollIntoViewIfNeeded();
    log(`driver: the GPS drive's map shows ${segments} matched road segments and ${dropped} fix left out`);
    // The camera drive: its refused frame with its verdict in words, what was left out and why.
    await page.click('#uploads tr[data-kind="drive"] button[data-action="details"]');
    await expect(page, 'tr.detail figure.frame-thumb[data-verdict="refused"]', "the camera drive shows no refused frame");
    const why = await page.textContent('tr.detail li[data-left-out^="frame:"]').catch(() => "");
    if (!/frame: /.test(why)) fail(`the camera drive does not say in words why its frame was left out: “${why}”`);
    const measured = await page.$('tr.detail ul.measures li.cause');
    if (!measured) fail("the refused frame's detail is not shown as readable measures");
    log(`driver: left out: ${why.trim()}; ${(await measured.textContent()).trim()}`);

    // The reward of the closed epoch, and its Merkle proof checked here in the browser.
    const proof = `#rewards tr[data-epoch="${EPOCH}"] button[data-action="proof"]`;
    await expect(page, proof, `the driver's rewards have no row for epoch ${EPOCH}`);
    await page.click(proof);
    const verdict = await expect(page, "#proof [data-verified]", "no proof verdict was shown");
    if ((await verdict.getAttribute("data-verified")) !== "true") {
      fail(`the proof of epoch ${EPOCH} does not verify: ${await page.textContent("#proof")}`);
    }
    await page.$eval("#proof", (e) => e.scrollIntoView());
    result.proof_verified = Number(EPOCH);
    log(`driver: the proof of epoch ${EPOCH} verified in the browser`);

    // The estimate before driving: a GPX route chosen as a file, estimated cell by cell and drawn
    // on the page's map.
    await page.setInputFiles("#route-file", process.env.ROUTE_GPX);
    await page.click("#estimate-form button.primary");
    const estimate = await expect(page, "#estimate-result dl[data-cells]", "the chosen route was not estimated", 30000);
    const estimateCells = Number(await estimate.getAttribute("data-cells"));
    const estimatePoints = Number(await estimate.getAttribute("data-points"));
    const cellRows = await page.$$eval("#estimate-result tr[data-cell]", (r) => r.length);
    if (!(estimateCells > 0) || !(estimatePoints > 0) || !(cellRows > 0)) {
      fail(`the estimate shows ${estimateCells} cells, ${estimatePoints} points, ${cellRows} cell rows`);
    }
    await page.waitForFunction(() => window.covermap.map.queryRenderedFeatures({ layers: ["estimate-fill"] }).length > 0,
      null, { timeout: 30000 }).catch(() => fail("the estimate's cells are not drawn on the map"));
    result.estimate_cells = estimateCells;
    result.estimate_points = estimatePoints;
    log(`driver: the route's estimate: ${estimateCells} cells, ${estimatePoints / 1e6} points`);

    // Erasure: the GPS drive erased after a confirm step that says what goes and that the ledger
    // keeps its amounts; it leaves the uploads, joins the erasures, and the proof still verifies.
    const gpx = await page.getAttribute('#uploads tr[data-kind="gpx"]', "data-upload");
    await page.click(`#uploads button[data-action="erase"][data-upload="${gpx}"]`);
    const ask = await expect(page, `#uploads tr[data-confirm="${gpx}"]`, "erasing showed no confirm step");
    const asked = await ask.textContent();
    if (!/ledger keeps/.test(asked) || !/deleted for good/.test(asked)) fail(`the confirm step does not say what goes and what stays: “${asked}”`);
    await page.click(`#uploads button[data-action="erase-confirm"][data-upload="${gpx}"]`);
    await expect(page, `#erasures tr[data-erased="${gpx}"]`, `the erasure of upload ${gpx} is not listed`);
    await page.waitForSelector(`#uploads tr[data-upload="${gpx}"]`, { state: "detached", timeout: 15000 })
      .catch(() => fail(`upload ${gpx} is still listed after its erasure`));
    await page.click(proof);
    await page.waitForFunction(() => document.querySelector("#proof [data-verified]"), null, { timeout: 15000 })
      .catch(() => fail("no proof verdict after the erasure"));
    const still = await page.getAttribute("#proof [data-verified]", "data-verified");
    if (still !== "true") fail(`after the erasure the proof of epoch ${EPOCH} does not verify`);
    // Erasing all asks first too; kept here, so the rest of the uploads stay.
    await page.click('button[data-action="erase-all"]');
    const all = await (await expect(page, "#erase-all-confirm .confirm", "erasing all showed no confirm step")).textContent();
    if (!/all your uploads/i.test(all) || !/ledger keeps/.test(all)) fail(`the erase-all confirm step says: “${all}”`);
    await page.click('button[data-action="erase-all-cancel"]');
    if (await page.$("#erase-all-confirm .confirm")) fail("keeping the uploads did not close the confirm step");
    await page.$eval("#erasures", (e) => e.scrollIntoView());
    result.erased = Number(gpx);
    log(`driver: upload ${gpx} erased from the browser; the proof still verifies`);
  });
} catch (e) {
  const also = pageErrors.length && !(e instanceof CheckFailed) ? ` (uncaught in a page: ${pageErrors.join("; ")})` : "";
  console.error(`ui: FAILED: ${e instanceof CheckFailed ? e.message : e.stack ?? e}${also}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log(JSON.stringify(result));
