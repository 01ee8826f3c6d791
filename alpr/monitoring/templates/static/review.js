// Draw the box of a missed plate on the reading's image: a drag on the image fills the next empty row of the
// "missed plates" table with the box in pixels of the image (the overlay's viewBox is the image's size).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const figure = document.querySelector(".figure.drawable");
  if (!figure) return;
  const svg = figure.querySelector("svg.overlay");
  const drawn = svg.querySelector("rect.drawn");
  const width = Number(figure.dataset.width), height = Number(figure.dataset.height);
  let start = null;

  const toImage = (event) => {
    const r = svg.getBoundingClientRect();
    const x = Math.min(Math.max((event.clientX - r.left) * width / r.width, 0), width);
    const y = Math.min(Math.max((event.clientY - r.top) * height / r.height, 0), height);
    return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  };
  const box = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
  const show = ([x1, y1, x2, y2]) => {
    drawn.setAttribute("x", x1); drawn.setAttribute("y", y1);
    drawn.setAttribute("width", x2 - x1); drawn.setAttribute("height", y2 - y1);
  };
  const emptyRow = () => Array.from(document.querySelectorAll("tr.missed-row")).find(
    (row) => Array.from(row.querySelectorAll("input")).every((input) => input.value === ""));

  svg.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    start = toImage(event);
    svg.setPointerCapture(event.pointerId);
    show([start[0], start[1], start[0], start[1]]);
  });
  svg.addEventListener("pointermove", (event) => { if (start) show(box(start, toImage(event))); });
  svg.addEventListener("pointerup", (event) => {
    if (!start) return;
    const b = box(start, toImage(event));
    start = null;
    if (b[2] - b[0] < 2 || b[3] - b[1] < 2) return;  // a click, not a box
    const row = emptyRow();
    if (!row) return;
    const j = row.dataset.row;
    ["x1", "y1", "x2", "y2"].forEach((k, i) => { row.querySelector(`[name="missed-${j}-${k}"]`).value = b[i]; });
    row.querySelector(`[name="missed-${j}-text"]`).focus();
  });
});
