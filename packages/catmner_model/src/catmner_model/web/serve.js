// catmner serve: the page's logic. Everything it shows comes from POST /api/explain (Predictor.explain);
// numbers are printed from that JSON, never recomputed, so the page and a Python call agree exactly.
"use strict";
const $ = (id) => document.getElementById(id);
const TYPES = ["PER", "LOC", "ORG", "MISC"];
const MAP_TITLES = {
  refined: "refined (what the model used)",
  unrefined: "unrefined (same layer, no Eq. 4 gate)",
};
let info = null;
let data = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function pct(w) { return (100 * w).toFixed(1) + "%"; }

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadInfo() {
  try {
    info = await (await fetch("/api/info")).json();
  } catch (e) {
    showError("cannot reach the server: " + e);
    return;
  }
  $("model-info").textContent = `model ${info.model}: variant ${info.variant}, visual tokens ${info.visual_source}` +
    (info.refined ? ", refined attention" : ", no refinement");
  $("image-hint").textContent = info.uses_images
    ? `up to ${(info.max_upload_bytes / 1048576).toFixed(0)} MB; its 4x4 grid becomes the visual tokens`
    : "this model has no image path (an image is ignored)";
  $("caption-hint").textContent = info.uses_captions
    ? "the caption's words become the visual tokens"
    : "this model does not read captions";
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1] || "");
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const body = { text: $("text").value, caption: $("caption").value || null, image: null };
  const file = $("image").files[0];
  if (file) {
    if (info && file.size > info.max_upload_bytes) {
      showError(`the image is ${file.size} bytes; this server accepts up to ${info.max_upload_bytes}`);
      return;
    }
    body.image = await readFile(file);
  }
  $("busy").hidden = false;
  $("run").disabled = true;
  try {
    const resp = await fetch("/api/explain", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    let answer;
    try { answer = await resp.json(); } catch (e) { answer = { error: `server answered ${resp.status}` }; }
    if (!resp.ok || answer.error) {
      showError(answer.error || `server answered ${resp.status}`);
      return;
    }
    data = answer;
    render();
  } catch (e) {
    showError("request failed: " + e);
  } finally {
    $("busy").hidden = true;
    $("run").disabled = false;
  }
}

function render() {
  const res = data.result;
  $("notes").replaceChildren(...data.notes.map((n) => el("li", {}, n)));
  const tweet = $("tweet");
  tweet.replaceChildren();
  const starts = new Map(res.entities.map((e, i) => [e.start, i]));
  for (let i = 0; i < res.tokens.length; ) {
    if (starts.has(i)) {
      const k = starts.get(i);
      const e = res.entities[k];
      const mark = el("mark", {
        class: `ent ${e.type}`, "data-index": k, "data-start": e.start, "data-end": e.end,
        "data-type": e.type, "data-score": e.score, title: `${e.type} ${e.score}`,
      }, res.tokens.slice(e.start, e.end).join(" "), el("span", { class: "label" }, e.type),
        el("span", { class: "score" }, e.score === null ? "" : e.score.toFixed(2)));
      mark.addEventListener("click", () => select("entities", k));
      tweet.append(mark, " ");
      i = e.end;
    } else {
      const w = el("span", { class: "word", "data-word": i }, res.tokens[i]);
      w.addEventListener("click", () => select("words", i));
      tweet.append(w, " ");
      i += 1;
    }
  }
  $("legend").replaceChildren(...TYPES.map((t) => el("span", { class: t }, t)));
  $("predict-json").textContent = data.predict_json;
  $("explain-json").textContent = JSON.stringify(res, null, 2);
  $("output").hidden = false;
  if (res.entities.length) select("entities", 0);
  else if (res.attention.words.length) select("words", 0);
}

function heat(w, vmax) {
  const a = vmax > 0 ? 0.6 * (w / vmax) : 0;
  return `rgba(220, 38, 38, ${a.toFixed(3)})`;
}

function gridMap(name, m, shape, vmax) {
  const box = el("div", { class: "overlay-box" }, el("img", { src: data.image.data_url, alt: "uploaded image" }));
  const overlay = el("div", { class: "overlay" });
  overlay.style.gridTemplateColumns = `repeat(${shape[1]}, 1fr)`;
  overlay.style.gridTemplateRows = `repeat(${shape[0]}, 1fr)`;
  m.weights.forEach((w, i) => {
    const cell = el("div", { class: "cell", "data-cell": i, "data-weight": w, title: `cell ${i}: ${w}` }, pct(w));
    cell.style.background = heat(w, vmax);
    overlay.append(cell);
  });
  box.append(overlay);
  return el("div", { class: "map grid-map", "data-map": name }, el("h4", {}, MAP_TITLES[name]), box,
    el("div", { class: "mass", "data-mass": m.mass }, `${pct(m.mass)} of the span's attention is on the image's cells`));
}

function captionMap(name, m, pieces, vmax) {
  const row = el("div", { class: "caption-map" });
  m.weights.forEach((w, i) => {
    const p = el("span", { class: "piece", "data-piece": i, "data-weight": w, title: `${pieces[i]}: ${w}` }, pieces[i]);
    p.style.background = heat(w, vmax);
    row.append(p, " ");
  });
  return el("div", { class: "map caption-view", "data-map": name }, el("h4", {}, MAP_TITLES[name]), row,
    el("div", { class: "mass", "data-mass": m.mass }, `${pct(m.mass)} of the span's attention is on the caption`));
}

function select(kind, index) {
  const res = data.result;
  const row = res.attention[kind][index];
  document.querySelectorAll(".selected").forEach((n) => n.classList.remove("selected"));
  const node = kind === "entities" ? document.querySelector(`mark[data-index="${index}"]`)
    : document.querySelector(`[data-word="${index}"]`);
  if (node) node.classList.add("selected");
  const span = kind === "entities" ? res.entities[index] : { start: index, end: index + 1 };
  const words = res.tokens.slice(span.start, span.end).join(" ");
  $("selected-span").textContent = `“${words}”` + (span.type ? ` (${span.type}, score ${span.score})` : " (a word)");
  $("selected-span").dataset.kind = kind;
  $("selected-span").dataset.index = index;
  const out = $("attention");
  out.replaceChildren();
  $("label-words").replaceChildren();
  $("attention-help").textContent = "The last layer's attention of the span over the visual tokens (mean over " +
    "heads and the span's words), renormalised over the image's 4x4 grid cells or the caption's word pieces; " +
    "both maps share one colour scale.";
  if (!row) {
    out.append(el("p", { class: "hint" }, "these words were past the model's max_length: it never read them"));
    return;
  }
  let drew = false;
  for (const view of ["grid", "caption"]) {
    const maps = row[view];
    if (!maps) continue;
    const names = ["unrefined", "refined"].filter((n) => maps[n]);
    const vmax = Math.max(...names.flatMap((n) => maps[n].weights));
    out.append(el("h3", {}, view === "grid" ? "over the image (4x4 grid)" : "over the caption's word pieces"));
    const box = el("div", { class: "maps", "data-view": view });
    for (const n of names) {
      box.append(view === "grid" ? gridMap(n, maps[n], res.visual.grid.shape, vmax)
        : captionMap(n, maps[n], res.visual.caption.pieces, vmax));
    }
    out.append(box);
    drew = true;
  }
  if (!drew) {
    out.append(el("p", { class: "hint" }, res.model.visual_source === "none"
      ? "this model has no visual tokens (text variant)"
      : "no image or caption was given: the span could only attend to the model's learned no-image token"));
  }
  $("label-uniform").textContent = row.label_words_uniform === undefined ? "" :
    `(a label word whose saliency spread evenly over the tweet's word pieces would give the span ${pct(row.label_words_uniform)})`;
  if (row.label_words) {
    $("label-words").replaceChildren(...row.label_words.map((lw) =>
      el("li", { "data-label-word": lw.word, "data-weight": lw.weight }, `${lw.word} `, el("span", { class: "hint" }, pct(lw.weight)))));
  } else {
    $("label-words").append(el("li", { class: "hint" }, "this model has no label words (no refinement)"));
  }
}

$("form").addEventListener("submit", submit);
$("copy-json").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(data.predict_json));
loadInfo();
