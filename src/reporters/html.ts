import fs from "node:fs";
import path from "node:path";
import { isFlaky, type TestResult } from "../runner/run.js";
import { errorMessage } from "../util/errors.js";

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const secs = (ms: number) =>
  ms >= 60_000
    ? `${Math.floor(ms / 60_000)} min ${((ms % 60_000) / 1000).toFixed(0)} s`
    : `${(ms / 1000).toFixed(1)} s`;
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

const LOG_LINES = 400;

function logTail(file: string): string | undefined {
  try {
    const lines = fs.readFileSync(file, "utf8").replace(ANSI, "").split("\n");
    return (
      lines.length > LOG_LINES
        ? [`… ${lines.length - LOG_LINES} earlier lines in log.txt …`, ...lines.slice(-LOG_LINES)]
        : lines
    ).join("\n");
  } catch {
    return undefined;
  }
}

/**
 * The test on one time axis: subtests as spans, and a tick for every fault set or cleared
 * and every machine started or stopped (each with its time, machine and what it was), then
 * the same events as a list — what happened to the network when, beside what the test did.
 */
function timelineOf(r: TestResult): string | undefined {
  const marks = r.timeline ?? [];
  const spans = r.subtests.filter((s) => s.startMs !== undefined);
  if (!marks.length && !spans.length) return undefined;
  const end = Math.max(r.durationMs, ...marks.map((m) => m.atMs), ...spans.map((s) => s.startMs! + s.durationMs), 1);
  const pct = (ms: number) => `${((100 * ms) / end).toFixed(2)}%`;
  const items = [
    ...spans.map(
      (s) =>
        `<span class="span ${s.outcome}" style="left:${pct(s.startMs!)};width:${pct(Math.max(s.durationMs, end / 400))}" title="${esc(`${s.name}: ${secs(s.durationMs)}`)}"></span>`,
    ),
    ...marks.map(
      (m) =>
        `<span class="tick ${m.kind}" style="left:${pct(m.atMs)}" title="${esc(`${secs(m.atMs)} ${m.machine ? `${m.machine}: ` : ""}${m.label}`)}"></span>`,
    ),
  ];
  const rows = marks.map(
    (m) =>
      `<tr class="${m.kind}"><td class="num">${secs(m.atMs)}</td><td>${m.kind}</td><td>${esc(m.machine ?? "all")}</td><td>${esc(m.label)}</td></tr>`,
  );
  return (
    `<div class="timeline" aria-label="timeline">${items.join("")}</div>` +
    (rows.length
      ? `<details class="events"${marks.some((m) => m.kind === "fault") ? " open" : ""}><summary>timeline: ${marks.filter((m) => m.kind === "fault").length} fault events, ${marks.filter((m) => m.kind === "power").length} power events</summary>` +
        `<table class="events"><thead><tr><th>at</th><th>kind</th><th>machine</th><th>event</th></tr></thead><tbody>${rows.join("")}</tbody></table></details>`
      : "")
  );
}

/**
 * `--video`: each machine's video beside the test's calls. Clicking a call seeks every
 * video of the test to its moment; a failed test's videos open at the failure.
 */
function videosOf(r: TestResult, rel: (f: string) => string): string | undefined {
  const videos = r.videos ?? [];
  if (!videos.length) return undefined;
  const start = Math.min(...videos.map((v) => v.startMs));
  const failedAt =
    r.outcome === "failed" ? ([...(r.calls ?? [])].reverse().find((c) => c.failed)?.atMs ?? r.durationMs) : undefined;
  const players = videos.map(
    (v) =>
      `<figure><video controls preload="metadata" src="${rel(v.file)}" data-start-ms="${v.startMs}"${failedAt !== undefined ? ` data-open-ms="${failedAt}"` : ""}></video>` +
      `<figcaption>${esc(v.machine)}: ${v.frames} screens, ${secs(v.durationMs)}</figcaption></figure>`,
  );
  const calls = (r.calls ?? []).filter((c) => c.atMs + c.durationMs >= start);
  const items = calls.map(
    (c) =>
      `<li${c.failed ? ' class="failed"' : ""}><button type="button" data-ms="${c.atMs}">${secs(c.atMs)}</button> ${c.machine ? `<b>${esc(c.machine)}</b>: ` : ""}${esc(c.label)} <small>${secs(c.durationMs)}</small></li>`,
  );
  return `<div class="videos"><div class="players">${players.join("")}</div>${items.length ? `<ol class="calls">${items.join("")}</ol>` : ""}</div>`;
}

function testSection(r: TestResult, outputDir: string, index: number): string {
  const outcome = r.cached ? "cached" : isFlaky(r) ? "flaky" : r.outcome;
  const rel = (f: string) => encodeURI(path.relative(outputDir, path.join(r.resultDir, f)));
  const files = r.resultDir && fs.existsSync(r.resultDir) ? fs.readdirSync(r.resultDir).sort() : [];
  const shots = files.filter((f) => f.endsWith(".png"));
  const parts: string[] = [];
  parts.push(
    `<h2><span class="badge ${outcome}">${outcome}</span> ${esc(r.name)} <small>${esc(r.file)}${r.cached ? "" : ` · ${secs(r.durationMs)}`}</small></h2>`,
  );
  const boots = Object.entries(r.bootMs);
  if (boots.length) {
    parts.push(
      `<p class="boots">${boots.map(([m, ms]) => `<span><b>${esc(m)}</b> shell after ${secs(ms)}</span>`).join(" ")}</p>`,
    );
  }
  if (r.subtests.length) {
    const longest = Math.max(...r.subtests.map((s) => s.durationMs), 1);
    parts.push(
      '<table class="subtests"><thead><tr><th>subtest</th><th>time</th><th></th></tr></thead><tbody>',
      ...r.subtests.map(
        (s) =>
          `<tr class="${s.outcome}"><td>${s.outcome === "failed" ? "✗" : "✓"} ${esc(s.name)}</td><td class="num">${secs(s.durationMs)}</td>` +
          `<td class="bar"><span style="width:${((100 * s.durationMs) / longest).toFixed(1)}%"></span></td></tr>`,
      ),
      "</tbody></table>",
    );
  }
  const timeline = timelineOf(r);
  if (timeline) parts.push(timeline);
  const videos = videosOf(r, rel);
  if (videos) parts.push(videos);
  for (const [i, a] of (r.failedAttempts ?? []).entries()) {
    const dir = encodeURI(path.relative(outputDir, a.resultDir));
    parts.push(
      `<details class="attempt"><summary>attempt ${i + 1} failed after ${secs(a.durationMs)} · <a href="${dir}/log.txt">log</a> · <a href="${dir}/">files</a></summary>` +
        `<pre class="error">${esc(a.error.replace(ANSI, ""))}</pre></details>`,
    );
  }
  if (r.error) parts.push(`<pre class="error">${esc(errorMessage(r.error).replace(ANSI, ""))}</pre>`);
  if (shots.length) {
    parts.push(
      '<div class="shots">',
      ...shots.map(
        (f) =>
          `<figure><a href="${rel(f)}"><img src="${rel(f)}" alt="${esc(f)}" loading="lazy"></a><figcaption>${esc(f)}</figcaption></figure>`,
      ),
      "</div>",
    );
  }
  const log = r.resultDir ? logTail(path.join(r.resultDir, "log.txt")) : undefined;
  if (log !== undefined)
    parts.push(
      `<details${r.outcome === "failed" ? " open" : ""}><summary>log</summary><pre class="log">${esc(log)}</pre></details>`,
    );
  const others = files.filter((f) => !f.endsWith(".png") && !f.endsWith(".webm"));
  if (others.length)
    parts.push(`<p class="files">${others.map((f) => `<a href="${rel(f)}">${esc(f)}</a>`).join(" ")}</p>`);
  return `<section class="test" id="test-${index}" data-outcome="${r.outcome}">\n${parts.join("\n")}\n</section>`;
}

const STYLE = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --skip: #9a6700; --muted: #6e7781; --line: #d0d7de; --bg2: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --line: #30363d; --bg2: #161b22; --muted: #8b949e; } }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1.5rem; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 1rem; border-bottom: 1px solid var(--line); padding-bottom: .75rem; }
h1 { font-size: 1.4rem; margin: 0; }
nav button { font: inherit; border: 1px solid var(--line); background: var(--bg2); color: inherit; border-radius: 2rem; padding: .15rem .8rem; cursor: pointer; }
nav button[aria-pressed="true"] { outline: 2px solid currentColor; }
.meta { color: var(--muted); margin-left: auto; }
section.test { border: 1px solid var(--line); border-radius: .5rem; margin: 1rem 0; padding: .5rem 1rem 1rem; }
section.test[data-outcome="failed"] { border-left: 4px solid var(--bad); }
h2 { font-size: 1.1rem; } h2 small { color: var(--muted); font-weight: normal; }
.badge { border-radius: .3rem; color: #fff; font-size: .8rem; padding: .1rem .45rem; text-transform: uppercase; vertical-align: 2px; }
.badge.passed, .badge.cached { background: var(--ok); } .badge.failed { background: var(--bad); } .badge.skipped { background: var(--skip); } .badge.flaky { background: #b7791f; }
.boots span { margin-right: 1rem; color: var(--muted); }
table.subtests { border-collapse: collapse; width: 100%; }
table.subtests td, table.subtests th { border-bottom: 1px solid var(--line); padding: .2rem .4rem; text-align: left; }
tr.failed td:first-child { color: var(--bad); } .num { text-align: right; white-space: nowrap; width: 6rem; }
td.bar { width: 35%; } td.bar span { display: block; height: .6rem; border-radius: .3rem; background: var(--ok); min-width: 2px; }
tr.failed td.bar span { background: var(--bad); }
.timeline { position: relative; height: 1.6rem; margin: .6rem 0; background: var(--bg2); border-radius: .3rem; }
.timeline .span { position: absolute; top: .35rem; height: .9rem; border-radius: .2rem; background: var(--ok); opacity: .55; }
.timeline .span.failed { background: var(--bad); }
.timeline .tick { position: absolute; top: 0; bottom: 0; width: 3px; margin-left: -1px; }
.timeline .tick.fault { background: var(--bad); } .timeline .tick.power { background: var(--muted); }
table.events { border-collapse: collapse; font-size: .9rem; } table.events td, table.events th { padding: .1rem .6rem; text-align: left; }
tr.fault td:nth-child(2) { color: var(--bad); }
pre { background: var(--bg2); border-radius: .4rem; overflow-x: auto; padding: .75rem; font-size: .85rem; }
pre.error { border-left: 4px solid var(--bad); white-space: pre-wrap; }
pre.log { max-height: 30rem; overflow-y: auto; }
.shots { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0; } img { max-width: 22rem; border: 1px solid var(--line); }
figcaption, .files { color: var(--muted); font-size: .85rem; } .files a { margin-right: .8rem; }
.videos { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; } .players { display: flex; flex-direction: column; gap: .5rem; }
video { width: 36rem; max-width: 100%; border: 1px solid var(--line); border-radius: .3rem; background: #000; }
ol.calls { flex: 1; min-width: 18rem; max-height: 28rem; overflow-y: auto; margin: 0; padding-left: 0; list-style: none; font-size: .85rem; }
ol.calls li { padding: .1rem 0; } ol.calls li.failed { color: var(--bad); } ol.calls small { color: var(--muted); }
ol.calls button { font: inherit; border: 1px solid var(--line); background: var(--bg2); color: inherit; border-radius: .3rem; cursor: pointer; min-width: 4.5rem; }
ol.calls li.current button { outline: 2px solid currentColor; }
`;

// Filter by outcome; the URL hash (#failed) selects one on load, so a link can point at the failures.
const SCRIPT = `
const buttons = document.querySelectorAll("nav button");
function show(filter) {
  for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.filter === filter));
  for (const s of document.querySelectorAll("section.test")) s.hidden = filter !== "all" && s.dataset.outcome !== filter;
}
for (const b of buttons) b.addEventListener("click", () => { history.replaceState(null, "", "#" + b.dataset.filter); show(b.dataset.filter); });
show(["passed", "failed", "skipped"].includes(location.hash.slice(1)) ? location.hash.slice(1) : "all");
// Videos: a call's button seeks its test's videos to the call (each video's t = 0 is data-start-ms).
function seek(section, ms) {
  for (const v of section.querySelectorAll("video")) v.currentTime = Math.max(0, (ms - Number(v.dataset.startMs)) / 1000);
  for (const li of section.querySelectorAll("ol.calls li")) li.classList.toggle("current", li.firstElementChild.dataset.ms === String(ms));
}
for (const b of document.querySelectorAll("ol.calls button")) b.addEventListener("click", () => seek(b.closest("section"), Number(b.dataset.ms)));
for (const v of document.querySelectorAll("video[data-open-ms]")) {
  const open = () => { v.currentTime = Math.max(0, (Number(v.dataset.openMs) - Number(v.dataset.startMs)) / 1000); };
  if (v.readyState >= 1) open(); else v.addEventListener("loadedmetadata", open, { once: true });
}
`;

/** A self-contained HTML report: one section per test, artifacts linked relative to the output folder. */
export function htmlReport(results: TestResult[], outputDir: string, generated = new Date()): string {
  const count = (o: TestResult["outcome"]) => results.filter((r) => r.outcome === o).length;
  const [passed, failed, skipped] = [count("passed"), count("failed"), count("skipped")];
  const total = results.reduce((a, r) => a + r.durationMs, 0);
  const button = (filter: string, label: string) =>
    `<button type="button" data-filter="${filter}" aria-pressed="false">${label}</button>`;
  // failures first: they are what the reader came for
  const ordered = [...results.entries()].sort(
    ([, a], [, b]) => Number(b.outcome === "failed") - Number(a.outcome === "failed"),
  );
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vmrig: ${passed} passed, ${failed} failed</title>
<style>${STYLE}</style>
<header>
<h1>vmrig</h1>
<nav>${button("all", `all ${results.length}`)} ${button("passed", `passed ${passed}`)} ${button("failed", `failed ${failed}`)}${skipped ? ` ${button("skipped", `skipped ${skipped}`)}` : ""}</nav>
<span class="meta">${secs(total)} of tests · ${esc(generated.toISOString().replace("T", " ").slice(0, 19))} UTC</span>
</header>
<main>
${ordered.map(([i, r]) => testSection(r, outputDir, i)).join("\n")}
${results.length === 0 ? "<p>No tests ran.</p>" : ""}
</main>
<script>${SCRIPT}</script>
</html>
`;
}

export function writeHtml(outputDir: string, results: TestResult[]): string {
  fs.mkdirSync(outputDir, { recursive: true });
  const file = path.join(outputDir, "index.html");
  fs.writeFileSync(file, htmlReport(results, path.resolve(outputDir)));
  return file;
}
