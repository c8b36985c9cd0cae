// The spectrum view of the live frequency plan: the band as a strip, carriers as marks coloured by
// state, intermodulation products as ticks, conflicts in red with lines to their sources, exclusions
// (TV channels, ranges) shaded. Click a conflict for its finding and a "Suggest" button. Uses board.js's
// helpers (api, el, svg, toast, API); every label is set as text, never as markup.
"use strict";

// drawn one viewBox unit to a CSS pixel at the view's own width (1000 until it has one): text keeps its size and
// shape on a phone instead of being scaled or squeezed with the band
const SPECTRUM = { width: 1000, height: 160, stripTop: 40, stripHeight: 50, pad: 40, labelEvery: 90 };
// `focus`: the finding that is the spectrum's one Tab stop (roving tabindex: arrow keys move it along the band);
// `carrier`: the carrier last tapped or clicked, named under the band
const spectrumState = { plan: null, selected: null, carrier: null, drawn: "", focus: null, order: [], width: 0 };

function spectrumRange(plan) {
  const points = plan.carriers.map((c) => c.frequency_mhz);
  for (const finding of plan.findings) if (finding.product_mhz !== null) points.push(finding.product_mhz);
  if (!points.length) return null;
  const low = Math.min(...points), high = Math.max(...points);
  const margin = Math.max(0.5, (high - low) * 0.08);
  return [low - margin, high + margin];
}

function renderSpectrum() {
  const plan = spectrumState.plan;
  const view = $("spectrum");
  const hadFocus = view.contains(document.activeElement);
  view.replaceChildren();
  spectrumState.order = [];
  const range = plan && spectrumRange(plan);
  $("spectrum-panel").hidden = !plan;
  if (!plan) return;
  $("spectrum-count").textContent = plan.alerts ? "(" + plan.alerts + " conflicts)" : plan.warnings ? "(" + plan.warnings + " warnings)" : "";
  if (!range) { view.append(svg("text", { x: 10, y: 30, class: "axis" }, "no carriers")); return; }
  const { height, stripTop, stripHeight, pad, labelEvery } = SPECTRUM;
  const width = Math.round(view.getBoundingClientRect().width) || SPECTRUM.width;
  spectrumState.width = width;
  const [low, high] = range;
  const x = (mhz) => pad + ((mhz - low) / (high - low)) * (width - 2 * pad);
  view.setAttribute("viewBox", "0 0 " + width + " " + height);
  view.append(svg("rect", { x: pad, y: stripTop, width: width - 2 * pad, height: stripHeight, class: "strip" }));
  for (const exclusion of plan.exclusions) {
    if (exclusion.high_mhz < low || exclusion.low_mhz > high) continue;
    const left = x(Math.max(low, exclusion.low_mhz)), right = x(Math.min(high, exclusion.high_mhz));
    const shade = svg("rect", { x: left, y: stripTop, width: Math.max(1, right - left), height: stripHeight, class: "exclusion" });
    shade.append(svg("title", {}, exclusion.label + " (" + exclusion.low_mhz + "–" + exclusion.high_mhz + " MHz)"));
    view.append(shade, svg("text", { x: left + 2, y: stripTop - 4, class: "axis" }, exclusion.label));
  }
  const ticks = Math.max(2, Math.min(6, Math.floor(width / labelEvery)));
  for (let i = 0; i <= ticks; i++) {
    const mhz = low + ((high - low) * i) / ticks;
    view.append(svg("text", { x: x(mhz), y: height - 6, class: "axis", "text-anchor": "middle" }, mhz.toFixed(3)));
  }
  const carriers = new Map(plan.carriers.map((c) => [c.id, c]));
  for (const carrier of plan.carriers) {
    // named for a screen reader, and a finger-wide target that names it under the band (a tooltip needs a mouse)
    const at = x(carrier.frequency_mhz);
    const mark = svg("g", { class: "carrier-mark", "data-carrier": carrier.id, role: "img", "aria-label": carrierText(carrier) });
    mark.append(
      svg("rect", { x: at - 8, y: stripTop - 8, width: 16, height: stripHeight + 8, class: "hit" }),
      svg("line", {
        x1: at, x2: at, y1: stripTop - 8, y2: stripTop + stripHeight,
        class: "carrier " + carrier.state + (carrier.declared_id !== null ? " declared" : ""),
      }),
      svg("title", {}, carrierText(carrier)),
    );
    mark.addEventListener("click", () => selectCarrier(carrier.id));
    view.append(mark);
    if (carrier.bandwidth_khz > 0) {
      const half = carrier.bandwidth_khz / 2000;
      view.append(svg("rect", {
        x: x(carrier.frequency_mhz - half), y: stripTop + stripHeight - 10,
        width: Math.max(1, x(carrier.frequency_mhz + half) - x(carrier.frequency_mhz - half)), height: 10,
        class: "wideband " + carrier.state,
      }));
    }
  }
  plan.findings.slice(0, 300).forEach((finding, number) => {  // worst first: the rest would be noise
    if (finding.product_mhz === null && finding.kind !== "spacing") return;
    const victim = carriers.get(finding.victim);
    const at = finding.product_mhz !== null ? finding.product_mhz : victim.frequency_mhz;
    const conflict = finding.severity === "alert";
    const group = svg("g", { class: conflict ? "conflict" : "product", "data-finding": number, tabindex: -1, role: "button" });
    spectrumState.order.push([at, number]);
    const selected = spectrumState.selected === number;
    if (selected) group.classList.add("selected");
    // lines to the sources for conflicts and the finding opened; a warning is a tick until then
    for (const source of conflict || selected ? finding.sources : []) {
      const from = carriers.get(source);
      if (!from) continue;
      group.append(svg("line", {
        x1: x(at), y1: stripTop + stripHeight + 8, x2: x(from.frequency_mhz), y2: stripTop + stripHeight,
        class: "source-line",
      }));
    }
    const y = stripTop + stripHeight + (conflict ? 2 : 18);
    group.append(svg("rect", { x: x(at) - 3, y, width: 6, height: conflict ? 14 : 10, class: "tick" }));
    group.append(svg("title", {}, findingText(finding)));
    group.addEventListener("click", () => selectFinding(number));
    view.append(group);
  });
  // along the band, low to high: the order the arrow keys move in
  spectrumState.order.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const numbers = spectrumState.order.map(([, number]) => number);
  if (!numbers.includes(spectrumState.focus)) spectrumState.focus = numbers.includes(spectrumState.selected) ? spectrumState.selected : numbers.length ? numbers[0] : null;
  const stop = spectrumState.focus === null ? null : view.querySelector('[data-finding="' + spectrumState.focus + '"]');
  if (stop) {
    stop.setAttribute("tabindex", "0");
    if (hadFocus) stop.focus();  // redrawn under the keyboard: the focus stays on the same finding
  }
  renderFinding();
}

// One Tab stop for the whole spectrum: arrows move between findings, Home/End to the ends, Enter or Space opens one.
function spectrumKey(event) {
  const current = event.target.closest && event.target.closest("[data-finding]");
  if (!current) return;
  const numbers = spectrumState.order.map(([, number]) => number);
  const at = numbers.indexOf(Number(current.dataset.finding));
  const moves = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: numbers.length - 1 };
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();  // Space would scroll the page
    selectFinding(Number(current.dataset.finding));
  } else if (event.key in moves) {
    event.preventDefault();
    const next = numbers[Math.max(0, Math.min(numbers.length - 1, moves[event.key]))];
    current.setAttribute("tabindex", "-1");
    spectrumState.focus = next;
    const node = $("spectrum").querySelector('[data-finding="' + next + '"]');
    node.setAttribute("tabindex", "0");
    node.focus();
  }
}

function carrierText(carrier) {
  return carrier.label + " " + carrier.frequency_mhz.toFixed(3) + " MHz (" + carrier.state + ")";
}

function findingText(finding) {
  const sources = finding.source_labels.join(", ");
  if (finding.kind === "intermod") {
    return finding.product + " (order " + finding.order + ") of " + sources + " at " + finding.product_mhz.toFixed(3)
      + " MHz, " + finding.offset_khz.toFixed(0) + " kHz from " + finding.victim_label + " (guard " + finding.guard_khz + " kHz)"
      + (finding.count > 1 ? "; " + (finding.count - 1) + " more like it" : "");
  }
  if (finding.kind === "spacing") {
    return finding.victim_label + " is " + Math.abs(finding.offset_khz).toFixed(0) + " kHz from " + sources
      + " (needs " + finding.guard_khz + " kHz)";
  }
  return finding.victim_label + ": " + finding.kind.replace("_", " ") + " " + sources;
}

function selectFinding(number) {
  spectrumState.selected = number;
  spectrumState.focus = number;
  spectrumState.carrier = null;
  renderSpectrum();
}

function selectCarrier(id) {
  spectrumState.carrier = id;
  spectrumState.selected = null;
  renderSpectrum();
}

function renderFinding() {
  const box = $("finding");
  box.replaceChildren();
  const plan = spectrumState.plan;
  const finding = plan && spectrumState.selected !== null ? plan.findings[spectrumState.selected] : null;
  const carrier = plan && plan.carriers.find((c) => c.id === spectrumState.carrier);
  if (!finding && carrier) box.append(el("strong", null, "Carrier"), el("span", "carrier-text", carrierText(carrier)));
  if (!finding) return;
  box.append(el("strong", "severity " + finding.severity, finding.severity), el("span", "finding-text", findingText(finding)));
  const victim = plan.carriers.find((c) => c.id === finding.victim);
  if (!victim || victim.device_id === null || !victim.channels.length) return;
  const suggest = el("button", null, "Suggest");
  suggest.type = "button";
  suggest.addEventListener("click", () => suggestFor(victim));
  box.append(suggest, el("ul", "list suggestions"));
}

async function suggestFor(victim) {
  const channel = victim.device_id + ":" + victim.channels[0];
  // 4 MHz either side of where the channel is now, on a 25 kHz raster, inside the device's band where the
  // hub knows it (else that window is the band)
  const window = { range_low_mhz: victim.frequency_mhz - 4, range_high_mhz: victim.frequency_mhz + 4 };
  const body = { channel, count: 3, step_khz: 25, ...window };
  if (!victim.band) Object.assign(body, { low_mhz: window.range_low_mhz, high_mhz: window.range_high_mhz });
  let answer;
  try { answer = await api("POST", API + "/frequency-plan/suggest", body); } catch (error) { toast(error.message); return; }
  const list = $("finding").querySelector(".suggestions");
  if (!answer.candidates.length) { list.replaceChildren(el("li", null, "no clean frequency in " + answer.band.low_mhz + "–" + answer.band.high_mhz + " MHz")); return; }
  list.replaceChildren(...answer.candidates.map((candidate) => {
    const item = el("li", "candidate");
    item.append(el("span", null, candidate.frequency_mhz.toFixed(3) + " MHz"), el("span", "sub", "margin " + candidate.margin_khz.toFixed(0) + " kHz"));
    const apply = el("button", null, "Tune");
    apply.type = "button";
    apply.addEventListener("click", async () => {
      try {
        await api("POST", API + "/channels/" + encodeURIComponent(channel) + "/commands", { kind: "frequency", value: candidate.frequency_mhz });
        toast(channel + " tuned to " + candidate.frequency_mhz.toFixed(3) + " MHz");
        refreshSpectrum();
      } catch (error) { toast(error.message); }
    });
    item.append(apply);
    return item;
  }));
}

async function refreshSpectrum() {
  let plan;
  try { plan = await api("GET", API + "/frequency-plan"); } catch (error) { markPanel("spectrum-panel", true); return; }
  markPanel("spectrum-panel", false);
  // redraw only what changed: a redraw under the pointer would swallow a click
  const drawn = JSON.stringify({ ...plan, checked_at: null });
  if (drawn === spectrumState.drawn) return;
  spectrumState.drawn = drawn;
  spectrumState.plan = plan;
  if (plan && spectrumState.selected !== null && spectrumState.selected >= plan.findings.length) spectrumState.selected = null;
  renderSpectrum();
}

$("spectrum").addEventListener("keydown", spectrumKey);
// a phone turned or a window resized: drawn again at the new width (text stays one unit to a pixel)
new ResizeObserver(() => {
  const width = Math.round($("spectrum").getBoundingClientRect().width);
  if (spectrumState.plan && width && width !== spectrumState.width) renderSpectrum();
}).observe($("spectrum"));
refreshSpectrum();
setInterval(refreshSpectrum, 3000);
