// The layer page's list of features (templates/feature_list.html): the search box filters the rows, each a plain
// <li> of text, by index (a number typed alone: that unit exactly) or by text (every word typed must appear in the
// row's text, case-insensitive). The rows' texts are read once; filtering sets `hidden`, so 2048 rows stay fast.
(function () {
  const input = document.getElementById("feature-q");
  const count = document.getElementById("feature-count");
  const rows = Array.from(document.querySelectorAll("#feature-list > li"));
  const texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
  function filter() {
    const q = input.value.trim().toLowerCase();
    const number = /^[0-9]+$/.test(q) ? q : null;
    const words = q.split(/\s+/).filter(Boolean);
    let shown = 0;
    rows.forEach(function (r, i) {
      const ok = number !== null ? r.dataset.unit === number
        : words.every(function (w) { return texts[i].indexOf(w) !== -1; });
      r.hidden = !ok;
      if (ok) shown += 1;
    });
    count.textContent = shown + " shown";
  }
  input.addEventListener("input", filter);
  filter();
})();
