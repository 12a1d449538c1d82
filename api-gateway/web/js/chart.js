// Inline SVG charts drawn by hand: the 30-day activity bars and the completion ring.

import { h, svg } from "./ui.js";

const WIDTH = 320;
const HEIGHT = 132;
const PAD = { top: 10, right: 6, bottom: 20, left: 24 };

function niceMax(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (factor * step >= value) return factor * step;
  }
  return value;
}

function dayLabel(iso) {
  const [year, month, day] = iso.slice(0, 10).split("-").map(Number);
  return new Date(year, month - 1, day).toLocaleDateString(undefined, {
    day: "numeric",
    month: "short",
  });
}

/** Created and completed per day, as paired bars, with a table for screen readers. */
export function activityChart(days) {
  const series = Array.isArray(days) ? days : [];
  const created = series.reduce((sum, day) => sum + (day.created || 0), 0);
  const completed = series.reduce((sum, day) => sum + (day.completed || 0), 0);
  const top = niceMax(Math.max(1, ...series.map((d) => Math.max(d.created || 0, d.completed || 0))));
  const innerWidth = WIDTH - PAD.left - PAD.right;
  const innerHeight = HEIGHT - PAD.top - PAD.bottom;
  const slot = innerWidth / Math.max(1, series.length);
  const bar = Math.max(1.5, Math.min(6, slot / 2 - 0.75));
  const y = (value) => PAD.top + innerHeight - (value / top) * innerHeight;

  const grid = [0, 0.5, 1].map((fraction) => {
    const value = Math.round(top * fraction);
    return svg(
      "g",
      { class: "chart-grid" },
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value) }),
      svg("text", { x: PAD.left - 6, y: y(value) + 3.5, "text-anchor": "end" }, value),
    );
  });

  const bars = series.map((day, index) => {
    const x = PAD.left + index * slot + slot / 2;
    const label = `${dayLabel(day.date)}: ${day.created || 0} created, ${day.completed || 0} completed`;
    const height = (value) => Math.max(value ? 1.5 : 0, (value / top) * innerHeight);
    return svg(
      "g",
      { class: "chart-day" },
      svg("title", {}, label),
      svg("rect", {
        class: "chart-hit",
        x: x - slot / 2,
        y: PAD.top,
        width: slot,
        height: innerHeight,
      }),
      svg("rect", {
        class: "bar-created",
        x: x - bar - 0.5,
        y: PAD.top + innerHeight - height(day.created || 0),
        width: bar,
        height: height(day.created || 0),
        rx: 1.5,
      }),
      svg("rect", {
        class: "bar-completed",
        x: x + 0.5,
        y: PAD.top + innerHeight - height(day.completed || 0),
        width: bar,
        height: height(day.completed || 0),
        rx: 1.5,
      }),
    );
  });

  const ticks = series
    .map((day, index) => ({ day, index }))
    .filter(({ index }) => index === 0 || index === series.length - 1 || index % 7 === 0)
    .filter(({ index }) => index === series.length - 1 || series.length - 1 - index >= 4)
    .map(({ day, index }) =>
      svg(
        "text",
        {
          class: "chart-tick",
          x: PAD.left + index * slot + slot / 2,
          y: HEIGHT - 5,
          "text-anchor": index === 0 ? "start" : index === series.length - 1 ? "end" : "middle",
        },
        index === series.length - 1 ? "Today" : dayLabel(day.date),
      ),
    );

  const summary = `Last ${series.length} days: ${created} created, ${completed} completed.`;
  const chart = svg(
    "svg",
    {
      class: "activity-chart",
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "img",
      "aria-label": summary,
      preserveAspectRatio: "xMidYMid meet",
    },
    grid,
    bars,
    ticks,
  );
  const table = h(
    "table",
    { class: "visually-hidden" },
    h("caption", {}, "Tasks created and completed per day"),
    h("tr", {}, h("th", {}, "Day"), h("th", {}, "Created"), h("th", {}, "Completed")),
    series.map((day) =>
      h(
        "tr",
        {},
        h("td", {}, dayLabel(day.date)),
        h("td", {}, day.created || 0),
        h("td", {}, day.completed || 0),
      ),
    ),
  );
  const quiet = series.slice(0, -1).every((day) => !day.created && !day.completed);
  return h(
    "figure",
    { class: "chart" },
    h(
      "figcaption",
      { class: "chart-legend" },
      h("span", { class: "legend legend-created" }, `${created} created`),
      h("span", { class: "legend legend-completed" }, `${completed} completed`),
    ),
    chart,
    quiet && created + completed ? h("p", { class: "chart-note" }, "All of it today: the history builds up day by day.") : null,
    table,
  );
}

/** A ring showing a percentage, with the figure in the middle. */
export function completionRing(percentage) {
  const value = Math.max(0, Math.min(100, Number(percentage) || 0));
  const radius = 26;
  const circumference = 2 * Math.PI * radius;
  const text = `${Math.round(value)}%`;
  return svg(
    "svg",
    { class: "ring", viewBox: "0 0 64 64", width: 64, height: 64, role: "img", "aria-label": `${text} done` },
    svg("circle", { class: "ring-track", cx: 32, cy: 32, r: radius }),
    value <= 0
      ? null
      : svg("circle", {
      class: "ring-value",
      cx: 32,
      cy: 32,
      r: radius,
      "stroke-dasharray": `${(value / 100) * circumference} ${circumference}`,
      transform: "rotate(-90 32 32)",
    }),
    svg("text", { x: 32, y: 36.5, "text-anchor": "middle", class: "ring-text" }, text),
  );
}
