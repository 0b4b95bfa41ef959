// Small line charts on <canvas>, with no library: lineChart(canvas, series, options) draws each
// series ({color, values}) against the same x (one value per point, oldest first), with a y axis
// from 0 to a round number above the largest value and five grid intervals.
"use strict";

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) {  // fifths of these are round too
    if (v <= m * p) return m * p;
  }
  return 10 * p;
}

function formatTick(v) {
  if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k";
  if (v >= 10 || v === 0) return String(Math.round(v));
  return v.toFixed(v >= 1 ? 1 : 2);
}

// options: {xLabels: [first, last], format: value => tick label}
function lineChart(canvas, series, options) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400;
  const height = canvas.clientHeight || 180;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 56, right = 8, top = 8, bottom = 20;
  const format = options.format || formatTick;
  const w = width - left - right, h = height - top - bottom;
  let max = 0, n = 0;
  for (const s of series) {
    n = Math.max(n, s.values.length);
    for (const v of s.values) max = Math.max(max, v);
  }
  max = niceMax(max);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#667085";
  g.strokeStyle = "#e3e6eb";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  const steps = 5;
  for (let i = 0; i <= steps; i++) {
    const y = top + h - (h * i) / steps;
    g.beginPath();
    g.moveTo(left, Math.round(y) + 0.5);
    g.lineTo(left + w, Math.round(y) + 0.5);
    g.stroke();
    g.fillText(format((max * i) / steps), left - 4, y);
  }
  if (options.xLabels) {
    g.textBaseline = "top";
    g.textAlign = "left";
    g.fillText(options.xLabels[0], left, top + h + 4);
    g.textAlign = "right";
    g.fillText(options.xLabels[1], left + w, top + h + 4);
  }
  if (n < 2) return;
  for (const s of series) {
    g.strokeStyle = s.color;
    g.lineWidth = 1.5;
    g.beginPath();
    s.values.forEach((v, i) => {
      const x = left + (w * i) / (n - 1);
      const y = top + h - (h * v) / max;
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  }
}
