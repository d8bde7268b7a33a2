// The report's interactive parts: sortable tables, the confusion heat map (a canvas,
// so it stays fast at hundreds of concepts), and per-concept PR / ROC curves.
// Plain ES2017, no libraries, nothing fetched.
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';

  function sortTables() {
    var tables = document.querySelectorAll('table.sortable');
    Array.prototype.forEach.call(tables, function (table) {
      var heads = table.querySelectorAll('thead th');
      Array.prototype.forEach.call(heads, function (th, col) {
        th.tabIndex = 0;
        function sort() {
          var asc = th.getAttribute('aria-sort') !== 'ascending';
          Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
          th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
          var numeric = th.dataset.sort === 'num';
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          function value(row) {
            var cell = row.cells[col];
            if (!cell) return numeric ? -Infinity : '';
            if (numeric) {
              var v = parseFloat(cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent);
              return isNaN(v) ? -Infinity : v;
            }
            return cell.textContent.toLowerCase();
          }
          rows.sort(function (a, b) {
            var x = value(a), y = value(b);
            var c = x < y ? -1 : x > y ? 1 : 0;
            return asc ? c : -c;
          });
          rows.forEach(function (r) { body.appendChild(r); });
        }
        th.addEventListener('click', sort);
        th.addEventListener('keydown', function (e) { if (e.key === 'Enter') sort(); });
      });
    });
  }

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  // A unit-square line chart (both axes 0..1) as inline SVG.
  function unitChart(host, title, xLabel, yLabel, series, diagonal) {
    var W = 420, H = 360, L = 52, R = 12, T = 28, B = 44;
    var pw = W - L - R, ph = H - T - B;
    function sx(x) { return L + x * pw; }
    function sy(y) { return T + ph - y * ph; }
    host.textContent = '';
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'class': 'chart', role: 'img' }, host);
    el('title', {}, svg).textContent = title;
    el('text', { x: L, y: 18, 'class': 'chart-title' }, svg).textContent = title;
    for (var k = 0; k <= 5; k++) {
      var v = k / 5;
      el('line', { 'class': 'grid', x1: L, x2: L + pw, y1: sy(v), y2: sy(v) }, svg);
      el('line', { 'class': 'grid', x1: sx(v), x2: sx(v), y1: T, y2: T + ph }, svg);
      el('text', { 'class': 'tick', x: L - 6, y: sy(v) + 4, 'text-anchor': 'end' }, svg).textContent = v.toFixed(1);
      el('text', { 'class': 'tick', x: sx(v), y: T + ph + 16, 'text-anchor': 'middle' }, svg).textContent = v.toFixed(1);
    }
    el('rect', { 'class': 'frame', x: L, y: T, width: pw, height: ph }, svg);
    el('text', { 'class': 'axis', x: L + pw / 2, y: H - 8, 'text-anchor': 'middle' }, svg).textContent = xLabel;
    el('text', { 'class': 'axis', transform: 'translate(14 ' + (T + ph / 2) + ') rotate(-90)', 'text-anchor': 'middle' }, svg).textContent = yLabel;
    if (diagonal) el('line', { 'class': 'diagonal', x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1) }, svg);
    series.forEach(function (s) {
      if (!s.points || !s.points.length) return;
      var d = s.points.map(function (p, i) {
        var at = sx(p[0]).toFixed(1) + ',' + sy(p[1]).toFixed(1);
        if (!i) return 'M' + at;
        // Steps (scikit-learn's PR display): each recall interval at the precision of
        // its end, so the area under the steps is the average precision.
        if (s.steps) return 'L' + sx(s.points[i - 1][0]).toFixed(1) + ',' + sy(p[1]).toFixed(1) + 'L' + at;
        return 'L' + at;
      }).join('');
      var path = el('path', { 'class': 'line curve', d: d, stroke: s.color, 'stroke-width': s.width || 2 }, svg);
      el('title', {}, path).textContent = s.name;
      if (s.marker) {
        var c = el('circle', { cx: sx(s.marker[0]), cy: sy(s.marker[1]), r: 5, fill: s.color, 'class': 'marker' }, svg);
        el('title', {}, c).textContent = s.markerTitle || '';
      }
    });
    return svg;
  }

  function curves(data) {
    var select = document.getElementById('curve-concept');
    if (!select) return;
    data.concepts.forEach(function (name, i) {
      var o = document.createElement('option');
      o.value = String(i);
      o.textContent = name + ' (' + data.support[i] + ')';
      select.appendChild(o);
    });
    function fmt(v) { return v === null || v === undefined ? '–' : v.toFixed(3); }
    function draw() {
      var i = parseInt(select.value, 10) || 0;
      var c = data.curves[i] || {};
      var pr = document.getElementById('pr-chart');
      var roc = document.getElementById('roc-chart');
      if (c.pr) {
        unitChart(pr, 'Precision-recall: ' + data.concepts[i], 'recall', 'precision', [{
          name: data.concepts[i], color: '#1f77b4', points: c.pr, steps: true, marker: c.best,
          markerTitle: 'best F1 threshold'
        }], false);
      } else {
        pr.textContent = 'No precision-recall curve: no image has this concept.';
      }
      if (c.roc) {
        unitChart(roc, 'ROC: ' + data.concepts[i], 'false-positive rate', 'true-positive rate', [{
          name: data.concepts[i], color: '#d62728', points: c.roc
        }], true);
      } else {
        roc.textContent = 'No ROC curve: it needs images with and without this concept.';
      }
      document.getElementById('curve-summary').textContent =
        'AP ' + fmt(c.ap) + ' · ROC AUC ' + fmt(c.auc) + ' · support ' + data.support[i];
    }
    select.addEventListener('change', draw);
    var api = { draw: draw, select: select };
    var table = document.getElementById('concept-table');
    if (table) {
      table.tBodies[0].addEventListener('click', function (e) {
        var row = e.target.closest('tr[data-concept]');
        if (!row) return;
        select.value = row.dataset.concept;
        draw();
        document.getElementById('curves').scrollIntoView({ behavior: 'smooth' });
      });
    }
    draw();
    return api;
  }

  // `report.html#check` draws every view once — each heat-map order and scale, each
  // concept's curves, each sort — so a headless browser test meets every code path.
  function selfCheck(heat, curveApi) {
    var draws = 0;
    if (heat) {
      Array.prototype.forEach.call(heat.orderSel.options, function (o) {
        Array.prototype.forEach.call(heat.normSel.options, function (n) {
          heat.orderSel.value = o.value;
          heat.normSel.value = n.value;
          heat.draw();
          draws++;
        });
      });
      heat.orderSel.selectedIndex = 0;
      heat.normSel.selectedIndex = 0;
      heat.draw();
    }
    if (curveApi) {
      Array.prototype.forEach.call(curveApi.select.options, function (o) {
        curveApi.select.value = o.value;
        curveApi.draw();
        draws++;
      });
      curveApi.select.selectedIndex = 0;
      curveApi.draw();
    }
    Array.prototype.forEach.call(document.querySelectorAll('table.sortable thead th'), function (th) {
      th.click();
      th.click();
      draws++;
    });
    document.body.setAttribute('data-report-checked', String(draws));
  }

  function confusionOrder(data, how, M) {
    var n = M.length;
    var idx = [];
    for (var i = 0; i < n; i++) idx.push(i);
    if (how === 'name') {
      idx.sort(function (a, b) { return data.concepts[a].localeCompare(data.concepts[b]); });
    } else if (how === 'support') {
      idx.sort(function (a, b) { return data.support[b] - data.support[a] || a - b; });
    } else if (how === 'recall') {
      idx.sort(function (a, b) { return data.recall[a] - data.recall[b] || a - b; });
    } else if (how === 'confused') {
      // Greedy chain: each next concept is the one most confused with the last,
      // so groups of confusable concepts sit together.
      var off = function (a, b) { return a === b ? 0 : M[a][b] + M[b][a]; };
      var used = new Array(n).fill(false), out = [];
      var mass = idx.map(function (a) {
        var s = 0;
        for (var b = 0; b < n; b++) s += off(a, b);
        return s;
      });
      while (out.length < n) {
        var start = -1;
        for (var a = 0; a < n; a++) if (!used[a] && (start < 0 || mass[a] > mass[start])) start = a;
        var cur = start;
        while (cur >= 0) {
          used[cur] = true;
          out.push(cur);
          var next = -1, best = 0;
          for (var b = 0; b < n; b++) {
            if (!used[b] && off(cur, b) > best) { best = off(cur, b); next = b; }
          }
          cur = next;
        }
      }
      idx = out;
    }
    return idx;
  }

  function confusion(data) {
    var M = data.confusion;
    var canvas = document.getElementById('confusion-canvas');
    if (!M || !canvas) return;
    var n = M.length;
    var orderSel = document.getElementById('confusion-order');
    var normSel = document.getElementById('confusion-norm');
    var tip = document.getElementById('confusion-tip');
    var rowSum = M.map(function (r) { return r.reduce(function (a, b) { return a + b; }, 0); });
    var state = {};
    function draw() {
      var order = confusionOrder(data, orderSel.value, M);
      var byRow = normSel.value === 'row';
      var cell = Math.max(2, Math.min(28, Math.floor(760 / Math.max(n, 1))));
      var ctx = canvas.getContext('2d');
      ctx.font = '11px sans-serif';
      var label = 0;
      if (cell >= 10) {
        data.concepts.forEach(function (c) { label = Math.max(label, ctx.measureText(c).width); });
        label = Math.min(180, Math.ceil(label) + 8);
      }
      var size = label + n * cell;
      var dpr = window.devicePixelRatio || 1;
      canvas.width = Math.ceil(size * dpr);
      canvas.height = Math.ceil(size * dpr);
      canvas.style.width = size + 'px';
      canvas.style.height = size + 'px';
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.font = '11px sans-serif';
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, size, size);
      var max = 0;
      for (var i = 0; i < n; i++) {
        for (var j = 0; j < n; j++) {
          var v = byRow ? (rowSum[i] ? M[i][j] / rowSum[i] : 0) : M[i][j];
          if (v > max) max = v;
        }
      }
      for (var r = 0; r < n; r++) {
        for (var c = 0; c < n; c++) {
          var ti = order[r], pj = order[c];
          var value = byRow ? (rowSum[ti] ? M[ti][pj] / rowSum[ti] : 0) : M[ti][pj];
          if (value <= 0 || max <= 0) continue;
          // A square-root scale keeps single confusions visible next to large diagonals.
          var a = Math.sqrt(value / max);
          ctx.fillStyle = ti === pj ? 'rgba(31,119,180,' + a + ')' : 'rgba(214,39,40,' + a + ')';
          ctx.fillRect(label + c * cell, label + r * cell, cell, cell);
        }
      }
      if (cell >= 6) {
        ctx.strokeStyle = '#eee';
        ctx.lineWidth = 1;
        for (var k = 0; k <= n; k++) {
          ctx.beginPath(); ctx.moveTo(label, label + k * cell + 0.5); ctx.lineTo(size, label + k * cell + 0.5); ctx.stroke();
          ctx.beginPath(); ctx.moveTo(label + k * cell + 0.5, label); ctx.lineTo(label + k * cell + 0.5, size); ctx.stroke();
        }
      }
      if (label) {
        ctx.fillStyle = '#333';
        ctx.textBaseline = 'middle';
        order.forEach(function (ci, k) {
          var name = data.concepts[ci];
          ctx.textAlign = 'right';
          ctx.fillText(name, label - 4, label + k * cell + cell / 2, label - 6);
          ctx.save();
          ctx.translate(label + k * cell + cell / 2, label - 4);
          ctx.rotate(-Math.PI / 2);
          ctx.textAlign = 'left';
          ctx.fillText(name, 0, 0, label - 6);
          ctx.restore();
        });
      }
      state = { order: order, cell: cell, label: label };
      canvas.dataset.concepts = String(n);
      canvas.dataset.order = orderSel.value;
    }
    canvas.addEventListener('mousemove', function (e) {
      var rect = canvas.getBoundingClientRect();
      var x = e.clientX - rect.left - state.label, y = e.clientY - rect.top - state.label;
      var c = Math.floor(x / state.cell), r = Math.floor(y / state.cell);
      if (x < 0 || y < 0 || r >= n || c >= n) { tip.hidden = true; return; }
      var ti = state.order[r], pj = state.order[c];
      var share = rowSum[ti] ? (100 * M[ti][pj] / rowSum[ti]).toFixed(1) + '%' : '–';
      tip.textContent = 'true ' + data.concepts[ti] + ' → predicted ' + data.concepts[pj] +
        ': ' + M[ti][pj] + ' of ' + rowSum[ti] + ' (' + share + ')';
      tip.style.left = (e.clientX - rect.left + 14) + 'px';
      tip.style.top = (e.clientY - rect.top + 14) + 'px';
      tip.hidden = false;
    });
    canvas.addEventListener('mouseleave', function () { tip.hidden = true; });
    orderSel.addEventListener('change', draw);
    normSel.addEventListener('change', draw);
    draw();
    return { draw: draw, orderSel: orderSel, normSel: normSel };
  }

  sortTables();
  var node = document.getElementById('report-data');
  var heat = null, curveApi = null;
  if (node) {
    var data = JSON.parse(node.textContent);
    heat = confusion(data) || null;
    curveApi = curves(data) || null;
  }
  if (location.hash === '#check') selfCheck(heat, curveApi);
  // Set last: the browser test reads it from the DOM as "every part ran".
  document.body.setAttribute('data-report-ready', window.reportErrors.length ? 'errors' : 'yes');
})();
