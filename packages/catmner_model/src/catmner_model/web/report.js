// catmner evaluate --html: everything below is drawn from the JSON inlined in this file (nothing is fetched).
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const EV = DATA.evaluate;
  const AN = DATA.analysis;
  const GROUPS = ["missed", "spurious", "wrong_type", "wrong_boundary"];
  const NAMES = { all: "all tweets", errors: "tweets with errors", correct: "correct", missed: "missed",
    spurious: "spurious", wrong_type: "wrong type", wrong_boundary: "wrong boundary" };
  const $ = (id) => document.getElementById(id);
  let group = "errors";
  let type = "";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }
  const f2 = (x) => Number(x).toFixed(2);
  const types = Object.keys(EV.lenient.per_type);

  $("summary").textContent = `${EV.n_tweets} tweets · lenient F1 ${f2(EV.lenient.f1)} (P ${f2(EV.lenient.precision)}, ` +
    `R ${f2(EV.lenient.recall)}) · strict F1 ${f2(EV.strict.f1)} · model ${EV.model_dir}`;

  for (const mode of ["lenient", "strict"]) {
    const m = EV[mode];
    const fields = ["precision", "recall", "f1", "support", "tp", "n_pred"];
    const head = el("tr", {}, el("th", {}, "type"), ...["P", "R", "F1", "gold", "tp", "predicted"].map((h) => el("th", {}, h)));
    const rows = types.map((t) => el("tr", { "data-type": t }, el("td", {}, t), ...fields.map((f) =>
      el("td", { "data-mode": mode, "data-type": t, "data-field": f, "data-value": m.per_type[t][f] },
        f === "support" || f === "tp" || f === "n_pred" ? String(m.per_type[t][f]) : f2(m.per_type[t][f])))));
    const all = el("tr", {}, el("th", {}, "all"), ...[["precision", m.precision], ["recall", m.recall], ["f1", m.f1],
      ["n_gold", m.n_gold], ["tp", m.tp], ["n_pred", m.n_pred]].map(([f, v]) =>
      el("th", { "data-mode": mode, "data-type": "all", "data-field": f, "data-value": v }, f.startsWith("n_") || f === "tp" ? String(v) : f2(v))));
    $("tables").append(el("table", { id: `table-${mode}` },
      el("caption", {}, mode === "lenient" ? "lenient (conlleval: the literature's)" : "strict (IOB2)"), head, ...rows, all));
  }

  // the check: counts recomputed from the tweets below against evaluate's JSON (lenient)
  const tp = {}, np = {}, ng = {};
  for (const tw of AN.tweets) {
    for (const e of tw.correct) tp[e.type] = (tp[e.type] || 0) + 1;
    for (const e of tw.pred) np[e.type] = (np[e.type] || 0) + 1;
    for (const e of tw.gold) ng[e.type] = (ng[e.type] || 0) + 1;
  }
  const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
  const agree = sum(tp) === EV.lenient.tp && sum(np) === EV.lenient.n_pred && sum(ng) === EV.lenient.n_gold &&
    types.every((t) => (tp[t] || 0) === EV.lenient.per_type[t].tp && (np[t] || 0) === EV.lenient.per_type[t].n_pred &&
      (ng[t] || 0) === EV.lenient.per_type[t].support);
  const c = AN.counts;
  $("check").dataset.ok = String(agree);
  $("check").textContent = (agree ? "✔ The tweets below give evaluate's lenient counts exactly" :
    "✘ The tweets below do NOT give evaluate's lenient counts") +
    ` (correct ${sum(tp)} = tp ${EV.lenient.tp}; predicted ${sum(np)} = ${c.correct} correct + ${c.wrong_type} wrong type + ` +
    `${c.wrong_boundary} wrong boundary + ${c.spurious} spurious; gold ${sum(ng)} = ${c.correct} correct + ${c.missed} missed + ` +
    `${c.gold_touched} under wrong-type/boundary predictions).`;

  const sel = $("type-filter");
  for (const t of types) sel.append(el("option", { value: t }, t));
  sel.addEventListener("change", () => { type = sel.value; draw(); });

  const kindOf = (err) => (err.pred || err.gold[0]).type;
  const errorsOf = (tw) => tw.errors.filter((e) => !type || kindOf(e) === type);
  const correctOf = (tw) => tw.correct.filter((e) => !type || e.type === type);
  function count(g) {
    if (g === "all") return AN.tweets.length;
    if (g === "errors") return AN.tweets.filter((tw) => errorsOf(tw).length).length;
    if (g === "correct") return AN.tweets.reduce((n, tw) => n + correctOf(tw).length, 0);
    return AN.tweets.reduce((n, tw) => n + errorsOf(tw).filter((e) => e.group === g).length, 0);
  }
  function shows(tw) {
    if (group === "all") return !type || tw.gold.concat(tw.pred).some((e) => e.type === type);
    if (group === "errors") return errorsOf(tw).length > 0;
    if (group === "correct") return correctOf(tw).length > 0;
    return errorsOf(tw).some((e) => e.group === group);
  }

  function line(who, tokens, ents) {
    const node = el("div", { class: "line", "data-line": who }, el("span", { class: "who" }, who));
    const at = new Map(ents.map((e) => [e.start, e]));
    for (let i = 0; i < tokens.length; ) {
      const e = at.get(i);
      if (e) {
        node.append(el("mark", { class: `ent ${e.type}`, "data-start": e.start, "data-end": e.end, "data-type": e.type },
          tokens.slice(e.start, e.end).join(" "), el("span", { class: "label" }, e.type)), " ");
        i = e.end;
      } else { node.append(tokens[i] + " "); i += 1; }
    }
    return node;
  }
  const words = (tw, e) => `“${tw.tokens.slice(e.start, e.end).join(" ")}”`;
  function describe(tw, err) {
    const g = err.gold.map((e) => `${words(tw, e)} ${e.type}`).join(", ");
    if (err.group === "missed") return `${g} not found`;
    if (err.group === "spurious") return `${words(tw, err.pred)} predicted ${err.pred.type}, no gold entity there`;
    if (err.group === "wrong_type") return `${words(tw, err.pred)} is ${err.gold[0].type}, predicted ${err.pred.type}`;
    return `predicted ${words(tw, err.pred)} ${err.pred.type}; gold ${g}`;
  }

  function draw() {
    const buttons = $("group-buttons");
    buttons.replaceChildren();
    for (const g of ["errors", ...GROUPS, "correct", "all"]) {
      const b = el("button", { type: "button", class: "group-btn" + (g === group ? " active" : ""), "data-group": g },
        NAMES[g], el("span", { class: "n", "data-count": count(g) }, String(count(g))));
      b.addEventListener("click", () => { group = g; draw(); });
      buttons.append(b);
    }
    const list = $("tweets");
    list.replaceChildren();
    let n = 0;
    for (const tw of AN.tweets) {
      if (!shows(tw)) continue;
      n += 1;
      const errs = errorsOf(tw);
      const box = el("div", { class: "tweet", "data-imgid": tw.imgid }, el("div", { class: "id" }, `IMGID ${tw.imgid}`),
        line("gold", tw.tokens, tw.gold), line("pred", tw.tokens, tw.pred));
      if (errs.length) {
        box.append(el("ul", { class: "errors" }, ...errs.map((e) => el("li", { "data-group": e.group },
          el("span", { class: `badge b-${e.group}` }, NAMES[e.group]), describe(tw, e)))));
      } else {
        box.append(el("div", { class: "ok" }, "no error" + (type ? ` of type ${type}` : "")));
      }
      list.append(box);
    }
    $("shown").textContent = `${n} tweets shown (${NAMES[group]}${type ? ", type " + type : ""})`;
    $("shown").dataset.n = n;
  }
  draw();
})();
