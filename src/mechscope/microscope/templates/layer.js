const toggle = document.getElementById("show-empty");
if (toggle) toggle.addEventListener("change", function () {
  document.getElementById("grid").classList.toggle("all", toggle.checked);
});
document.querySelectorAll("button[data-sort]").forEach(function (b) {
  b.addEventListener("click", function () {
    const grid = document.getElementById("grid");
    const cells = Array.from(grid.children);
    const key = b.dataset.sort;
    cells.sort(function (a, c) {
      if (key !== "channel") {
        const x = parseFloat(a.dataset[key]), y = parseFloat(c.dataset[key]);
        if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1;
        if (!isNaN(x) && x !== y) return y - x;
      }
      return Number(a.dataset.channel) - Number(c.dataset.channel);
    });
    cells.forEach(function (c) { grid.appendChild(c); });
  });
});
