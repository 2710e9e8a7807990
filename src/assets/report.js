// archscope report: table folding, sorting and search; diagram hover, click-through and block
// collapsing; chart hover. No library, no network. With the URL fragment #selftest the page
// exercises itself and writes the results into <pre id="selftest"> (tests/report.rs reads it).
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  var selftest = location.hash === "#selftest";
  if (selftest) {
    var origError = console.error;
    console.error = function () { errors.push(Array.prototype.join.call(arguments, " ")); origError.apply(console, arguments); };
  }
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  var tip = document.getElementById("tip");
  var COLS = { params: 3, macs: 4, flops: 5, mem: 6, live: 7, rf: 8 };
  var HEAD = ["Layer", "Op", "Output", "Params", "MACs", "FLOPs", "Memory", "Live", "RF"];

  function showTip(ev, html) {
    tip.innerHTML = html;
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 4) { x = Math.max(4, ev.clientX - w - 14); }
    if (y + h > window.innerHeight - 4) { y = Math.max(4, ev.clientY - h - 14); }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hideTip() { tip.hidden = true; }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function rowTip(tr) {
    var cells = tr.cells, out = "<b>" + esc(tr.dataset.name) + "</b>";
    for (var c = 1; c < cells.length; c++) {
      var t = cells[c].textContent;
      if (t && t !== "-") { out += "<br>" + HEAD[c] + ": " + esc(t); }
    }
    return out;
  }

  function Section(sec) {
    var S = this;
    S.sec = sec;
    S.p = sec.dataset.p;
    S.table = $("table.layers", sec);
    S.tbody = S.table.tBodies[0];
    S.rows = $$("tr", S.tbody);
    S.rows.forEach(function (tr, i) { tr._i = i; });
    S.kids = S.rows.map(function () { return []; });
    S.par = S.rows.map(function (r) { return r.dataset.par === undefined ? -1 : Number(r.dataset.par); });
    S.par.forEach(function (q, i) { if (q >= 0) { S.kids[q].push(i); } });
    S.open = S.rows.map(function (r) { var t = $(".tg", r); return !!t && t.getAttribute("aria-expanded") === "true"; });
    S.leafByName = {};
    S.groupByName = {};
    S.leafByK = {};
    S.rows.forEach(function (r) {
      if (r.dataset.k !== undefined) { S.leafByName[r.dataset.name] = r; S.leafByK[r.dataset.k] = r; }
      else if (!(r.dataset.name in S.groupByName)) { S.groupByName[r.dataset.name] = r; }
    });
    S.sortKey = null;
    S.sortDir = 0;
    S.query = "";
    S.search = $("input[data-act=search]", sec);
    S.foldSel = $("select[data-act=fold]", sec);
    S.search.addEventListener("input", function () { S.query = S.search.value.trim().toLowerCase(); S.refresh(); });
    S.foldSel.addEventListener("change", function () { S.fold(S.foldSel.value); });
    $("button[data-act=reset]", sec).addEventListener("click", function () { S.reset(); });
    $$("th[data-k]", S.table).forEach(function (th) {
      th.addEventListener("click", function () { S.sortBy(th.dataset.k); });
    });
    S.tbody.addEventListener("click", function (ev) {
      var t = ev.target.closest("button.tg, .nm");
      if (!t) { return; }
      var tr = t.closest("tr");
      if (t.classList.contains("tg")) { S.toggle(tr._i); }
      else { S.showNode(tr.dataset.name, tr.dataset.k === undefined); }
    });
    $$("a[data-goto]", sec).forEach(function (a) {
      a.addEventListener("click", function (ev) { ev.preventDefault(); S.goto(S.leafByName[a.dataset.goto]); });
    });
    S.initDiagram();
    S.initCharts();
  }

  // Rows of the current view: the fold's rows (not opened groups), matching the search.
  Section.prototype.visibleSet = function () {
    var S = this, n = S.rows.length, vis = new Array(n), shown = new Array(n);
    for (var i = 0; i < n; i++) {
      var q = S.par[i];
      vis[i] = q < 0 ? true : vis[q] && S.open[q];
      var isOpenGroup = S.kids[i].length > 0 && S.open[i];
      if (S.query) {
        var r = S.rows[i];
        // A layer with its fused batch norm / activation is a group named as the layer: show the layer.
        shown[i] = r.dataset.name.toLowerCase().indexOf(S.query) >= 0 &&
          !(r.dataset.k === undefined && S.leafByName[r.dataset.name]);
      }
      else if (S.sortKey) { shown[i] = vis[i] && !isOpenGroup; }
      else { shown[i] = vis[i]; }
    }
    return shown;
  };
  Section.prototype.value = function (tr, key) {
    if (key === "name") { return tr.dataset.name; }
    return parseFloat(tr.cells[COLS[key]].dataset.v);
  };
  Section.prototype.refresh = function () {
    var S = this, shown = S.visibleSet();
    var order = S.rows.slice();
    if (S.sortKey) {
      var k = S.sortKey, d = S.sortDir;
      order.sort(function (a, b) {
        var x = S.value(a, k), y = S.value(b, k);
        var c = k === "name" ? (x < y ? -1 : x > y ? 1 : 0) : x - y;
        return c * d || a._i - b._i;
      });
    }
    var frag = document.createDocumentFragment();
    order.forEach(function (tr) { tr.hidden = !shown[tr._i]; frag.appendChild(tr); });
    S.tbody.appendChild(frag);
    S.table.classList.toggle("flat", !!(S.sortKey || S.query));
    S.rows.forEach(function (tr, i) {
      var t = $(".tg", tr);
      if (t) { t.setAttribute("aria-expanded", S.open[i] ? "true" : "false"); t.textContent = S.open[i] ? "▾" : "▸"; }
    });
    $$("th[data-k]", S.table).forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.k !== S.sortKey ? "none" : S.sortDir > 0 ? "ascending" : "descending");
    });
  };
  Section.prototype.fold = function (v) {
    var S = this;
    S.foldSel.value = v;
    S.rows.forEach(function (tr, i) {
      if (S.kids[i].length) { S.open[i] = v === "all" || Number(tr.dataset.dmax) < Number(v); }
    });
    S.refresh();
  };
  Section.prototype.toggle = function (i) { this.open[i] = !this.open[i]; this.refresh(); };
  Section.prototype.sortBy = function (k) {
    var S = this;
    if (S.sortKey === k) { S.sortDir = -S.sortDir; }
    else { S.sortKey = k; S.sortDir = k === "name" ? 1 : -1; }
    S.refresh();
  };
  Section.prototype.reset = function () {
    this.sortKey = null; this.sortDir = 0; this.query = ""; this.search.value = ""; this.refresh();
  };
  // Shows a row: clears a search or sort that hides it, opens its ancestors, scrolls to it.
  Section.prototype.goto = function (tr) {
    var S = this;
    if (!tr) { return; }
    var i = tr._i;
    for (var q = S.par[i]; q >= 0; q = S.par[q]) { S.open[q] = true; }
    if (S.query || S.sortKey) { S.reset(); } else { S.refresh(); }
    $$("tr.hl", S.tbody).forEach(function (r) { r.classList.remove("hl"); });
    tr.classList.add("hl");
    var wrap = tr.closest(".tablewrap");
    wrap.scrollTop = tr.offsetTop - wrap.clientHeight / 2;
    if (!selftest) { wrap.scrollIntoView({ block: "nearest" }); }
  };

  // The diagram: nodes by name, hover, click to row, collapsible clusters, zoom.
  Section.prototype.initDiagram = function () {
    var S = this;
    S.dia = $(".diagram", S.sec);
    S.nodes = {};
    S.folded = {};
    if (!S.dia) { return; }
    S.svg = $("svg", S.dia);
    S.natural = S.svg.viewBox && S.svg.viewBox.baseVal ? S.svg.viewBox.baseVal.width * 4 / 3 : 0;
    S.zoom = 1;
    $$("g.node", S.svg).forEach(function (g) { S.nodes[$("title", g).textContent] = g; });
    S.edges = $$("g.edge", S.svg).map(function (g) {
      var t = $("title", g).textContent.split("->");
      return { g: g, a: t[0], b: t[1] };
    });
    S.clusters = {};
    $$("g.cluster", S.svg).forEach(function (g) {
      var path = $("title", g).textContent.replace(/^cluster_/, "");
      S.clusters[path] = g;
      g.addEventListener("click", function () { S.foldCluster(path, !S.folded[path]); });
    });
    S.svg.addEventListener("mouseover", function (ev) {
      var g = ev.target.closest("g.node");
      var tr = g && S.rowOfNode($("title", g).textContent);
      if (tr) { showTip(ev, rowTip(tr)); } else { hideTip(); }
    });
    S.svg.addEventListener("mouseleave", hideTip);
    S.svg.addEventListener("click", function (ev) {
      var g = ev.target.closest("g.node");
      if (!g) { return; }
      ev.stopPropagation();
      S.goto(S.rowOfNode($("title", g).textContent));
    });
    var act = function (name, f) { var b = $("button[data-act=" + name + "]", S.sec); if (b) { b.addEventListener("click", f); } };
    act("zoom-in", function () { S.setZoom(S.zoom * 1.25); });
    act("zoom-out", function () { S.setZoom(S.zoom / 1.25); });
    act("zoom-fit", function () { S.setZoom(0); });
    act("fold-blocks", function () { Object.keys(S.clusters).forEach(function (p) { S.foldCluster(p, true); }); });
    act("unfold-blocks", function () { Object.keys(S.clusters).forEach(function (p) { S.foldCluster(p, false); }); });
  };
  Section.prototype.setZoom = function (z) {
    var S = this;
    S.zoom = z;
    if (z === 0) { S.svg.style.width = "100%"; S.svg.style.height = "auto"; S.zoom = 1; return; }
    S.svg.style.width = (S.natural * z) + "px";
    S.svg.style.height = "auto";
  };
  // The table row of a diagram node: its layer, or its block (a folded block's node).
  Section.prototype.rowOfNode = function (name) {
    return this.leafByName[name] || this.groupByName[name] || null;
  };
  // The innermost folded block holding a name, if any.
  Section.prototype.foldedAround = function (name) {
    var best = null;
    for (var p in this.folded) {
      if (this.folded[p] && name.indexOf(p + ".") === 0 && (!best || p.length > best.length)) { best = p; }
    }
    return best;
  };
  Section.prototype.outermostFolded = function (name) {
    var best = null;
    for (var p in this.folded) {
      if (this.folded[p] && name.indexOf(p + ".") === 0 && (!best || p.length < best.length)) { best = p; }
    }
    return best;
  };
  Section.prototype.foldCluster = function (path, fold) {
    var S = this, g = S.clusters[path];
    S.folded[path] = fold;
    var old = $(".fold-ov", g);
    if (old) { old.parentNode.removeChild(old); }
    if (fold) {
      var box = $("polygon, path", g).getBBox();
      var ns = "http://www.w3.org/2000/svg";
      var ov = document.createElementNS(ns, "g");
      ov.setAttribute("class", "fold-ov");
      var r = document.createElementNS(ns, "rect");
      r.setAttribute("x", box.x); r.setAttribute("y", box.y);
      r.setAttribute("width", box.width); r.setAttribute("height", box.height);
      r.setAttribute("rx", 6);
      ov.appendChild(r);
      var row = S.groupByName[path];
      var lines = [path + " (collapsed; click to expand)"];
      if (row) { lines.push(row.cells[1].textContent); lines.push(row.cells[3].textContent + " params · " + row.cells[4].textContent + " MACs"); }
      lines.forEach(function (l, k) {
        var t = document.createElementNS(ns, "text");
        t.setAttribute("x", box.x + 8); t.setAttribute("y", box.y + 18 + 15 * k);
        t.textContent = l;
        ov.appendChild(t);
      });
      g.appendChild(ov);
    }
    // Hide what a folded block holds: its nodes, nested blocks and inner edges.
    for (var n in S.nodes) { S.nodes[n].classList.toggle("gone", !!S.outermostFolded(n)); }
    for (var c in S.clusters) { S.clusters[c].classList.toggle("gone", !!S.outermostFolded(c)); }
    S.edges.forEach(function (e) {
      var fa = S.outermostFolded(e.a), fb = S.outermostFolded(e.b);
      e.g.classList.toggle("gone", !!fa && fa === fb);
    });
  };
  // Scrolls the diagram to a layer's node (or the node that holds it), and marks it.
  Section.prototype.showNode = function (name, group) {
    var S = this;
    if (!S.dia) { return null; }
    var target = null, n = name;
    var f = S.outermostFolded(name + ".") || S.outermostFolded(name);
    if (f) { target = S.clusters[f]; }
    while (!target && n) {
      if (S.nodes[n]) { target = S.nodes[n]; break; }
      if (group && S.clusters[n]) { target = S.clusters[n]; break; }
      var cut = n.lastIndexOf(".");
      n = cut > 0 ? n.slice(0, cut) : "";
    }
    if (!target) { return null; }
    $$("g.hl", S.svg).forEach(function (g) { g.classList.remove("hl"); });
    target.classList.add("hl");
    var rb = target.getBoundingClientRect(), cb = S.dia.getBoundingClientRect();
    S.dia.scrollTop += rb.top - cb.top - cb.height / 2 + rb.height / 2;
    S.dia.scrollLeft += rb.left - cb.left - cb.width / 2 + rb.width / 2;
    if (!selftest) { S.dia.scrollIntoView({ block: "nearest" }); }
    return target;
  };

  // Charts: hover a layer's column for its figures (and, on the memory timeline, what is
  // alive), click it for its row.
  Section.prototype.alive = function (k) {
    var S = this, out = [], sum = 0;
    S.rows.forEach(function (tr) {
      if (tr.dataset.k === undefined) { return; }
      var j = Number(tr.dataset.k), free = tr.dataset.free;
      if (j > k || free === "view") { return; }
      if (free !== "end" && Number(free) < k) { return; }
      var b = parseFloat(tr.cells[COLS.mem].dataset.v);
      if (b > 0) { out.push([tr.dataset.name, b, tr.cells[COLS.mem].textContent]); sum += b; }
    });
    out.sort(function (a, b) { return b[1] - a[1]; });
    return { list: out, sum: sum };
  };
  Section.prototype.initCharts = function () {
    var S = this, panel = document.getElementById(S.p + "-alive");
    $$("figure.chart", S.sec).forEach(function (fig) {
      var memory = !!fig.querySelector("svg") && fig.nextElementSibling === panel;
      fig.addEventListener("mouseover", function (ev) {
        var r = ev.target.closest(".hits rect");
        if (!r) { hideTip(); return; }
        var tr = S.leafByK[r.dataset.k];
        if (!tr) { return; }
        var html = rowTip(tr);
        if (memory) {
          var al = S.alive(Number(r.dataset.k));
          html += "<br>alive: " + al.list.length + " tensors";
          panel.textContent = "Alive while " + tr.dataset.name + " runs (" + tr.cells[COLS.live].textContent + "): " +
            al.list.slice(0, 12).map(function (x) { return x[0] + " " + x[2]; }).join(", ") +
            (al.list.length > 12 ? ", and " + (al.list.length - 12) + " more" : "");
        }
        showTip(ev, html);
      });
      fig.addEventListener("mouseleave", hideTip);
      fig.addEventListener("click", function (ev) {
        var r = ev.target.closest(".hits rect");
        if (r) { S.goto(S.leafByK[r.dataset.k]); }
      });
    });
  };

  var sections = $$("section.model").map(function (sec) { return new Section(sec); });

  function cellNum(tr, key) { return parseFloat(tr.cells[COLS[key]].dataset.v); }
  function rowData(tr) {
    return {
      name: tr.dataset.name, op: tr.cells[1].textContent, output: tr.cells[2].textContent,
      params: tr.cells[3].textContent, macs: cellNum(tr, "macs"), macs_text: tr.cells[4].textContent,
      flops: cellNum(tr, "flops"), flops_text: tr.cells[5].textContent,
      mem: cellNum(tr, "mem"), mem_text: tr.cells[6].textContent, rf: tr.cells[8].textContent
    };
  }
  function shown(S) {
    var open = S.rows.map(function (tr, i) { return S.kids[i].length > 0 && S.open[i]; });
    return $$("tr", S.tbody).filter(function (tr) { return !tr.hidden && !open[tr._i]; });
  }
  function click(el) { el.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true })); }
  function runSelftest() {
    var out = { errors: errors, sections: [], compare: [], title: $("h1").textContent, scripts: $$("script").length };
    $$("table.cmp tbody tr").forEach(function (tr) {
      out.compare.push({ model: tr.dataset.model, link: $("a", tr).getAttribute("href"),
        values: Array.prototype.map.call(tr.cells, function (c) { return c.dataset.v === undefined ? c.textContent : c.dataset.v; }) });
    });
    sections.forEach(function (S) {
      var r = { model: S.sec.dataset.model, id: S.p, totals: {} };
      $$(".card[data-total]", S.sec).forEach(function (c) {
        var x = $(".exact", c);
        r.totals[c.dataset.total] = x ? Number(x.textContent.replace(/,/g, "")) : $(".v", c).textContent;
      });
      r.initial = shown(S).length;
      S.fold("all"); r.layers = shown(S).map(rowData);
      S.fold("1"); r.fold1 = shown(S).map(rowData);
      S.sortBy("macs"); r.sort_desc = shown(S).map(function (tr) { return [tr.dataset.name, cellNum(tr, "macs")]; });
      S.sortBy("macs"); r.sort_asc = shown(S).map(function (tr) { return [tr.dataset.name, cellNum(tr, "macs")]; });
      r.sort_header = $("th[data-k=macs]", S.table).getAttribute("aria-sort");
      S.reset(); r.after_reset = shown(S).map(function (tr) { return tr.dataset.name; });
      var grp = shown(S).filter(function (tr) { return tr.classList.contains("grp"); })[0];
      if (grp) {
        var before = shown(S).length;
        click($(".tg", grp));
        var opened = shown(S).map(function (tr) { return tr.dataset.name; });
        click($(".tg", grp));
        r.toggle = { name: grp.dataset.name, before: before, opened: opened, closed: shown(S).length,
          children: S.kids[grp._i].map(function (i) { return S.rows[i].dataset.name; }) };
      }
      var leaves = S.rows.filter(function (tr) { return tr.dataset.k !== undefined; });
      var q = leaves[Math.floor(leaves.length / 2)].dataset.name.split(".")[0];
      S.search.value = q; S.search.dispatchEvent(new Event("input"));
      r.search = { query: q, names: shown(S).map(function (tr) { return tr.dataset.name; }) };
      S.reset();
      // Click-through: the node of the layer with the most MACs → its row; its row → the node.
      var top = leaves.slice().sort(function (a, b) { return cellNum(b, "macs") - cellNum(a, "macs"); })[0];
      if (S.dia) {
        var g = S.nodes[top.dataset.name];
        r.click = { layer: top.dataset.name, node: !!g };
        if (g) {
          click($("text", g) || g);
          var hl = $("tr.hl", S.tbody);
          r.click.row = hl ? hl.dataset.name : null;
          r.click.row_visible = hl ? !hl.hidden : false;
          click($(".nm", top));
          var mark = $("g.hl", S.svg);
          r.click.node_marked = mark ? $("title", mark).textContent : null;
        }
        var paths = Object.keys(S.clusters);
        if (paths.length) {
          var p = paths[0];
          click($("polygon, path", S.clusters[p]));
          var gone = $$("g.node.gone", S.svg).map(function (n) { return $("title", n).textContent; });
          click($(".fold-ov rect", S.clusters[p]));
          r.cluster = { path: p, hidden: gone, hidden_after: $$("g.node.gone", S.svg).length };
        }
      } else {
        r.click = null;
        r.no_diagram = $("#" + S.p + "-nodia") ? $("#" + S.p + "-nodia").textContent : null;
      }
      // The memory timeline at the peak: what is alive sums to the Live column.
      var peak = leaves.slice().sort(function (a, b) { return cellNum(b, "live") - cellNum(a, "live") || Number(a.dataset.k) - Number(b.dataset.k); })[0];
      var al = S.alive(Number(peak.dataset.k));
      r.peak = { layer: peak.dataset.name, live: cellNum(peak, "live"), alive_sum: al.sum, alive: al.list.length };
      var rect = $("#" + S.p + "-memory").nextElementSibling.querySelector('.hits rect[data-k="' + peak.dataset.k + '"]');
      if (rect) {
        rect.dispatchEvent(new MouseEvent("mouseover", { bubbles: true, clientX: 10, clientY: 10 }));
        r.peak.panel = document.getElementById(S.p + "-alive").textContent;
        hideTip();
      }
      r.findings = $$("ol.findings a[data-goto]", S.sec).map(function (a) {
        var tr = document.getElementById(a.getAttribute("href").slice(1));
        return [a.dataset.goto, tr ? tr.dataset.name : null];
      });
      S.fold(S.foldSel.querySelector("option[selected]") ? S.foldSel.querySelector("option[selected]").value : "all");
      out.sections.push(r);
    });
    out.errors = errors;
    document.getElementById("selftest").textContent = JSON.stringify(out);
  }
  if (selftest) {
    try { runSelftest(); } catch (e) {
      errors.push("selftest: " + e.message + " " + e.stack);
      document.getElementById("selftest").textContent = JSON.stringify({ errors: errors });
    }
  }
})();
