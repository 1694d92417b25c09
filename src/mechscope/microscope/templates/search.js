function find(q) {
  q = q.trim();
  for (const [model, layer, dir, units] of LAYERS) {
    for (const name of [layer, model + "/" + layer]) {
      if (q === name) return dir + "index.html";
      if (q.startsWith(name + ":")) {
        const rest = q.slice(name.length + 1);
        if (/^(0|[1-9][0-9]*)$/.test(rest)) {
          const c = Number(rest);
          if (typeof units === "number" ? c < units : units.includes(c)) return dir + c + ".html";
        }
      }
    }
  }
  return null;
}
document.getElementById("search").addEventListener("submit", function (e) {
  e.preventDefault();
  const url = find(document.getElementById("q").value);
  if (url) window.location.href = url;
  else document.getElementById("msg").textContent = "no such unit or layer (type layer:channel)";
});
