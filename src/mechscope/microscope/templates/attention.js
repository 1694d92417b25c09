// The interactive attention view (templates/attention.html; data: microscope.attention_view.page_data, embedded as
// JSON). Hovering over a token (it stays shown when the pointer leaves, so that the head or direction can be
// changed), or clicking it (pinned until clicked again; Escape clears), tints every token by the selected head's
// attention: "attends to" = the token's row (it is the query), "attended from" = its column (it is the key).
// A tint is the background's alpha: the weight itself. Rows are stored without trailing zeros: a missing entry is 0.
(function () {
  const DATA = JSON.parse(document.getElementById("attention-data").textContent);
  const TINT = "21, 88, 176";
  const tokens = Array.from(document.querySelectorAll("#attention-tokens .tok"));
  const select = document.getElementById("attention-head");
  const status = document.getElementById("attention-status");
  let pinned = null, current = null;

  function weight(head, q, k) {
    const row = DATA.patterns[head][q];
    return k < row.length ? row[k] : 0;
  }
  function direction() {
    return document.querySelector("input[name='attention-direction']:checked").value;
  }
  function quote(i) {
    return "token " + i + " \u201c" + DATA.labels[i] + "\u201d";
  }
  function show(i) {
    current = i;
    const head = Number(select.value), from = direction() === "from";
    let best = -1;
    tokens.forEach(function (t, j) {
      const w = from ? weight(head, j, i) : weight(head, i, j);
      t.style.backgroundColor = "rgba(" + TINT + ", " + w + ")";
      t.style.color = w > 0.55 ? "#fff" : "";
      t.dataset.w = String(w);
      t.title = (from ? "query " + j + " \u2192 key " + i : "query " + i + " \u2192 key " + j) + ": " + w;
      t.classList.toggle("selected", j === i);
      if (best < 0 || w > (from ? weight(head, best, i) : weight(head, i, best))) best = j;
    });
    const w = from ? weight(head, best, i) : weight(head, i, best);
    status.textContent = DATA.heads[head] + ": " + quote(i) + (from ? " is attended to most by " : " attends most to ")
      + quote(best) + " (" + w + ")" + (pinned === null ? "" : " \u00b7 pinned: click it again to unpin");
  }
  function clear() {
    current = null;
    tokens.forEach(function (t) {
      t.style.backgroundColor = t.style.color = "";
      t.removeAttribute("title");
      delete t.dataset.w;
      t.classList.remove("selected");
    });
    status.textContent = "Hover over a token to see where it attends; click it to pin it (click again to unpin, Escape to clear).";
  }
  tokens.forEach(function (t, i) {
    t.addEventListener("mouseenter", function () { if (pinned === null) show(i); });
    t.addEventListener("focus", function () { if (pinned === null) show(i); });
    t.addEventListener("click", function () { pinned = pinned === i ? null : i; show(i); });
    t.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); t.click(); }
    });
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { pinned = null; clear(); }
  });
  function redraw() { if (current !== null) show(current); }
  select.addEventListener("change", redraw);
  document.querySelectorAll("input[name='attention-direction']").forEach(function (r) {
    r.addEventListener("change", redraw);
  });
})();
