// The wmhub status board. Plain DOM, no build step. Every device- or user-supplied string goes
// through textContent (never innerHTML): a receiver's name can be typed at its front panel.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "wmhub.token";
// refusedToken: the token (maybe "") a read was refused with (open_reads = false): see api(); writeRefused: the
// token a write was refused with (on a hub open to reads, nothing else says that the token is wrong)
const state = { devices: new Map(), gone: new Map(), loadedAt: 0, connectionsAskedAt: -1, refusedToken: null, writeRefused: null, group: 0, groups: [], slots: null, alerts: [], alertsOf: new Map(), alertsRead: false, alertsSeen: new Set(), swap: null, stale: new Set() };
const tiles = new Map(); // channel id -> tile element
const $ = (id) => document.getElementById(id);
// A hub that stops answering must not leave the periodic refreshes piling up unanswered requests.
const REQUEST_TIMEOUT_MS = 10000;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

// A read refused for want of the token cannot succeed until the token changes: the polls do not ask again (and
// log a 401 in the console every few seconds) until then.
async function api(method, path, body) {
  const sent = token(), read = method === "GET";
  if (read && state.refusedToken === sent) throw apiError(401, "the hub refused this token", sent);
  const headers = { "Accept": "application/json" };
  if (sent) headers["Authorization"] = "Bearer " + sent;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (read && sent === token()) tokenRefused(response.status === 401 ? sent : null);
  else if (!read && sent && sent === token() && (response.ok || response.status === 401)) {
    state.writeRefused = response.status === 401 ? sent : null;
    needsToken(state.refusedToken !== null);
  }
  if (!response.ok) throw apiError(response.status, data && data.error ? data.error + reasons(data.details) : response.statusText, sent);
  return data;
}

// A 401 with a token sent is a wrong or changed token, not a missing one: said apart, as the hint at the top does.
function apiError(status, message, sent) {
  const words = status !== 401 ? message
    : sent ? "the hub refused the token in the Token field: check it and enter it again"
    : "needs the API token (field at the top): " + message;
  const error = new Error(words);
  error.status = status;
  return error;
}

// What the hub says is wrong beside its error, from an invalid body's details: "the request body is not valid:
// name: must not contain control characters (...)". Without them a refusal would not say what to change.
function reasons(details) {
  if (!Array.isArray(details)) return "";
  const said = details.filter((item) => item && typeof item.msg === "string").map((item) => {
    const field = Array.isArray(item.loc) ? item.loc.filter((part) => typeof part === "string" && part !== "body").pop() : null;
    const msg = item.msg.replace(/^(Value|Assertion) error, /, "");
    return field ? field + ": " + msg : msg;
  });
  return said.length ? ": " + said.join("; ") : "";
}

function toast(text) {
  $("toast").textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { $("toast").textContent = ""; }, 4000);
}

// ---- what a channel looks like

function displayName(channel) {
  return channel.extended_name || channel.name || "Ch " + channel.index;
}

function condition(device, channel) {
  // the hub silent or away: whatever the tile last showed may no longer be true
  if (state.stale.size) return { cls: "stale", text: "stale" };
  if (!device.online) return { cls: "offline", text: "receiver offline" };
  if (channel.tx_present === false) return { cls: "txoff", text: "TX off" };
  const low = (channel.battery_bars !== null && channel.battery_bars <= 1)
    || (channel.battery_percent !== null && channel.battery_percent <= 20)
    || (channel.battery_runtime_min !== null && channel.battery_runtime_min <= 30);
  if (low) return { cls: "alert low", text: "low battery" };
  if (channel.audio_peak) return { cls: "alert", text: "audio clip" };
  if (channel.warnings && channel.warnings.length) return { cls: "warn", text: channel.warnings.map(warningWords).join(", ") };
  if (channel.rf_quality_percent !== null && channel.rf_quality_percent < 30) return { cls: "warn", text: "weak RF" };
  const alert = alertOf(device.id, channel.index);
  if (alert) return { cls: alert.severity === "critical" ? "alert" : "warn", text: alertWords(alert), title: alert.message };
  return { cls: "", text: "ok" };
}

// A tile names an alert in a few words (its sentence, which for a frequency conflict names every source and
// guard, is in the Alerts panel): "frequency conflict: intermod", "show battery"
const ALERT_WORDS = {
  low_battery: "low battery", tx_off: "TX off", rf_low: "weak RF", audio_clip: "audio clip",
  device_offline: "receiver offline", device_warning: "warning", show_battery: "swap before show end",
  frequency_conflict: "frequency conflict",
};

// A device's warning as words: "battery_runtime_calculating" and the CHG 70N's "BatteryTempOutOfRange" read as
// "battery temp out of range", and wrap on a phone's narrow tile like words do.
function warningWords(warning) {
  return String(warning).replace(/([a-z0-9])([A-Z])/g, "$1 $2").replaceAll("_", " ").toLowerCase();
}

function alertWords(alert) {
  const words = ALERT_WORDS[alert.kind] || String(alert.kind).replaceAll("_", " ");
  return alert.detail ? words + ": " + String(alert.detail).replaceAll("_", " ") : words;
}

// A mute is never hidden behind another condition: the tile shows it in words of its own, next to whatever else
// is wrong (a muted channel with weak RF is both), and says it in the tile's accessible name.
function muteText(channel) {
  if (channel.muted && channel.tx_muted) return "muted, TX muted";
  if (channel.tx_muted) return "TX muted";
  return channel.muted ? "muted" : null;
}

// What the state says in words: the condition, and the mute beside it ("ok" is dropped when muted).
function stateWords(device, channel) {
  const cond = condition(device, channel), mute = muteText(channel);
  return [cond.text === "ok" && mute ? null : cond.text, mute].filter(Boolean).join(" · ");
}

function runtimeWords(minutes) {
  const h = Math.floor(minutes / 60), m = minutes % 60;
  return (h ? h + " h " : "") + m + " min";
}

// The battery in words, for the tile's accessible name and its screen-reader text: "battery 4 of 5 bars",
// "battery 60%, 3 h 37 min left"
function batteryWords(channel) {
  const parts = [];
  if (channel.battery_percent !== null) parts.push(channel.battery_percent + "%");
  else if (channel.battery_bars !== null) parts.push(channel.battery_bars + " of 5 bars");
  if (channel.battery_runtime_min !== null) parts.push(runtimeWords(channel.battery_runtime_min) + " left");
  return "battery " + (parts.join(", ") || "unknown");
}

// RF in the tile's accessible name as a state, never the level: the name of the focused tile is read out again
// whenever it changes, and a level that moves by a dB twice a second had a screen reader repeat the whole tile.
// The level is beside the meter on the tile and in the detail.
function rfWords(device, channel) {
  if (!reports(device, "rf_dbm") && channel.rf_quality_percent === null) return null;
  if (channel.rf_dbm === null && channel.rf_quality_percent === null) return "no RF level";
  const weak = (channel.rf_dbm !== null && channel.rf_dbm <= RF_ALERT_DBM)
    || (channel.rf_quality_percent !== null && channel.rf_quality_percent < 30);
  return weak ? "RF weak" : "RF ok";
}

function tileLabel(device, channel) {
  return [displayName(channel), (device.name || device.id) + " ch " + channel.index, batteryWords(channel),
    rfWords(device, channel), stateWords(device, channel), swapOf(channel.id) ? "swap the pack before the show ends" : null]
    .filter(Boolean).join(", ");
}

// What the device's family reports and accepts (device.capabilities); a device without them shows everything.
function reports(device, field) {
  return !device.capabilities || device.capabilities.channel_fields.includes(field);
}

function channelCommand(device, kind) {
  if (!device.capabilities) return { text: null };
  const limits = device.capabilities.commands[kind];
  return limits && limits.channel ? limits : null;
}

function percentOf(value, low, high) {
  if (value === null || value === undefined) return 0;
  return Math.max(0, Math.min(100, ((value - low) / (high - low)) * 100));
}

// ---- a tile is built once and then updated in place: values arrive twice a second, and a tile rebuilt
// between a press and its release loses the click (the ✎ under the pointer would be a new element)

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function meterBox(kind) {
  const box = el("div", "meter-box");
  const caption = el("div", "meter-label");
  caption.append(el("span"), el("span"));
  const bar = el("div", "meter " + kind);
  bar.append(el("span"));
  box.append(caption, bar);
  return box;
}

function setMeter(box, label, value, unit, low, high, peak) {
  const [name, reading] = box.firstChild.children;
  setText(name, label);
  setText(reading, value === null ? "–" : value.toFixed(0) + " " + unit);
  box.lastChild.classList.toggle("peak", Boolean(peak));
  // scaled, not resized: see .meter > span in board.css
  setLevel(box.lastChild.firstChild, "transform", "scaleX(" + percentOf(value, low, high) / 100 + ")");
}

// A style written only when it changes (the browser's own serialisation of it may differ from what was set).
function setLevel(node, property, value) {
  if (node.level === value) return;
  node.level = value;
  node.style[property] = value;
}

// Per-antenna levels as small vertical bars, one per input (Axient A-D, EM 6000 and G4 RF1/RF2): a dead
// antenna shows as one short bar among tall ones, which the best-of RF meter hides.
function antennaBars(names) {
  const box = el("div", "antennas");
  for (const name of names) {
    const column = el("span", "antenna");
    column.append(el("i"), el("b", null, name));
    box.append(column);
  }
  return box;
}

function setAntennas(box, levels) {
  Object.entries(levels).forEach(([name, level], at) => {
    const column = box.children[at];
    setAttr(column, "title", name + " " + level.toFixed(0) + " dBm");
    setLevel(column.firstChild, "height", percentOf(level, -100, -40) + "%");
  });
}

function setMeters(meters, device, channel) {
  // a family that never reports a level gets no bar for it, rather than one that always reads "–"
  const rf = reports(device, "rf_dbm"), audio = reports(device, "audio_dbfs");
  const antennas = channel.rf_antennas ? Object.keys(channel.rf_antennas) : [];
  const shape = JSON.stringify([rf, audio, antennas]);
  if (meters.dataset.shape !== shape) {
    meters.dataset.shape = shape;
    meters.replaceChildren(...[rf && meterBox("rf"), antennas.length && antennaBars(antennas), audio && meterBox("audio")].filter(Boolean));
  }
  let next = meters.firstChild;
  if (rf) {
    setMeter(next, "RF" + (channel.antenna ? " " + channel.antenna : ""), channel.rf_dbm, "dBm", -100, -40, false);
    next = next.nextSibling;
  }
  if (antennas.length) { setAntennas(next, channel.rf_antennas); next = next.nextSibling; }
  if (audio) setMeter(next, "Audio", channel.audio_dbfs, "dBFS", -60, 0, channel.audio_peak);
}

function setBattery(box, channel) {
  // receivers that report only a percentage still get the five-bar gauge engineers read at a glance
  const bars = channel.battery_bars !== null ? channel.battery_bars
    : channel.battery_percent !== null ? Math.ceil(channel.battery_percent / 20) : null;
  [...box.querySelectorAll("i")].forEach((cell, at) => cell.classList.toggle("on", bars !== null && at < bars));
  const parts = [];
  if (channel.battery_percent !== null) parts.push(channel.battery_percent + "%");
  if (channel.battery_runtime_min !== null) {
    const h = Math.floor(channel.battery_runtime_min / 60), m = channel.battery_runtime_min % 60;
    parts.push(h + "h" + String(m).padStart(2, "0"));
  }
  // the gauge and its short text are for the eye; a screen reader gets the same in words
  setText(box.querySelector(".runtime"), parts.join(" ") || (bars === null ? "–" : ""));
  setText(box.querySelector(".sr-only"), batteryWords(channel));
}

function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

// Lists refreshed by polling (alerts, candidates, group buttons) keep their elements: a row is built once per
// key and updated in place, and only rows that come or go are inserted or removed. A rebuilt row would take the
// keyboard focus with it (to <body>) every few seconds. When the row holding the focus goes, the focus moves to
// the row now in its place (else to `fallback`), never to <body>.
function reconcile(container, items, keyOf, build, update, fallback) {
  const old = new Map([...container.children].map((node) => [node.dataset.key, node]));
  const focused = document.activeElement;
  const holder = [...container.children].findIndex((node) => node.contains(focused));
  const nodes = items.map((item) => {
    const key = String(keyOf(item));
    let node = old.get(key);
    if (!node) { node = build(item); node.dataset.key = key; }
    update(node, item);
    return node;
  });
  const keep = new Set(nodes);
  for (const node of [...container.children]) if (!keep.has(node)) node.remove();
  nodes.forEach((node, at) => { if (container.children[at] !== node) container.insertBefore(node, container.children[at] || null); });
  if (holder >= 0 && !focused.isConnected) refocus(nodes.slice(holder).concat(nodes.slice(0, holder).reverse()), fallback);
  else if (holder >= 0 && document.activeElement !== focused) focused.focus();  // its row moved: moving drops the focus
}

// Focus the first control in the first of `nodes` that has one, else `fallback`.
function refocus(nodes, fallback) {
  for (const node of nodes) {
    const focusable = "button:not([hidden]), a[href], [tabindex]:not([tabindex='-1'])";
    const control = node.matches(focusable) ? node : node.querySelector(focusable);
    if (control) { control.focus(); return; }
  }
  if (fallback) fallback.focus();
}

function channelTile() {
  const tile = el("div", "tile");
  // the name is the tile's button to its detail (Enter or Space), named with the tile's state in words
  const parts = {
    num: el("span", "num"), name: el("button", "name"), who: el("div", "sub"), battery: el("span", "battery"),
    state: el("span", "state"), mute: el("span", "mute"), meters: el("div", "meters"), info: el("div", "sub"),
    edit: el("button", "edit", "✎"),
  };
  parts.name.type = "button";
  parts.name.setAttribute("aria-haspopup", "dialog");
  parts.num.setAttribute("aria-hidden", "true");
  for (let i = 0; i < 5; i++) parts.battery.append(el("i"));
  parts.battery.append(el("span", "runtime"), el("span", "sr-only"));
  for (const part of parts.battery.children) if (!part.classList.contains("sr-only")) part.setAttribute("aria-hidden", "true");
  parts.mute.hidden = true;
  const row = el("div", "row");
  row.append(parts.battery, parts.state, parts.mute, el("span", "swap-mark", "swap"));
  parts.edit.type = "button";
  parts.edit.title = "Rename";
  parts.edit.addEventListener("click", (event) => {
    event.stopPropagation();
    openEditor(tile.dataset.device, Number(tile.dataset.index));
  });
  tile.addEventListener("click", () => openDetail(tile.dataset.channel));
  // off screen (content-visibility in board.css) a tile's meters are not drawn: nobody sees them, and a screen
  // reader is never told them; they are drawn as the tile comes on screen
  tile.addEventListener("contentvisibilityautostatechange", (event) => {
    tile.offScreen = event.skipped;
    if (!event.skipped && tile.dataset.channel) fillChannelTile(tile.dataset.channel);
  });
  tile.append(parts.num, parts.name, parts.who, row, parts.meters, parts.info, parts.edit);
  tile.parts = parts;
  return tile;
}

function fillTile(tile, number, device, channel) {
  const cond = condition(device, channel);
  const mute = muteText(channel);
  const className = ["tile", cond.cls, mute ? "muted" : "", swapOf(channel.id) ? "swap" : ""].filter(Boolean).join(" ");
  if (tile.className !== className) tile.className = className;
  // written only when changed, as is everything here: a tile whose values are as they were is not touched
  for (const [name, value] of [["channel", channel.id], ["device", device.id], ["index", channel.index], ["number", number]]) {
    if (tile.dataset[name] !== String(value)) tile.dataset[name] = value;
  }
  const parts = tile.parts;
  setText(parts.num, String(number));
  setText(parts.name, displayName(channel));
  setAttr(tile, "title", displayName(channel));  // the whole name, where a long one is cut short (the button says it in its label)
  const sub = [device.name || device.id, "ch " + channel.index];
  const performer = performerOf(device.id, channel.index);
  if (performer) sub.unshift(performer);
  if (channel.extended_name && channel.name) sub.push(channel.name);
  setText(parts.who, sub.join(" · "));
  setBattery(parts.battery, channel);
  setText(parts.state, cond.text === "ok" && mute ? "" : cond.text);
  setAttr(parts.state, "title", cond.title || "");
  setText(parts.mute, mute || "");
  if (parts.mute.hidden !== !mute) parts.mute.hidden = !mute;
  setAttr(parts.name, "aria-label", tileLabel(device, channel));
  setAttr(parts.edit, "aria-label", "Rename " + displayName(channel) + " (" + (device.name || device.id) + " ch " + channel.index + ")");
  if (!tile.offScreen) setMeters(parts.meters, device, channel);
  const info = [];
  if (channel.frequency_mhz !== null) info.push(channel.frequency_mhz.toFixed(3) + " MHz");
  if (channel.tx_model) info.push(channel.tx_model);
  if (channel.rf_quality_percent !== null) info.push("Q " + channel.rf_quality_percent + "%");
  if (channel.gain_db !== null) info.push("gain " + channel.gain_db + " dB");
  setText(parts.info, info.join(" · "));
}

function performerOf(deviceId, index) {
  const assignment = (state.assignments || []).find((a) => a.device_id === deviceId && a.channel === index);
  const performer = assignment && (state.performers || []).find((p) => p.id === assignment.performer_id);
  return performer ? performer.name : null;
}

function emptyTile(number) {
  const tile = el("div", "tile empty");
  tile.append(el("span", "num", number), el("div", "name", "empty"));
  return tile;
}

// A receiver the hub watches but has not heard from since it started (down at the hub's start), of which the live
// store has no channel: the hub lists such a receiver offline with the channels it kept of it, so this is one it
// kept nothing of (the first start after an upgrade, a database it could not open at start). A slot bound to one
// of its channels is not empty, and without slots the receiver keeps a tile of its own (its channels are not
// known until it answers): a mic that is missing must not look like one that was never there.
function offlineTile(number, deviceId, index) {
  const tile = el("div", "tile offline");
  if (index === null) tile.dataset.device = deviceId;
  else tile.dataset.channel = deviceId + ":" + index;
  const who = index === null ? [deviceId] : [deviceId, "ch " + index];
  const performer = index !== null && performerOf(deviceId, index);
  if (performer) who.unshift(performer);
  const row = el("div", "row");
  row.append(el("span", "state", "receiver offline"));
  tile.append(el("span", "num", number), el("div", "name", index === null ? "Receiver" : "Ch " + index), el("div", "sub", who.join(" · ")), row);
  return tile;
}

// The receivers the hub's connection health names (by the id they had when they last answered) that are in no
// device list: down since the hub started, and their channels not kept (see offlineTile).
function missingReceivers() {
  // before the first snapshot every receiver would look missing; a list asked for before it may name a receiver
  // removed before it, which nothing else tells the board of (the list asked for as it arrived is in hand soon)
  if (!state.loaded || !(state.connectionsAskedAt >= state.loadedAt)) return [];
  const ids = (state.connections || []).filter((conn) => conn.device_id && !state.devices.has(conn.device_id)).map((conn) => conn.device_id);
  return [...new Set(ids)].sort((a, b) => a.localeCompare(b));
}

// ---- board layout: venue slots when the store has them, else every channel in order

function orderedChannels() {
  const result = [];
  const devices = [...state.devices.values()].sort((a, b) => a.id.localeCompare(b.id));
  for (const device of devices) for (const channel of device.channels) result.push([device, channel]);
  return result;
}

function renderBoard() {
  const board = $("board");
  const wanted = [];
  if (state.slots && state.slots.length) {
    // micboard style: a group shows its slots in its order; "all" shows 1..highest, gaps as empty tiles
    const bound = new Map(state.slots.map((slot) => [slot.number, slot]));
    const group = state.groups.find((g) => g.number === state.group);
    const numbers = group ? group.slots : Array.from({ length: Math.max(...bound.keys()) }, (_, i) => i + 1);
    for (const number of numbers) {
      const slot = bound.get(number);
      const device = slot && state.devices.get(slot.device_id);
      const channel = device && device.channels.find((c) => c.index === slot.channel);
      wanted.push([number, device, channel, slot]);
    }
  } else {
    // every channel in device-id order, a receiver down since the hub started in its place as one tile
    const receivers = [...state.devices.values()].map((device) => [device.id, device])
      .concat(missingReceivers().map((id) => [id, null])).sort(([a], [b]) => a.localeCompare(b));
    for (const [id, device] of receivers) {
      if (!device) wanted.push([wanted.length + 1, null, null, null, id]);
      else for (const channel of device.channels) wanted.push([wanted.length + 1, device, channel]);
    }
  }
  // A tile is kept for as long as its channel is on the board, whatever number it has, and only tiles that come,
  // go or change places are touched: a receiver added or removed must neither eat a click on another tile nor
  // drop the keyboard focus to <body>.
  tiles.clear();
  const seen = new Map();
  const keyOf = ([number, device, channel, slot, missing]) => {
    const key = device && channel ? "channel " + channel.id : missing ? "missing " + missing
      : slot && !device ? "offline " + number + " " + JSON.stringify(slot) : "empty " + number;
    // the same channel in two slots gets two tiles
    const repeats = seen.get(key) || 0;
    seen.set(key, repeats + 1);
    return repeats ? key + " #" + repeats : key;
  };
  reconcile(board, wanted, keyOf, ([number, device, channel, slot, missing]) => {
    if (device && channel) return channelTile();
    if (missing) return offlineTile(number, missing, null);
    return slot && !device ? offlineTile(number, slot.device_id, slot.channel) : emptyTile(number);
  }, (tile, [number, device, channel, , missing]) => {
    if (missing) setText(tile.querySelector(".num"), String(number));  // numbered by its place
    if (!device || !channel) return;
    fillTile(tile, number, device, channel);
    if (!tiles.has(channel.id)) tiles.set(channel.id, tile);
  }, null);
  renderDevices();
}

// Live messages (twice a second) mark what they changed; one animation frame draws each marked tile once, and
// only those. Drawing every tile on every message (1,000 of them at 10 Hz metering) kept the main thread busy
// nearly all the time: a click took seconds, and the socket's pings waited behind unread messages until the hub
// took the board for gone. Tiles off screen cost only these writes (content-visibility in board.css).
const marked = { tiles: new Set(), devices: false, frame: 0 };

function markTiles(ids) {
  for (const id of ids) marked.tiles.add(id);
  if (!marked.frame && (marked.tiles.size || marked.devices)) marked.frame = requestAnimationFrame(drawMarked);
}

function drawMarked() {
  marked.frame = 0;
  const ids = marked.tiles;
  marked.tiles = new Set();
  for (const id of ids) fillChannelTile(id);
  if (marked.devices) { marked.devices = false; renderDevices(); }
}

function fillChannelTile(id) {
  const tile = tiles.get(id);
  const device = tile && state.devices.get(id.slice(0, id.lastIndexOf(":")));
  const channel = device && device.channels.find((c) => c.id === id);
  if (channel) fillTile(tile, tile.dataset.number, device, channel);
}

// Now, not at the next frame: a condition that changes every tile (the link lost, the alerts read) is rare.
function refreshTiles() {
  for (const id of tiles.keys()) fillChannelTile(id);
}

function connectionText(conn) {
  if (!conn) return "–";
  return (conn.connected ? "connected" : "down") + ", " + conn.reconnects + " reconnects" + (conn.last_error ? ", " + conn.last_error : "");
}

function renderDevices() {
  const connections = state.connections || [];
  const byDevice = new Map(connections.filter((c) => c.device_id).map((c) => [c.device_id, c]));
  const rows = [...state.devices.values()].sort((a, b) => a.id.localeCompare(b.id)).map((device) => {
    const row = el("tr");
    row.dataset.device = device.id;
    row.append(
      el("td", null, (device.name ? device.name + " " : "") + "(" + device.id + ")"),
      el("td", null, [device.vendor, device.model].filter(Boolean).join(" ")),
      el("td", null, device.host + ":" + device.port),
      el("td", device.online ? "online" : "offline", device.online ? "online" : "offline"),
      el("td", null, connectionText(byDevice.get(device.id) || device.connection)),
    );
    return row;
  });
  // devices the hub watches that have not answered since it started are in no device list, only in its health
  for (const conn of connections.filter((c) => !c.device_id || !state.devices.has(c.device_id))) {
    const row = el("tr");
    row.dataset.url = conn.url;
    row.append(
      el("td", null, conn.device_id ? "(" + conn.device_id + ")" : "never answered"),
      el("td", null, conn.plugin),
      el("td", null, conn.url),
      el("td", "offline", "offline"),
      el("td", null, connectionText(conn)),
    );
    rows.push(row);
  }
  $("devices").replaceChildren(...rows);
}

// ---- staleness: values the board shows but can no longer vouch for (the hub silent or away)

function setStale(reason, on) {
  const before = state.stale.size;
  if (on) state.stale.add(reason);
  else state.stale.delete(reason);
  if (state.stale.size !== before) refreshTiles();
}

// The hub that answers 401 to reads (open_reads = false) shows nothing without the token: say so, and say that
// a token typed in was refused (the live feed opened with an earlier one may still be running).
// A write refused with the token in the field shows the same hint, and marks the field, until the token changes.
function needsToken(on) {
  const show = on || (state.writeRefused !== null && state.writeRefused === token());
  $("token-hint").hidden = !show;
  if (show) setText($("token-hint"), token() ? TOKEN_REFUSED : TOKEN_NEEDED);
  setAttr($("token"), "aria-invalid", String(show && Boolean(token())));
}

const TOKEN_NEEDED = "This hub shows its receivers only to holders of its API token: enter it in the Token field at the top.";
const TOKEN_REFUSED = "The hub refused the token in the Token field: check it and enter it again.";

function tokenRefused(refused) {
  state.refusedToken = refused;
  needsToken(refused !== null);
}

// ---- live feed

// The hub sends something at least every 2 s (values, else a keepalive). Longer silence means the hub or the
// path to it is gone even though no close arrived (a hung hub, a dropped Wi-Fi path): TCP tells only minutes later.
const SILENCE_MS = 5000;
const live = { socket: null, heardAt: 0, delay: 1000, retry: null, resyncedAt: -Infinity };
// A change for a channel of a receiver the board does not hold means it missed that receiver (a message lost, a
// hub that left it out): it reads the feed afresh, from a new snapshot. At most once in RESYNC_MS, so that a hub
// that keeps sending such channels cannot have the board reconnect on every message.
const RESYNC_MS = 30000;
// Reconnecting backs off to 2 s, no more: a restarted hub is back on the board within seconds, not ten.
const RETRY_MAX_MS = 2000;

// Receivers the board saw go, with when (performance.now()): the live feed said so, or a fresh snapshot no longer
// lists them. A connection list asked for before that may still name them; one that does would show each as a
// receiver in no device list (missingReceivers): a red "receiver offline" tile standing in for a receiver the hub
// no longer has, and an offline row in the Devices panel, until the next poll.
function receiversGone(ids) {
  const now = performance.now();
  for (const id of ids) {
    if (state.devices.has(id)) continue;  // removed and added back
    state.gone.set(id, now);
    if (state.connections) state.connections = state.connections.filter((conn) => conn.device_id !== id);
  }
}

function applySnapshot(message) {
  const first = !state.loaded;
  const before = first ? [] : [...state.devices.keys()];
  state.devices = new Map(message.devices.map((d) => [d.id, d]));
  receiversGone(before);  // those removed while the feed was down
  state.loaded = true;
  if (first) {
    state.loadedAt = performance.now();
    refreshHealth();
  }
  needsToken(false);
  setStale("link", false);
  // the hub is back: its venue is read now, not at the next 10 s poll, or the tiles would stay stale meanwhile
  if (state.stale.has("venue")) refreshVenue();
  renderBoard();
  if (detail.channelId) {
    renderFacts();
    // a detail opened from its address before the first snapshot drew no charts (its channel was not known)
    if (!$("detail-charts").childElementCount) renderCharts();
  }
}

function applyChanges(message) {
  let layoutChanged = false;
  // removals first: a receiver removed and added back within one message is in both, and whole in devices
  for (const id of message.removed_devices) layoutChanged = state.devices.delete(id) || layoutChanged;
  for (const update of message.devices) {
    const known = state.devices.get(update.id);
    if (known) Object.assign(known, update);
    else { state.devices.set(update.id, Object.assign({ channels: [] }, update)); layoutChanged = true; }
  }
  receiversGone(message.removed_devices);
  for (const id of message.removed_channels) {
    const device = state.devices.get(id.slice(0, id.lastIndexOf(":")));
    if (device) device.channels = device.channels.filter((c) => c.id !== id);
    layoutChanged = true;
  }
  for (const channel of message.channels) {
    const device = state.devices.get(channel.device_id);
    if (!device) { resyncLive(); continue; }
    const at = device.channels.findIndex((c) => c.index === channel.index);
    if (at >= 0) device.channels[at] = channel;
    else { device.channels.push(channel); device.channels.sort((a, b) => a.index - b.index); layoutChanged = true; }
  }
  if (layoutChanged) { renderBoard(); return; }
  // a device's own fields (online, capabilities) show on each of its tiles, and in the Devices panel
  if (message.devices.length) marked.devices = true;
  for (const update of message.devices) markTiles(state.devices.get(update.id).channels.map((c) => c.id));
  markTiles(message.channels.map((c) => c.id));
  if (detail.channelId && message.channels.some((c) => c.id === detail.channelId)) renderFacts();
}

function showLink(text, up) {
  $("link").textContent = text;
  $("link").className = up ? "link up" : "link";
}

function connectLive() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = token() ? "?token=" + encodeURIComponent(token()) : "";
  const socket = new WebSocket(scheme + "//" + location.host + API + "/live" + query);
  live.socket = socket;
  live.heardAt = Date.now();
  socket.onopen = () => { live.heardAt = Date.now(); live.delay = 1000; showLink("live", true); };
  socket.onmessage = (event) => {
    live.heardAt = Date.now();
    const message = JSON.parse(event.data);
    if (message.type === "snapshot") applySnapshot(message);
    else if (message.type === "changes") applyChanges(message);
  };
  socket.onclose = () => linkLost(socket, "reconnecting…");
}

function resyncLive() {
  const socket = live.socket;
  if (!socket || performance.now() - live.resyncedAt < RESYNC_MS) return;
  live.resyncedAt = performance.now();
  live.socket = null;
  socket.onopen = socket.onmessage = socket.onclose = null;  // the rest of what it sends is in the snapshot
  socket.close();
  connectLive();
}

function linkLost(socket, text) {
  if (live.socket !== socket) return;
  live.socket = null;
  // a silent hub may never answer the close either: this socket is abandoned, not waited for
  socket.onopen = socket.onmessage = socket.onclose = null;
  socket.close();
  showLink(text, false);
  setStale("link", true);
  if (state.refusedToken === token()) return;  // refused: the token field's change connects again
  // a random part: the browsers of a venue do not all knock at the same moment when their hub is back
  live.retry = setTimeout(connectLive, live.delay * (0.75 + Math.random() / 2));
  live.delay = Math.min(live.delay * 2, RETRY_MAX_MS);
}

function watchLink() {
  if (live.socket && Date.now() - live.heardAt > SILENCE_MS) linkLost(live.socket, "hub silent, reconnecting…");
}

// ---- panels refreshed by polling (connection health, candidates, venue)

async function refreshHealth() {
  try {
    const asked = performance.now();
    const health = await api("GET", "/api/health");
    if (asked < state.connectionsAskedAt) return;  // a later poll's answer came first
    const missing = JSON.stringify(missingReceivers());
    state.connectionsAskedAt = asked;
    // a receiver that went before this was asked for is not in it; one that went since may still be
    for (const [id, at] of state.gone) if (at < asked) state.gone.delete(id);
    state.connections = health.connections.filter((conn) => !state.gone.has(conn.device_id));
    if (JSON.stringify(missingReceivers()) !== missing) renderBoard();  // which calls renderDevices
    else renderDevices();
  } catch (error) { /* the live link shows when the hub is away */ }
}

async function refreshCandidates() {
  let list;
  try { list = await api("GET", API + "/candidates"); } catch (error) { return; }
  $("candidate-count").textContent = list.items.length ? "(" + list.items.length + ")" : "";
  const summary = $("candidates").closest("details").querySelector("summary");
  reconcile($("candidates"), list.items, (candidate) => candidate.url, (candidate) => {
    const item = el("li");
    item.append(el("span"), el("code", null, candidate.url));
    const approve = el("button", null, "Approve");
    approve.type = "button";
    approve.addEventListener("click", async () => {
      try { await api("POST", API + "/candidates/approve", { url: candidate.url }); toast("added " + candidate.url); refreshCandidates(); }
      catch (error) { toast(error.message); }
    });
    item.append(approve);
    return item;
  }, (item, candidate) => {
    const what = [candidate.vendor, candidate.model, candidate.name].filter(Boolean).join(" ");
    setText(item.firstChild, what);
    setAttr(item.lastChild, "aria-label", "Approve " + (what ? what + " at " : "") + candidate.url);
  }, summary);
}

// ---- alerts from the store's engine (debounced, with hysteresis): listed, acknowledged, shown on tiles

// A panel whose poll failed keeps what it last showed (an engineer whose phone lost the Wi-Fi must not read
// "no alerts"), marked stale with the time of its last good read, like the tiles; one never read stays hidden.
function markPanel(panel, stale) {
  const details = $(panel);
  const note = details.querySelector("summary .stale-note");
  if (!stale) {
    details.dataset.readAt = String(Date.now());
    details.classList.remove("stale");
    note.textContent = "";
    return;
  }
  if (!details.dataset.readAt) return;
  details.classList.add("stale");
  note.textContent = "stale: last read " + new Date(Number(details.dataset.readAt)).toLocaleTimeString();
}

// A new alert is said to a screen reader once (critical ones interrupt): the list itself is not a live region,
// or every 3 s poll would read it all again. The alerts there when the board opens are the list, not news.
function announceAlerts(items) {
  const fresh = items.filter((alert) => alert.acknowledged_at === null && !state.alertsSeen.has(alert.id));
  const first = !state.alertsRead;
  state.alertsRead = true;
  for (const alert of items) state.alertsSeen.add(alert.id);
  if (first || !fresh.length) return;
  const words = (alert) => "Alert, " + alert.severity + ": " + alert.message;
  const critical = fresh.filter((alert) => alert.severity === "critical").map(words);
  const other = fresh.filter((alert) => alert.severity !== "critical").map(words);
  if (critical.length) $("alert-urgent").textContent = critical.join(". ");
  if (other.length) $("alert-news").textContent = other.join(". ");
}

const ALERTS_MAX = 10000;

async function refreshAlerts() {
  let list;
  // every open alert (the API's most): the default 100 left out the newest of a long list, a receiver that had
  // just gone offline among them. A hub with more still sends the newest, and says how many there are in all.
  try { list = await api("GET", API + "/alerts?limit=" + ALERTS_MAX); } catch (error) { markPanel("alerts-panel", true); return; }
  markPanel("alerts-panel", false);
  announceAlerts(list.items);
  state.alerts = list.items;
  // by receiver: each tile looks its alert up, and there may be thousands of tiles and of alerts
  state.alertsOf = new Map();
  for (const alert of list.items) {
    if (!state.alertsOf.has(alert.device_id)) state.alertsOf.set(alert.device_id, []);
    state.alertsOf.get(alert.device_id).push(alert);
  }
  $("alerts-panel").hidden = false;
  const waiting = list.items.filter((a) => a.acknowledged_at === null).length;
  const total = typeof list.total === "number" ? list.total : list.items.length;
  const shown = total > list.items.length ? list.items.length + " newest of " + total : String(total);
  $("alert-count").textContent = total ? "(" + shown + (waiting ? ", " + waiting + " new" : "") + ")" : "";
  const summary = $("alerts-panel").querySelector("summary");
  reconcile($("alerts"), list.items, (alert) => alert.id, (alert) => {
    const item = el("li");
    item.dataset.alert = alert.id;
    item.append(el("span", "severity"), el("span"), el("span", "sub"), el("span", "sub seen"));
    const ack = el("button", "ack", "Acknowledge");
    ack.type = "button";
    ack.addEventListener("click", async () => {
      try { await api("POST", API + "/alerts/" + alert.id + "/acknowledge", {}); refreshAlerts(); }
      catch (error) { toast(error.message); }
    });
    item.append(ack);
    return item;
  }, (item, alert) => {
    const waiting = alert.acknowledged_at === null;
    const className = "alert-item " + alert.severity + (waiting ? " new" : "");
    if (item.className !== className) item.className = className;
    const [severity, message, time, seen, ack] = item.children;
    setText(severity, alert.severity);
    setText(message, alert.message);
    setText(time, new Date(alert.raised_at * 1000).toLocaleTimeString());
    setText(seen, waiting ? "" : "seen" + (alert.acknowledged_by ? " by " + alert.acknowledged_by : ""));
    seen.hidden = waiting;
    setAttr(ack, "aria-label", "Acknowledge " + alert.severity + ": " + alert.message);
    if (!waiting && ack.isConnected && ack === document.activeElement) {
      // acknowledged: the button goes; the focus moves on to the next alert still waiting, else the panel
      const next = [...$("alerts").querySelectorAll("li.new .ack")].find((other) => other !== ack);
      (next || summary).focus();
    }
    ack.hidden = !waiting;
  }, summary);
  refreshTiles();
}

function alertOf(deviceId, index) {
  // a pack that will not last has its own mark on the tile and its line in the swap panel
  const alerts = state.alertsOf.get(deviceId) || [];
  return alerts.find((a) => a.kind !== "show_battery" && (a.channel === index || a.channel === null));
}

// ---- battery swaps: the packs that will be empty before the show ends (plus its margin)

function swapOf(channelId) {
  return state.swap ? state.swap.items.find((item) => item.channel_id === channelId) : null;
}

function countdown(seconds) {
  const sign = seconds < 0 ? "-" : "";
  const left = Math.abs(Math.round(seconds));
  const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
  return sign + (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(s).padStart(2, "0");
}

function localInputValue(unix) {
  const at = new Date(unix * 1000);
  return new Date(at.getTime() - at.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function swapItem(item, repeated) {
  const node = el("li", "swap-item");
  node.dataset.channel = item.channel_id;
  const name = item.name || item.channel_id;
  // two packs called "Vox" are told apart by their receiver and channel
  const deviceId = item.channel_id.slice(0, item.channel_id.lastIndexOf(":"));
  const device = state.devices.get(deviceId);
  const where = repeated.has(name) ? "(" + (device && device.name ? device.name : deviceId) + " ch " + item.channel_id.slice(item.channel_id.lastIndexOf(":") + 1) + ")" : null;
  const label = [item.slot ? "#" + item.slot : null, item.performer, name, where].filter(Boolean).join(" ");
  const when = new Date(item.empty_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const counter = el("span", "countdown");
  counter.dataset.empty = item.empty_at;
  node.append(counter, el("span", null, label), el("span", "sub", "empty about " + when + (item.battery_type ? " · " + item.battery_type : "") + " · " + item.certainty));
  return node;
}

function tickCountdowns() {
  const now = Date.now() / 1000;
  for (const counter of document.querySelectorAll(".countdown[data-empty]")) {
    const left = Number(counter.dataset.empty) - now;
    counter.textContent = countdown(left);
    counter.parentElement.classList.toggle("due", left < 15 * 60);
  }
}

async function refreshSwaps() {
  let swap, show;
  try { [swap, show] = await Promise.all([api("GET", API + "/swap-list"), api("GET", API + "/show")]); }
  catch (error) { markPanel("swap-panel", true); return; }
  markPanel("swap-panel", false);
  state.swap = swap;
  $("swap-panel").hidden = false;
  if (document.activeElement !== $("show-end") && document.activeElement !== $("show-margin")) {
    $("show-end").value = show.end_at ? localInputValue(show.end_at) : "";
    $("show-margin").value = show.margin_min;
  }
  $("swap-count").textContent = swap.deadline === null ? "(no show end set)" : "(" + swap.items.length + ")";
  const names = swap.items.map((item) => item.name || item.channel_id);
  const repeated = new Set(names.filter((name, at) => names.indexOf(name) !== at));
  $("swaps").replaceChildren(...swap.items.map((item) => swapItem(item, repeated)));
  $("swap-strip").replaceChildren(...swap.items.map((item) => swapItem(item, repeated)));
  $("swap-strip").hidden = swap.items.length === 0;
  const unknown = swap.no_estimate.map((ref) => ref.name || ref.channel_id);
  $("swap-unknown").textContent = unknown.length ? "No runtime known yet: " + unknown.join(", ") : "";
  tickCountdowns();
  refreshTiles();
}

async function saveShow(endAt) {
  try {
    await api("PUT", API + "/show", { end_at: endAt, margin_min: Number($("show-margin").value) || 0 });
    toast(endAt ? "show end saved" : "show end cleared");
    refreshSwaps();
  } catch (error) { toast("show: " + error.message); }
}

// ---- channel detail: battery, RF and audio over time from the history API, with dropouts and alerts

const SVG = "http://www.w3.org/2000/svg";
const detail = { channelId: null, range: 600, timer: null };
// a chart is drawn one unit to a CSS pixel at the dialog's width (900 until it has one): its text stays 12 px tall
// on a phone instead of shrinking with the chart
const CHART_W = 900, CHART_H = 110, AXIS_H = 22, PAD_L = 44, TIME_LABEL_W = 60;
const SERIES = [
  { key: "battery", title: "Battery %", low: 0, high: 100, unit: "%" },
  { key: "rf_dbm", cls: "rf", title: "RF dBm", low: -100, high: -40, unit: "dBm" },
  { key: "audio_dbfs", cls: "audio", title: "Audio dBFS", low: -60, high: 0, unit: "dBFS" },
];
const RF_ALERT_DBM = -90;

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function channelById(channelId) {
  const device = state.devices.get(channelId.slice(0, channelId.lastIndexOf(":")));
  return [device, device && device.channels.find((c) => c.id === channelId)];
}

function fact(term, value) {
  const row = el("div");
  row.append(el("dt", null, term), el("dd", null, value === null || value === undefined || value === "" ? "–" : value));
  return row;
}

function renderFacts() {
  const [device, channel] = channelById(detail.channelId);
  if (!channel) {
    // an address of a channel the hub does not have (mistyped, or its receiver removed): say so once the hub's
    // channels are known, rather than leave an empty dialog
    if (state.loaded) {
      $("detail-title").textContent = "Unknown channel";
      setTitle();
      $("detail-facts").replaceChildren(fact("Channel", "no channel " + detail.channelId + " on this hub"));
      $("detail-charts").replaceChildren();
    }
    return;
  }
  $("detail-title").textContent = displayName(channel) + " · " + (device.name || device.id) + " ch " + channel.index;
  setTitle();
  const swap = swapOf(channel.id);
  const battery = [channel.battery_percent !== null ? channel.battery_percent + "%" : null,
    channel.battery_bars !== null ? channel.battery_bars + "/5 bars" : null].filter(Boolean).join(", ");
  let runtime = channel.battery_runtime_min !== null ? channel.battery_runtime_min + " min (transmitter)" : null;
  const estimate = detail.estimate;
  if (runtime === null && estimate) {
    const low = Math.round((estimate.earliest_empty_at - Date.now() / 1000) / 60);
    const high = Math.round((estimate.latest_empty_at - Date.now() / 1000) / 60);
    runtime = estimate.minutes_left + " min estimated (" + low + "–" + high + ")";
  }
  $("detail-facts").replaceChildren(
    fact("State", stateWords(device, channel)),
    fact("Battery", battery),
    fact("Runtime", runtime),
    fact("Swap", swap ? "before " + new Date(swap.empty_at * 1000).toLocaleTimeString() : (state.swap && state.swap.deadline ? "lasts the show" : null)),
    fact("Battery health", [channel.battery_health_percent !== null ? channel.battery_health_percent + "% health" : null,
      channel.battery_cycles !== null ? channel.battery_cycles + " cycles" : null,
      channel.battery_temp_c !== null ? channel.battery_temp_c.toFixed(0) + " °C" : null].filter(Boolean).join(" · ")),
    fact("Charging", [channel.battery_charge_state,
      channel.battery_time_to_full_min !== null ? channel.battery_time_to_full_min + " min to full" : null].filter(Boolean).join(" · ")),
    fact("Frequency", [channel.frequency_mhz, channel.frequency2_mhz].filter((mhz) => mhz !== null).map((mhz) => mhz.toFixed(3) + " MHz").join(" + ")
      + (channel.group_channel ? " (group/channel " + channel.group_channel + ")" : "")),
    fact("Transmitter", [channel.tx_model, channel.battery_type, channel.tx_power,
      channel.tx_offset_db !== null ? "offset " + channel.tx_offset_db + " dB" : null,
      channel.tx_locked && channel.tx_locked !== "none" ? "locked: " + channel.tx_locked : null,
      channel.tx_talk_switch ? "talk switch pressed" : null, channel.tx_id].filter(Boolean).join(" · ")),
    fact("Encryption", channel.encryption || device.encryption_mode),
    fact("Slots", channel.tx_slots && channel.tx_slots.length ? channel.tx_slots.map((slot) => "slot " + slot.slot + ": "
      + ([slot.tx_model, slot.status, slot.battery_percent !== null ? slot.battery_percent + "%" : null,
        slot.rf_power_mode ? "power " + slot.rf_power_mode : null, slot.rf_output === false ? "RF off" : null]
        .filter(Boolean).join(", ") || "empty")).join(" · ") : null),
    fact("RF now", channel.rf_dbm !== null ? channel.rf_dbm.toFixed(0) + " dBm" + (channel.antenna ? " (" + channel.antenna + ")" : "") : null),
    fact("RF per antenna", channel.rf_antennas ? Object.entries(channel.rf_antennas).map(([name, level]) => name + " " + level.toFixed(0)).join(" · ") + " dBm" : null),
    fact("Audio now", channel.audio_dbfs !== null ? channel.audio_dbfs.toFixed(0) + " dBFS"
      + (channel.audio_peak_dbfs !== null ? " (peak " + channel.audio_peak_dbfs.toFixed(0) + ")" : "") : null),
    fact("Gain", channel.gain_db !== null ? channel.gain_db + " dB" : null),
    fact("Receiver", [device.model, device.rf_band, device.ip_address, device.mac_address, device.dante_name,
      device.front_panel_locked ? "panel locked" : null].filter(Boolean).join(" · ")),
  );
}

function chart(spec, points, since, until, alerts, width) {
  const cls = spec.cls || spec.key;
  const box = svg("svg", { class: "chart", viewBox: "0 0 " + width + " " + CHART_H, role: "img", "aria-label": spec.title, "data-series": spec.key });
  const x = (t) => PAD_L + ((t - since) / (until - since)) * (width - PAD_L);
  const y = (v) => CHART_H - 4 - ((Math.max(spec.low, Math.min(spec.high, v)) - spec.low) / (spec.high - spec.low)) * (CHART_H - 8);
  box.append(svg("rect", { class: "frame", x: PAD_L, y: 0, width: width - PAD_L, height: CHART_H }));
  for (const v of [spec.low, (spec.low + spec.high) / 2, spec.high]) {
    box.append(svg("line", { class: "grid", x1: PAD_L, x2: width, y1: y(v), y2: y(v) }));
    box.append(svg("text", { class: "title", x: 2, y: y(v) + 4 }, v));
  }
  for (const point of points) {
    const off = point.battery_avg === null;  // no battery reading: the transmitter was off
    const weak = point.rf_dbm_min !== null && point.rf_dbm_min <= RF_ALERT_DBM;
    if (off || weak) box.append(svg("rect", { class: "dropout", "data-t": point.t, x: x(point.t), y: 0, width: Math.max(1, x(point.t + point.step) - x(point.t)), height: CHART_H }));
  }
  const band = [], line = [];
  let segment = [];
  let expected = null;
  for (const point of points) {
    const avg = point[spec.key + "_avg"];
    // a missing value or a missing bucket (the hub was not sampling) breaks the line
    if (avg === null || (expected !== null && point.t > expected)) { if (segment.length) line.push(segment); segment = []; }
    expected = point.t + point.step;
    if (avg === null) continue;
    const mid = x(point.t + point.step / 2);
    segment.push(mid.toFixed(1) + "," + y(avg).toFixed(1));
    band.push([mid, y(point[spec.key + "_max"]), y(point[spec.key + "_min"])]);
  }
  if (segment.length) line.push(segment);
  if (band.length > 1) {
    const top = band.map(([px, hi]) => px.toFixed(1) + "," + hi.toFixed(1));
    const bottom = band.slice().reverse().map(([px, , lo]) => px.toFixed(1) + "," + lo.toFixed(1));
    box.append(svg("polygon", { class: "band " + cls, points: top.concat(bottom).join(" ") }));
  }
  for (const part of line) box.append(svg("polyline", { class: "series " + cls, points: part.join(" "), "data-series": spec.key }));
  for (const alert of alerts) {
    if (alert.raised_at < since) continue;
    const mark = svg("line", { class: "alert-mark", x1: x(alert.raised_at), x2: x(alert.raised_at), y1: 0, y2: CHART_H });
    mark.append(svg("title", {}, alert.message));
    box.append(mark);
  }
  box.append(svg("text", { class: "title", x: PAD_L + 4, y: 12 }, spec.title));
  return box;
}

function timeAxis(since, until, width) {
  const axis = svg("svg", { class: "chart time-axis", viewBox: "0 0 " + width + " " + AXIS_H, role: "img", "aria-label": "time" });
  const span = until - since;
  const labels = Math.max(2, Math.min(8, Math.floor((width - PAD_L) / TIME_LABEL_W)));
  const step = [60, 300, 600, 1800, 3600, 7200, 14400, 21600].find((s) => span / s <= labels) || 43200;
  for (let t = Math.ceil(since / step) * step; t <= until; t += step) {
    const px = PAD_L + ((t - since) / span) * (width - PAD_L);
    axis.append(svg("line", { x1: px, x2: px, y1: 0, y2: 5 }));
    axis.append(svg("text", { x: px - 16, y: 17 }, new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  }
  return axis;
}

async function rangeStart(now) {
  if (detail.range !== "show") return now - detail.range;
  if (detail.startedAt === undefined) {
    try { detail.startedAt = (await api("GET", API + "/hub")).started_at; } catch (error) { detail.startedAt = now - 3600; }
  }
  return Math.max(detail.startedAt, now - 86400);  // the whole show: since the hub started, a day at most
}

async function renderCharts() {
  const channelId = detail.channelId;
  if (!channelId) return;
  // a channel the hub does not have (a mistyped address, a removed receiver) has no history to ask for every
  // 10 s: it is asked for once the live feed brings the channel
  if (state.loaded && !channelById(channelId)[1]) { renderFacts(); return; }
  const until = Date.now() / 1000;
  const since = await rangeStart(until);
  const id = encodeURIComponent(channelId);
  let points = [], alerts = [];
  try {
    const [history, recent, estimate] = await Promise.all([
      api("GET", API + "/channels/" + id + "/history?since=" + Math.floor(since)).catch(() => ({ items: [] })),
      api("GET", API + "/alerts?recent=true&limit=500&since=" + Math.floor(since)).catch(() => ({ items: [] })),
      api("GET", API + "/swap-list?until=" + encodeURIComponent(new Date((until + 2 * 86400) * 1000).toISOString())).catch(() => null),
    ]);
    points = history.items;
    const [deviceId, index] = [channelId.slice(0, channelId.lastIndexOf(":")), Number(channelId.slice(channelId.lastIndexOf(":") + 1))];
    alerts = recent.items.filter((a) => a.device_id === deviceId && (a.channel === index || a.channel === null));
    detail.estimate = estimate ? estimate.items.find((item) => item.channel_id === channelId && item.source === "estimate") : null;
  } catch (error) { toast(error.message); }
  if (detail.channelId !== channelId) return;
  renderFacts();
  if (!channelById(channelId)[1]) return;
  const width = Math.round($("detail-charts").getBoundingClientRect().width) || CHART_W;
  $("detail-charts").replaceChildren(...SERIES.map((spec) => chart(spec, points, since, until, alerts, width)), timeAxis(since, until, width));
}

function openDetail(channelId) {
  detail.channelId = channelId;
  const url = new URL(location.href);
  url.searchParams.set("channel", channelId);
  history.replaceState(null, "", url);
  if (!$("detail").open) $("detail").showModal();
  renderFacts();
  renderCharts();
  clearInterval(detail.timer);
  detail.timer = setInterval(renderCharts, 10000);
}

function closeDetail() {
  const channelId = detail.channelId;
  detail.channelId = null;
  clearInterval(detail.timer);
  const url = new URL(location.href);
  url.searchParams.delete("channel");
  history.replaceState(null, "", url);
  setTitle();
  // back to the tile the detail was opened from (the same channel's tile, even if the board was redrawn meanwhile)
  const tile = channelId && tiles.get(channelId);
  if (tile && tile.isConnected && tile.parts) tile.parts.name.focus();
}

// The tab's title says which view it is: a channel's detail, the TV board or the board.
function setTitle() {
  const [, channel] = detail.channelId ? channelById(detail.channelId) : [];
  const title = detail.channelId ? (channel ? displayName(channel) : "Unknown channel") + " — wmhub"
    : document.body.classList.contains("tv") ? "wmhub board (TV)" : "wmhub board";
  if (document.title !== title) document.title = title;
}

function selectRange(button) {
  detail.range = button.dataset.range === "show" ? "show" : Number(button.dataset.range);
  for (const other of $("detail-ranges").querySelectorAll("button")) other.setAttribute("aria-pressed", String(other === button));
  renderCharts();
}

// ---- venue: slots and groups from the store (absent until the hub has one)

async function refreshVenue() {
  let venue;
  try {
    const [slots, groups, performers, assignments] = await Promise.all(
      ["/slots", "/groups", "/performers", "/assignments"].map((path) => api("GET", API + path)),
    );
    venue = { slots: slots.items, groups: groups.items, performers: performers.items, assignments: assignments.items };
    setStale("venue", false);
  } catch (error) {
    if (error.status !== 404) {
      // the hub away or slow (or the token refused): slot numbers must keep pointing at the same mics, their
      // values marked stale
      setStale("venue", true);
      return;
    }
    venue = { slots: null, groups: [], performers: [], assignments: [] };  // a hub without a venue store
  }
  // unchanged, nothing is redrawn: neither the tiles under the pointer nor the forms being filled in
  const seen = JSON.stringify(venue);
  if (seen === state.venueSeen) return;
  state.venueSeen = seen;
  state.slots = venue.slots;
  state.groups = venue.groups.filter((g) => g.number >= 1 && g.number <= 9);
  state.allGroups = venue.groups;
  state.performers = venue.performers;
  state.assignments = venue.assignments;
  renderGroups();
  renderBoard();
  renderVenue();
}

// Small forms for the venue: each posts to the API and refreshes; the token is needed for all of them.

function field(label, input) {
  const wrap = el("label", null, label + " ");
  wrap.append(input);
  return wrap;
}

function input(type, placeholder) {
  const node = el("input");
  node.type = type;
  node.placeholder = placeholder;
  return node;
}

function choice(options) {
  const select = el("select");
  for (const [value, text] of options) {
    const option = el("option", null, text);
    option.value = value;
    select.append(option);
  }
  return select;
}

function channelChoice() {
  return choice(orderedChannels().map(([device, channel]) => [channel.id, displayName(channel) + " · " + (device.name || device.id) + " ch " + channel.index]));
}

function venueForm(title, controls, actions) {
  const form = el("form", "venue-form");
  form.append(el("strong", null, title), ...controls);
  for (const [label, action] of actions) {
    const button = el("button", null, label);
    button.type = "button";
    button.addEventListener("click", async () => {
      try { await action(); toast(title + ": saved"); refreshVenue(); } catch (error) { toast(title + ": " + error.message); }
    });
    form.append(button);
  }
  return form;
}

function renderVenue() {
  const panel = $("venue-panel");
  panel.hidden = !state.slots;
  if (!state.slots) return;
  const slotNumber = input("number", "slot");
  const slotChannel = channelChoice();
  const groupNumber = input("number", "1-9");
  const groupTitle = input("text", "title");
  const groupSlots = input("text", "slots, e.g. 1,2,5");
  const performerName = input("text", "name");
  const performer = choice((state.performers || []).map((p) => [String(p.id), p.name]));
  const assignChannel = channelChoice();
  const numbers = (text) => text.split(",").map((part) => Number(part.trim())).filter((n) => n > 0);
  const channelParts = (id) => ({ device_id: id.slice(0, id.lastIndexOf(":")), channel: Number(id.slice(id.lastIndexOf(":") + 1)) });
  const forms = [
    venueForm("Slot", [field("number", slotNumber), field("shows", slotChannel)], [
      ["Set", () => api("PUT", API + "/slots/" + Number(slotNumber.value), channelParts(slotChannel.value))],
      ["Clear", () => api("DELETE", API + "/slots/" + Number(slotNumber.value))],
    ]),
    venueForm("Group", [field("number", groupNumber), field("title", groupTitle), field("slots", groupSlots)], [
      ["Save", () => api("PUT", API + "/groups/" + Number(groupNumber.value), { title: groupTitle.value, slots: numbers(groupSlots.value) })],
      ["Delete", () => api("DELETE", API + "/groups/" + Number(groupNumber.value))],
    ]),
    venueForm("Performer", [field("name", performerName)], [
      ["Add", () => api("POST", API + "/performers", { name: performerName.value })],
    ]),
    venueForm("Assign", [field("performer", performer), field("to", assignChannel)], [
      ["Assign", () => api("PUT", API + "/channels/" + encodeURIComponent(assignChannel.value) + "/assignment", { performer_id: Number(performer.value) })],
      ["Unassign", () => api("DELETE", API + "/channels/" + encodeURIComponent(assignChannel.value) + "/assignment")],
    ]),
  ];
  const names = new Map((state.performers || []).map((p) => [p.id, p.name]));
  const summary = el("ul", "list");
  for (const group of state.allGroups || []) summary.append(el("li", null, "Group " + group.number + " " + group.title + ": slots " + group.slots.join(", ")));
  for (const a of state.assignments || []) summary.append(el("li", null, (names.get(a.performer_id) || "?") + " → " + a.device_id + " ch " + a.channel));
  // the forms are redrawn after a save: the control that had the focus (found by its form and label) keeps it
  const focused = document.activeElement;
  const key = $("venue").contains(focused) ? focusKey(focused) : null;
  $("venue").replaceChildren(...forms, summary);
  if (key) {
    const same = [...$("venue").querySelectorAll("input, select, button")].find((node) => focusKey(node) === key);
    if (same) same.focus();
  }
}

function focusKey(node) {
  const form = node.closest("form");
  const label = node.closest("label");
  return (form ? form.firstChild.textContent : "") + "/" + node.tagName + "/" + (label ? label.firstChild.textContent : node.textContent);
}

// ---- groups (keyboard 0-9; 0 shows everything)

function renderGroups() {
  // updated in place: the button just pressed keeps the keyboard focus
  const groups = state.groups.length ? [{ number: 0, title: "All" }, ...state.groups] : [];
  reconcile($("groups"), groups, (group) => group.number, (group) => {
    const button = el("button");
    button.type = "button";
    button.addEventListener("click", () => selectGroup(group.number));
    return button;
  }, (button, group) => {
    setText(button, group.number ? group.number + " " + group.title : "All");
    setAttr(button, "aria-pressed", String(state.group === group.number));
  }, null);
}

function selectGroup(number) {
  if (number !== 0 && !state.groups.some((g) => g.number === number)) return;
  state.group = number;
  renderGroups();
  renderBoard();
}

// ---- editing names

let editing = null;

function openEditor(deviceId, index) {
  const device = state.devices.get(deviceId);
  const channel = device && device.channels.find((c) => c.index === index);
  if (!channel) return;
  editing = { deviceId, index, channelId: channel.id, saving: false };
  showSaving(false);
  $("editor-title").textContent = (device.name || device.id) + " · channel " + index;
  $("editor-name").value = channel.name || "";
  // the receiver's own name only where the family can rename a channel, within its limits
  const rename = channelCommand(device, "name");
  $("editor-name-row").hidden = !rename;
  $("editor-name").disabled = !rename;
  const text = rename && rename.text;
  $("editor-name").maxLength = text ? text.max_length : 31;
  if (text) $("editor-name").pattern = text.pattern.replace(/^\^|\$$/g, "");
  else $("editor-name").removeAttribute("pattern");
  $("editor-name").title = text ? text.min_length + "–" + text.max_length + " characters: " + text.allowed : "";
  $("editor-extended").value = channel.extended_name || "";
  $("editor-error").textContent = token() ? "" : "Enter the API token at the top first.";
  $("editor").showModal();
  $("editor-name").focus();
}

async function saveEditor(event) {
  event.preventDefault();
  // one save at a time: a double click (or Enter pressed twice) while a slow receiver answers would rename it twice
  if (!editing || editing.saving) return;
  const device = state.devices.get(editing.deviceId);
  const channel = device && device.channels.find((c) => c.index === editing.index);
  const name = $("editor-name").value.trim();
  const extended = $("editor-extended").value.trim();
  const path = API + "/channels/" + encodeURIComponent(editing.channelId);
  const saving = editing;
  saving.saving = true;
  showSaving(true);
  try {
    if (channel && extended !== (channel.extended_name || "")) {
      await api("PUT", path + "/extended-name", { name: extended || null });
    }
    if (channel && !$("editor-name").disabled && name && name !== channel.name) {
      await api("POST", path + "/commands", { kind: "name", value: name });
    }
    if (editing === saving) $("editor").close();
    toast("saved");
  } catch (error) {
    if (editing === saving) $("editor-error").textContent = error.message;
  } finally {
    saving.saving = false;
    if (editing === saving) showSaving(false);
  }
}

// While a save runs its button is disabled and says so (a receiver may take seconds to confirm a rename).
function showSaving(on) {
  $("editor-save").disabled = on;
  setText($("editor-save"), on ? "Saving…" : "Save");
  $("editor-form").setAttribute("aria-busy", String(on));
  if (on) $("editor-error").textContent = "";
}

// ---- start

function setTv(on) {
  document.body.classList.toggle("tv", on);
  document.documentElement.classList.toggle("tv", on);  // TV type scales from the root's size (board.css)
  $("tv-toggle").setAttribute("aria-pressed", String(on));
  setTitle();
}

function start() {
  const params = new URLSearchParams(location.search);
  setTv(params.get("tv") === "1");
  $("tv-toggle").addEventListener("click", () => setTv(!document.body.classList.contains("tv")));
  $("token").value = token();
  $("token").addEventListener("change", () => {
    localStorage.setItem(TOKEN_KEY, $("token").value.trim());
    state.refusedToken = null;  // reads may be let through now
    needsToken(false);  // and a write refused with the old token says nothing of the new one
    toast($("token").value.trim() ? "token saved in this browser" : "token cleared");
    if (!live.socket) { clearTimeout(live.retry); connectLive(); }  // a hub that refused the feed: try it now
    refreshVenue();
  });
  $("editor-form").addEventListener("submit", saveEditor);
  $("editor-cancel").addEventListener("click", () => $("editor").close());
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !/^[0-9]$/.test(event.key)) return;
    // a digit typed into a form control (a select's type-ahead too) or behind an open dialog is not a shortcut
    const target = event.target instanceof Element ? event.target : null;
    if (target && (target.closest("input, select, textarea, [contenteditable]") || target.isContentEditable)) return;
    if (document.querySelector("dialog[open]")) return;
    selectGroup(Number(event.key));
  });
  $("show-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("show-end").value;
    saveShow(value ? new Date(value).toISOString() : null);
  });
  $("show-clear").addEventListener("click", () => saveShow(null));
  $("detail-close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("close", closeDetail);
  for (const button of $("detail-ranges").querySelectorAll("button")) button.addEventListener("click", () => selectRange(button));
  if (params.get("channel")) openDetail(params.get("channel"));
  connectLive();
  setInterval(watchLink, 1000);
  refreshHealth();
  refreshCandidates();
  refreshVenue();
  refreshAlerts();
  refreshSwaps();
  setInterval(refreshSwaps, 5000);
  setInterval(tickCountdowns, 1000);
  setInterval(refreshHealth, 5000);
  setInterval(refreshAlerts, 3000);
  setInterval(refreshVenue, 10000);
  setInterval(refreshCandidates, 10000);
}

start();
