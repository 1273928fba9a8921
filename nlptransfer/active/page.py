"""The labeling page (one HTML file, no outside resources): the next text, a button per label with its key (the
model's suggestion highlighted), progress, the learning curve as an SVG line; it polls /api/state each second. NER
(`state.tagging`): the sentence's words as chips showing their tags (the model's suggestions, then the person's);
click a word (shift-click: a span), a key 1..9 tags it with an entity type (B- then I-), 0 with O, Enter sends the
sentence's tags."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nlptransfer: label</title>
<style>
body{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;color:#222}
#text{font-size:1.35em;line-height:1.5;padding:1em;border:1px solid #ccc;border-radius:6px;min-height:3em}
button{font-size:1em;margin:.3em;padding:.5em 1em;border:1px solid #888;border-radius:5px;background:#fafafa}
button.suggested{background:#ffe08a;border-color:#c90;font-weight:bold}
button.chosen{background:#9fd39f}
#progress,#status,#stop{margin:.6em 0;color:#444}
#error{color:#b00}
kbd{border:1px solid #aaa;border-radius:3px;padding:0 .3em;font-size:.85em}
.chip{display:inline-block;margin:.15em;padding:.15em .4em;border:1px solid #ccc;border-radius:4px;cursor:pointer;
text-align:center}
.chip small{display:block;font-size:.6em;color:#555}
.chip.entity{background:#ffe08a}
.chip.selected{outline:2px solid #36c}
</style></head><body>
<h1>Label the texts the model needs most</h1>
<div id="progress"></div>
<div id="text">loading&hellip;</div>
<div id="suggestion"></div>
<div id="buttons"></div>
<p><kbd>1</kbd>&hellip;<kbd>9</kbd> a label (multi-label: toggle, then <kbd>Enter</kbd>) &middot; <kbd>Enter</kbd> the
suggestion &middot; <kbd>s</kbd> skip &middot; <kbd>u</kbd> undo &middot; <kbd>n</kbd> next round now &middot; NER:
click a word (shift-click a span), <kbd>1</kbd>&hellip;<kbd>9</kbd> an entity type, <kbd>0</kbd> O, <kbd>Enter</kbd> the
sentence's tags</p>
<div id="status"></div><div id="error"></div><div id="stop"></div>
<svg id="curve" width="480" height="200" role="img" aria-label="learning curve"></svg>
<script>
let state = null, skipped = new Set(), given = [], picked = new Set(), sent = 0, shown = 0, posting = 0;
let working = {}, selection = null, anchor = null;  // NER: the tags shown per sentence, the selected words
const $ = (id) => document.getElementById(id);
function current() {
  if (!state) return null;
  return state.items.find((item) => !skipped.has(item.text)) || null;
}
async function call(path, body) {
  // a poll answered around a label may show the state from before it: only a label's own answer counts then
  const mine = ++sent, poll = body === undefined;
  if (poll && posting) return;
  if (!poll) posting++;
  let data, ok;
  try {
    const response = await fetch(path, poll ? {} : {method: "POST", body: JSON.stringify(body),
      headers: {"Content-Type": "application/json"}});
    data = await response.json(); ok = response.ok;
  } finally { if (!poll) posting--; }
  if (!ok) { $("error").textContent = data.error; return; }
  if (mine < shown || (poll && posting)) return;
  shown = mine; state = data; render();
}
function label(value) {
  const item = current();
  if (!item || value === null || value === undefined) return;
  given.push(item.text); picked = new Set(); selection = null; anchor = null;
  call("/api/label", {text: item.text, label: value});
}
function undo() {
  const text = given.pop();
  if (text !== undefined) { skipped.delete(text); call("/api/label", {text: text, label: null}); }
}
function render() {
  const item = current(), names = state.label_names;
  const accuracy = state.accuracy === null || state.accuracy === undefined ? "n/a" : state.accuracy.toFixed(3);
  $("progress").textContent = `labeled ${state.labels} · left in this round ${state.items.length} of ` +
    `${state.batch_size} · round ${state.round === null ? "-" : state.round} · validation accuracy ${accuracy}`;
  $("status").textContent = state.training ? `retraining: ${state.message || "training"}` : "";
  $("error").textContent = state.error || "";
  $("stop").textContent = state.stop || "";
  if (item && state.tagging) { renderWords(item); return; }
  $("text").dataset.drawn = "";
  $("text").textContent = item ? item.text : (state.training ? "retraining on your labels…" :
    "this round is labeled (or skipped): press n for the next round");
  const suggested = item && item.suggestion !== null ? [].concat(item.suggestion) : [];
  $("suggestion").textContent = suggested.length ? `suggestion: ${suggested.join(", ")} (${item.confidence})` : "";
  $("buttons").innerHTML = "";
  names.forEach((name, i) => {
    const button = document.createElement("button");
    button.textContent = `${i + 1} ${name}`; button.dataset.label = name;
    if (suggested.includes(name)) button.className = "suggested";
    if (picked.has(name)) button.className += " chosen";
    button.onclick = () => press(i);
    $("buttons").appendChild(button);
  });
  drawCurve(state.curve);
}
function tagsOf(item) {
  if (!working[item.text]) {
    const suggested = item.suggestion || [];
    working[item.text] = item.text.split(" ").map((word, i) => suggested[i] || "O");
  }
  return working[item.text];
}
function renderWords(item) {
  const tags = tagsOf(item), drawn = JSON.stringify([item.text, tags, selection]);
  if ($("text").dataset.drawn === drawn) return;  // the poll changed nothing here: keep the chips
  $("text").dataset.drawn = drawn;
  $("text").innerHTML = "";
  item.text.split(" ").forEach((word, i) => {
    const chip = document.createElement("span"), tag = document.createElement("small");
    const chosen = selection && i >= selection[0] && i <= selection[1];
    chip.className = "chip" + (tags[i] !== "O" ? " entity" : "") + (chosen ? " selected" : "");
    chip.dataset.index = i; chip.textContent = word; tag.textContent = tags[i]; chip.appendChild(tag);
    chip.onclick = (event) => select(i, event.shiftKey);
    $("text").appendChild(chip);
  });
  $("suggestion").textContent = item.suggestion === null ? "no suggestion yet: every word O" :
    `the model's tags (least sure word ${item.confidence}), with your edits`;
  $("buttons").innerHTML = "";
  ["O", ...state.entity_types].forEach((kind, i) => {
    const button = document.createElement("button");
    button.textContent = `${i} ${kind}`; button.onclick = () => tagWords(kind);
    $("buttons").appendChild(button);
  });
}
function select(i, extend) {
  if (extend && anchor !== null) selection = [Math.min(anchor, i), Math.max(anchor, i)];
  else { anchor = i; selection = [i, i]; }
  render();
}
function tagWords(kind) {
  const item = current();
  if (!item || !selection || kind === undefined) return;
  const tags = tagsOf(item);
  for (let i = selection[0]; i <= selection[1]; i++) {
    tags[i] = kind === "O" ? "O" : `${i === selection[0] ? "B" : "I"}-${kind}`;
  }
  render();
}
function press(i) {
  const name = state.label_names[i];
  if (name === undefined) return;
  if (!state.multilabel) { label(name); return; }
  picked.has(name) ? picked.delete(name) : picked.add(name); render();
}
function drawCurve(points) {
  const svg = $("curve");
  if (!points.length) { svg.innerHTML = ""; return; }
  const xs = points.map((p) => p[0]), max = Math.max(...xs, 1), min = Math.min(...xs);
  const x = (n) => 40 + 420 * (max === min ? 0.5 : (n - min) / (max - min)), y = (a) => 180 - 160 * a;
  const line = points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ");
  svg.innerHTML = `<line x1="40" y1="180" x2="460" y2="180" stroke="#999"/><line x1="40" y1="20" x2="40" ` +
    `y2="180" stroke="#999"/><text x="4" y="24" font-size="11">1.0</text><text x="4" y="184" font-size="11">0</text>` +
    `<text x="200" y="198" font-size="11">labels (${min}–${max})</text>` +
    `<polyline id="curve-line" fill="none" stroke="#2a6" stroke-width="2" points="${line}"/>` +
    points.map((p) => `<circle cx="${x(p[0])}" cy="${y(p[1])}" r="3" fill="#2a6"/>`).join("");
}
document.addEventListener("keydown", (event) => {
  if (!state || posting || event.ctrlKey || event.metaKey || event.altKey) return;
  const item = current();
  if (state.tagging && /^[0-9]$/.test(event.key)) tagWords(["O", ...state.entity_types][Number(event.key)]);
  else if (state.tagging && event.key === "Enter" && item) label([...tagsOf(item)]);
  else if (/^[1-9]$/.test(event.key)) press(Number(event.key) - 1);
  else if (event.key === "Enter" && item) label(state.multilabel && picked.size ? [...picked] : item.suggestion);
  else if (event.key === "s" && item) { skipped.add(item.text); render(); }
  else if (event.key === "u") undo();
  else if (event.key === "n") { skipped = new Set(); call("/api/round", {}); }
});
call("/api/state");
setInterval(() => call("/api/state"), 1000);
</script></body></html>
"""
