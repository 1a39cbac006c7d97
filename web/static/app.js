"use strict";
// The canvas page: draw with mouse, touch or pen; the answer comes when a stroke ends.
// Strokes are kept as points in a fixed 280x280 drawing space, so the canvas can be any size on
// screen (and DPR x that in backing pixels, for crisp lines) while what is sent is always 280x280.

const SIZE = 280; // drawing space, and the side of the image sent to the server
const MAX_SIDE = 1024; // the API's pixel limit, 1024x1024 (docs/limits.md)
const BRUSH = 18; // brush width in drawing-space pixels: a marker-like digit, as MNIST's were
const DEBOUNCE_MS = 250; // a pause this long after a stroke means "done for now": ask the model
const TIMEOUT_MS = 15000; // the server gives up after 5 s; this only catches a hung connection
// Below this top probability the page says "not sure" and names its two best guesses. The model's
// probabilities are calibrated (a temperature fitted after training; ECE in metrics.json), so an
// answer shown 80% sure is right about 4 times in 5: below that it is a guess, and the page says so.
const NOT_SURE_BELOW = 0.8;
const NOT_A_DIGIT = "not_a_digit"; // /predict's 422 reason, and the feedback label that confirms it

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const answerBox = $("answer");
const result = $("result");
const summary = $("summary");
const message = $("message");
const details = $("details");
const bars = $("bars");
const preview = $("preview");
const versionSelect = $("version");
const feedbackBox = $("feedback");
const thanks = $("thanks");

const strokes = []; // finished and current strokes: arrays of {x, y, w} in drawing space
let current = null; // the stroke being drawn, and the pointer drawing it
let activePointer = null;
let debounceTimer = 0;
let inflight = null; // AbortController of the request whose answer we still want
let answered = null; // {image, predicted, version, ticket} of the answer on screen: what feedback is about

// ---- Drawing ---------------------------------------------------------------------------------

function fitCanvas() {
  // Backing store = on-screen size x devicePixelRatio: one canvas pixel per device pixel, up to the API's
  // 1024x1024 pixels (handler/preprocess.py MAX_PIXELS; a zoomed-in page can ask for more).
  const side = Math.max(1, Math.min(MAX_SIDE, Math.round(canvas.clientWidth * (window.devicePixelRatio || 1))));
  if (canvas.width !== side) {
    canvas.width = side;
    canvas.height = side;
  }
  redraw();
}

function redraw() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const k = canvas.width / SIZE;
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
  const x = ((event.clientX - box.left - canvas.clientLeft) / canvas.clientWidth) * SIZE;
  const y = ((event.clientY - box.top - canvas.clientTop) / canvas.clientHeight) * SIZE;
  // A pen's pressure thickens the line a little, like ink; mouse and finger draw a steady line.
  let w = BRUSH;
  if (event.pointerType === "pen" && event.pressure > 0) w = BRUSH * (0.6 + 0.8 * event.pressure);
  if (previous) w = 0.7 * previous.w + 0.3 * w; // no sudden jumps in width
  return { x, y, w };
}

canvas.addEventListener("pointerdown", (event) => {
  if (current || (event.pointerType === "mouse" && event.button !== 0)) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId); // keep the stroke when the pen leaves the canvas
  activePointer = event.pointerId;
  current = [toDrawingSpace(event, null)];
  strokes.push(current);
  cancelPrediction();
  offerFeedback(null); // the drawing changes: the answer on screen is no longer about it
  setBusy(true); // an answer is coming: screen readers wait for it instead of the stale one
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
  schedulePrediction();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function undo() {
  if (current) return;
  cancelPrediction();
  strokes.pop();
  redraw();
  if (strokes.length) predict();
  else resetAnswer("Nothing drawn yet.");
}

function clearAll() {
  if (current) return;
  cancelPrediction();
  strokes.length = 0;
  redraw();
  resetAnswer("Nothing drawn yet.");
}

// The image sent: the canvas scaled to 280x280 (whatever the screen's pixel density), black on white.
const outgoing = document.createElement("canvas");
outgoing.width = outgoing.height = SIZE;
function drawingAsDataURL() {
  const out = outgoing.getContext("2d");
  out.fillStyle = "#fff";
  out.fillRect(0, 0, SIZE, SIZE);
  out.imageSmoothingEnabled = true;
  out.imageSmoothingQuality = "high";
  out.drawImage(canvas, 0, 0, SIZE, SIZE);
  return outgoing.toDataURL("image/png");
}

// ---- Asking the model ------------------------------------------------------------------------

function schedulePrediction() {
  clearTimeout(debounceTimer);
  setBusy(true);
  debounceTimer = setTimeout(predict, DEBOUNCE_MS);
}

function cancelPrediction() {
  clearTimeout(debounceTimer);
  if (inflight) inflight.abort("stale");
  inflight = null;
  setBusy(false);
}

async function predict() {
  cancelPrediction();
  const controller = new AbortController();
  inflight = controller;
  const timer = setTimeout(() => controller.abort("timeout"), TIMEOUT_MS);
  setBusy(true);
  const version = versionSelect.value;
  const url = "/predict" + (version ? "?version=" + encodeURIComponent(version) : "");
  const image = drawingAsDataURL();
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "text/plain" },
      body: image,
      signal: controller.signal,
    });
    const answer = await response.json().catch(() => null);
    if (controller !== inflight) return; // a newer drawing replaced this request
    if (response.ok && answer && Number.isInteger(answer.digit)) showAnswer(answer, image);
    else if (response.status === 422 && answer && answer.reason === "not_a_digit" && Number.isInteger(answer.digit))
      showNotADigit(answer, image);
    else showError(response.status, answer && answer.error);
  } catch (error) {
    if (controller !== inflight) return;
    if (controller.signal.reason === "timeout") showError(504, null);
    else showError(0, null);
  } finally {
    clearTimeout(timer);
    if (controller === inflight) {
      inflight = null;
      setBusy(false);
    }
  }
}

function setBusy(busy) {
  answerBox.setAttribute("aria-busy", String(busy));
  document.body.classList.toggle("busy", busy);
}

// ---- Showing the answer ----------------------------------------------------------------------

function showAnswer(answer, image) {
  const probabilities = answer.probabilities || [];
  const percent = (digit) => Math.round(100 * (probabilities[digit] || 0));
  const [best, second] = [...probabilities.keys()].sort((a, b) => probabilities[b] - probabilities[a]);
  const unsure = (probabilities[answer.digit] || 0) < NOT_SURE_BELOW;
  result.textContent = String(answer.digit);
  result.dataset.digit = String(answer.digit);
  result.classList.remove("not-digit");
  delete answerBox.dataset.state;
  result.classList.toggle("unsure", unsure); // shown as "4?" (CSS), the text stays the digit
  const picked = versionSelect.value ? "" : " (the default)";
  const sure = unsure
    ? `Not sure: ${best} (${percent(best)}%) or ${second} (${percent(second)}%).`
    : `${percent(answer.digit)}% sure.`;
  summary.textContent = `${sure} Answered by model version ${answer.version}${picked}.`;
  message.textContent = "";
  showBars(probabilities, answer.digit, unsure ? second : null);
  showPreview(answer.input_28x28);
  details.hidden = false;
  offerFeedback({ image, predicted: answer.digit, version: String(answer.version), ticket: answer.ticket });
}

// The model's 11th output said "not a digit" (a letter, a shape, a scribble): say so, and still show its
// best guess had it been a digit, which the person can confirm or correct below.
function showNotADigit(answer, image) {
  const probabilities = answer.probabilities || [];
  const guess = answer.digit;
  result.textContent = "✗";
  delete result.dataset.digit;
  result.classList.remove("unsure");
  result.classList.add("not-digit");
  answerBox.dataset.state = "not-a-digit";
  const picked = versionSelect.value ? "" : " (the default)";
  summary.textContent =
    `That does not look like a digit. If it is one, it looks most like a ${guess} ` +
    `(${Math.round(100 * (probabilities[guess] || 0))}%). Answered by model version ${answer.version}${picked}.`;
  message.textContent = "";
  showBars(probabilities, guess, null);
  showPreview(answer.input_28x28);
  details.hidden = false;
  offerFeedback({ image, predicted: NOT_A_DIGIT, guess, version: String(answer.version), ticket: answer.ticket });
}

function buildBars() {
  for (let digit = 0; digit < 10; digit++) {
    const row = document.createElement("li");
    const label = document.createElement("span");
    label.className = "digit";
    label.textContent = String(digit);
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    row.append(label, track, value);
    bars.append(row);
  }
}

function showBars(probabilities, winner, runnerUp) {
  [...bars.children].forEach((row, digit) => {
    const p = Math.max(0, Math.min(1, probabilities[digit] || 0));
    const percent = p >= 0.995 ? "100%" : p < 0.005 ? (p > 0 ? "<1%" : "0%") : `${Math.round(100 * p)}%`;
    // CSSOM (element.style) is allowed by the page's CSP; style attributes in HTML are not.
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".value").textContent = percent;
    row.classList.toggle("winner", digit === winner);
    row.classList.toggle("runner-up", digit === runnerUp);
    const role = digit === winner ? ", the answer" : digit === runnerUp ? ", the other guess" : "";
    row.setAttribute("aria-label", `${digit}: ${percent}${role}`);
  });
}

function showPreview(encoded) {
  const pctx = preview.getContext("2d");
  pctx.fillStyle = "#fff";
  pctx.fillRect(0, 0, 28, 28);
  if (!encoded) return;
  const ink = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  if (ink.length !== 28 * 28) return;
  // 255 = ink: shown dark on white, as it was drawn.
  const image = pctx.createImageData(28, 28);
  for (let i = 0; i < ink.length; i++) {
    const shade = 255 - ink[i];
    image.data.set([shade, shade, shade, 255], 4 * i);
  }
  pctx.putImageData(image, 0, 0);
}

function resetAnswer(text) {
  result.textContent = "";
  delete result.dataset.digit;
  delete answerBox.dataset.state;
  result.classList.remove("unsure", "not-digit");
  summary.textContent = text;
  message.textContent = "";
  details.hidden = true;
  offerFeedback(null);
}

// Plain words for each failure; the server's own message where it is the clearest thing to say.
function errorWords(status, detail) {
  switch (status) {
    case 0:
      return "Cannot reach the web server. Check the connection, then try again.";
    case 422:
      return "No digit drawn. Draw a digit from 0 to 9, then press Predict.";
    case 503:
      return "The model server is down, so there is no answer. Try again in a moment.";
    case 504:
      return "The model server took too long to answer. Try again.";
    case 404:
      return detail ? `Not available: ${detail}. Pick another version.` : "Not found.";
    case 413:
      return "The drawing is too large to send.";
    default:
      return `Something went wrong (error ${status})` + (detail ? `: ${detail}.` : ". Try again.");
  }
}

function showError(status, detail) {
  resetAnswer("No answer.");
  message.textContent = errorWords(status, detail);
}

// ---- Feedback: was the answer right? -------------------------------------------------------------
// The drawing exactly as /predict got it, the digit the person meant and the answer, go to /api/feedback;
// stored drawings become training data for the next model version (docs/lifecycle.md).

function buildDigitButtons() {
  const digits = $("digits");
  for (let digit = 0; digit < 10; digit++) {
    const button = document.createElement("button");
    button.type = "button";
    button.id = `drew-${digit}`;
    button.textContent = String(digit);
    button.setAttribute("aria-label", `I drew a ${digit}`);
    button.addEventListener("click", () => sendFeedback(digit));
    digits.append(button);
  }
}

function offerFeedback(about) {
  answered = about;
  feedbackBox.hidden = !about;
  thanks.textContent = "";
  for (const button of feedbackBox.querySelectorAll("button")) button.disabled = false;
  if (!about) return;
  const rejected = about.predicted === NOT_A_DIGIT;
  // Rejected: "Right, not a digit" or "It is a digit: tap it". Read as a digit: "Right", a digit, or "Not a digit".
  $("right").textContent = rejected ? "Right, not a digit" : "Right";
  $("right").setAttribute("aria-label", rejected ? "Right: it is not a digit" : `Right: I drew a ${about.predicted}`);
  $("wrong-heading").textContent = rejected ? "It is a digit? Tap which" : "Wrong? Tap the digit you drew";
  $("not-digit").hidden = rejected;
}

async function sendFeedback(label) {
  const about = answered;
  if (!about) return;
  for (const button of feedbackBox.querySelectorAll("button")) button.disabled = true;
  thanks.textContent = "Sending…";
  let status = 0;
  try {
    const response = await fetch("/api/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image: about.image, label, predicted: about.predicted, version: about.version, ticket: about.ticket }),
    });
    status = response.status;
  } catch {
    status = 0;
  }
  if (answered !== about) return; // a new drawing replaced the answer meanwhile
  if (status >= 200 && status < 300) {
    // One verdict per answer: the buttons go, the thanks stays until the next drawing.
    feedbackBox.hidden = true;
    thanks.textContent =
      label === about.predicted ? "Thanks! Noted as right." :
      label === NOT_A_DIGIT ? "Thanks! Noted: not a digit." : `Thanks! Noted: you drew a ${label}.`;
    answered = null;
  } else {
    for (const button of feedbackBox.querySelectorAll("button")) button.disabled = false;
    thanks.textContent =
      status === 0 ? "Could not reach the server: the feedback was not saved. Try again." :
      `The feedback was not saved (error ${status}). Try again in a moment.`;
  }
}

$("right").addEventListener("click", () => answered && sendFeedback(answered.predicted));
$("not-digit").addEventListener("click", () => sendFeedback(NOT_A_DIGIT));

// ---- Versions --------------------------------------------------------------------------------

async function loadVersions() {
  try {
    const response = await fetch("/api/models");
    if (!response.ok) throw new Error(String(response.status));
    const models = await response.json();
    versionSelect.replaceChildren();
    const fallback = new Option(models.default ? `default (${models.default})` : "default", "");
    versionSelect.append(fallback);
    for (const version of models.versions || []) versionSelect.append(new Option(version, version));
    versionSelect.disabled = (models.versions || []).length === 0;
  } catch {
    versionSelect.title = "The list of model versions could not be loaded; the default answers.";
  }
}

versionSelect.addEventListener("change", () => {
  if (strokes.length) predict();
});

// ---- Buttons and keys ------------------------------------------------------------------------

$("predict").addEventListener("click", predict);
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearAll);
document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLSelectElement) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    clearAll();
  }
});

buildBars();
buildDigitButtons();
new ResizeObserver(fitCanvas).observe(canvas);
// Zooming or moving to another screen changes the pixel ratio without resizing the canvas.
function watchPixelRatio() {
  const query = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
  query.addEventListener("change", () => { fitCanvas(); watchPixelRatio(); }, { once: true });
}
watchPixelRatio();
fitCanvas();
loadVersions();
