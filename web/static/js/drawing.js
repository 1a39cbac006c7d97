// The drawing: strokes are kept as points in a fixed 560x280 drawing space, so the canvas can be any size
// on screen (and DPR x that in backing pixels, for crisp lines) while what is sent is always 560x280.
// This module owns the strokes; the rest of the page learns of them through its exports.

export const WIDTH = 560; // drawing space, and the size of the image sent to the server (2:1: room for a number)
export const HEIGHT = 280;
// The backing store's pixel budget: the API's limit (handler/decode.py MAX_PIXELS, 800x800), which a
// zoomed-in page or a dense screen could otherwise pass; past it the canvas is a little less crisp.
const MAX_PIXELS = 800 * 800;
const BRUSH = 18; // brush width in drawing-space pixels: a marker-like digit, as MNIST's were
// What /read takes beside the image (handler/pen.py MAX_STROKES, MAX_POINTS): more strokes than that, and
// the drawing goes as its image alone; more points, and the points sent are thinned further apart.
const MAX_STROKES = 64;
const MAX_POINTS = 4096;
const STEP = 2; // drawing-space pixels between the points sent, at least: closer ones add nothing

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");

const strokes = []; // finished and current strokes: arrays of {x, y, w, t} in drawing space
let current = null; // the stroke being drawn, and the pointer drawing it
let activePointer = null;

// The strokes drawn so far, oldest first, as /read takes them beside the image (docs/api.md): each a list
// of [x, y, t], x and y in the sent image's pixels (the drawing space: the image is drawn at WIDTH x
// HEIGHT), t in ms since the first point. Points closer than STEP to the last one sent are left out (the
// first and last of a stroke stay), further apart while there would be more than MAX_POINTS. null when
// there are more than MAX_STROKES: the drawing then goes as its image alone.
export function drawnStrokes() {
  if (!strokes.length || strokes.length > MAX_STROKES) return null;
  const start = strokes[0][0].t;
  const round = (value) => Math.round(value * 10) / 10;
  for (let step = STEP; ; step *= 2) {
    const sent = strokes.map((stroke) =>
      thinned(stroke, step).map((p) => [round(p.x), round(p.y), round(p.t - start)]),
    );
    if (sent.reduce((total, stroke) => total + stroke.length, 0) <= MAX_POINTS) return sent;
  }
}

function thinned(stroke, step) {
  const kept = [stroke[0]];
  for (let i = 1; i < stroke.length; i++) {
    const last = kept[kept.length - 1];
    const far = Math.hypot(stroke[i].x - last.x, stroke[i].y - last.y) >= step;
    if (far || i === stroke.length - 1) kept.push(stroke[i]);
  }
  return kept;
}

export const hasStrokes = () => strokes.length > 0;
export const isDrawing = () => current !== null;

function fitCanvas() {
  // Backing store = on-screen size x devicePixelRatio: one canvas pixel per device pixel, within MAX_PIXELS.
  let width = Math.max(2, Math.round(canvas.clientWidth * (window.devicePixelRatio || 1)));
  width = Math.min(width, Math.floor(Math.sqrt((MAX_PIXELS * WIDTH) / HEIGHT)));
  const height = Math.round((width * HEIGHT) / WIDTH);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  redraw();
}

function redraw() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const k = canvas.width / WIDTH;
  ctx.setTransform(k, 0, 0, k, 0, 0);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = ctx.fillStyle = "#111";
  for (const stroke of strokes) {
    for (let i = 1; i < stroke.length; i++) drawPiece(stroke, i);
    drawEnd(stroke);
  }
}

const mid = (a, b) => ({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });

// A stroke is drawn as quadratic curves through the midpoints of its points (smooth, no corners
// where the pointer sampled), one piece per new point, so live drawing and redrawing match.
function drawPiece(stroke, i) {
  const before = stroke[i - 1];
  const start = i === 1 ? before : mid(stroke[i - 2], before);
  const end = mid(before, stroke[i]);
  ctx.lineWidth = before.w;
  ctx.beginPath();
  ctx.moveTo(start.x, start.y);
  ctx.quadraticCurveTo(before.x, before.y, end.x, end.y);
  ctx.stroke();
}

function drawEnd(stroke) {
  const last = stroke[stroke.length - 1];
  if (stroke.length === 1) {
    ctx.beginPath();
    ctx.arc(last.x, last.y, last.w / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  const from = mid(stroke[stroke.length - 2], last);
  ctx.lineWidth = last.w;
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(last.x, last.y);
  ctx.stroke();
}

function toDrawingSpace(event, previous) {
  const box = canvas.getBoundingClientRect();
  const x = ((event.clientX - box.left - canvas.clientLeft) / canvas.clientWidth) * WIDTH;
  const y = ((event.clientY - box.top - canvas.clientTop) / canvas.clientHeight) * HEIGHT;
  // A pen's pressure thickens the line a little, like ink; mouse and finger draw a steady line.
  let w = BRUSH;
  if (event.pointerType === "pen" && event.pressure > 0) w = BRUSH * (0.6 + 0.8 * event.pressure);
  if (previous) w = 0.7 * previous.w + 0.3 * w; // no sudden jumps in width
  // When the pointer was there (performance.now()'s clock), never before the point drawn before it.
  const t = Math.max(event.timeStamp || performance.now(), previous ? previous.t : 0);
  return { x, y, w, t };
}

// Draw with mouse, touch or pen: started() when a stroke begins (the drawing changes), ended() when it ends.
export function listenForStrokes({ started, ended }) {
  canvas.addEventListener("pointerdown", (event) => {
    if (current || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId); // keep the stroke when the pen leaves the canvas
    activePointer = event.pointerId;
    current = [toDrawingSpace(event, null)];
    strokes.push(current);
    started();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!current || event.pointerId !== activePointer) return;
    // Coalesced events: every sample a fast pen produced between frames, for smooth curves.
    const samples = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const sample of samples.length ? samples : [event]) {
      current.push(toDrawingSpace(sample, current[current.length - 1]));
      drawPiece(current, current.length - 1);
    }
  });

  function endStroke(event) {
    if (!current || event.pointerId !== activePointer) return;
    drawEnd(current);
    current = null;
    activePointer = null;
    ended();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
}

// Undo and Clear (the callers first make sure no stroke is being drawn: isDrawing()).
export function removeLastStroke() {
  strokes.pop();
  redraw();
}

export function removeAllStrokes() {
  strokes.length = 0;
  redraw();
}

// The image sent: the canvas scaled to 560x280 (whatever the screen's pixel density), black on white.
const outgoing = document.createElement("canvas");
outgoing.width = WIDTH;
outgoing.height = HEIGHT;
export function drawingAsDataURL() {
  const out = outgoing.getContext("2d");
  out.fillStyle = "#fff";
  out.fillRect(0, 0, WIDTH, HEIGHT);
  out.imageSmoothingEnabled = true;
  out.imageSmoothingQuality = "high";
  out.drawImage(canvas, 0, 0, WIDTH, HEIGHT);
  return outgoing.toDataURL("image/png");
}

// The canvas follows its size on screen and the screen's pixel ratio.
export function keepCanvasFitted() {
  new ResizeObserver(fitCanvas).observe(canvas);
  // Zooming or moving to another screen changes the pixel ratio without resizing the canvas.
  function watchPixelRatio() {
    const query = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
    query.addEventListener("change", () => { fitCanvas(); watchPixelRatio(); }, { once: true });
  }
  watchPixelRatio();
  fitCanvas();
}
