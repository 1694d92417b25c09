// Names are read with the grammar of mechscope.units (GRAMMAR, from units.search_grammar()): a head's short form
// L.H is blocks.L.attn:H, and what follows "layer:" is read by the unit pattern (the layer replaced by "x", so that
// any layer the store holds can be searched, even one whose name is outside the grammar).
const NAME = new RegExp(GRAMMAR.name), HEAD = new RegExp(GRAMMAR.head);
function find(q) {
  q = q.trim();
  const head = q.match(HEAD);
  if (head && head.groups.block !== undefined) q = "blocks." + head.groups.block + ".attn:" + head.groups.head;
  for (const [model, layer, dir, units] of LAYERS) {
    for (const name of [layer, model + "/" + layer]) {
      if (q === name) return dir + "index.html";
      if (q.startsWith(name + ":")) {
        const unit = ("x" + q.slice(name.length)).match(NAME);
        if (unit && unit.groups.index !== undefined) {
          const c = Number(unit.groups.index);
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
  else document.getElementById("msg").textContent = "no such unit, head or layer (type layer:channel, or L.H for a head)";
});
