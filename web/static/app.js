"use strict";
// The canvas page: write a digit or a whole number with mouse, touch or pen; the answer comes when a
// stroke ends. Strokes are kept as points in a fixed 560x280 drawing space, so the canvas can be any size
// on screen (and DPR x that in backing pixels, for crisp lines) while what is sent is always 560x280.

const WIDTH = 560; // drawing space, and the size of the image sent to the server (2:1: room for a number)
const HEIGHT = 280;
// The backing store's pixel budget: the API's limit (handler/decode.py MAX_PIXELS, 800x800), which a
// zoomed-in page or a dense screen could otherwise pass; past it the canvas is a little less crisp.
const MAX_PIXELS = 800 * 800;
const BRUSH = 18; // brush width in drawing-space pixels: a marker-like digit, as MNIST's were
const DEBOUNCE_MS = 250; // a pause this long after a stroke means "done for now": ask the model
const TIMEOUT_MS = 15000; // the server gives up after 5 s; this only catches a hung connection
// Below this top probability the page says "not sure" and names its two best guesses. The model's
// probabilities are calibrated (a temperature fitted after training; ECE in metrics.json), so an
// answer shown 80% sure is right about 4 times in 5: below that it is a guess, and the page says so.
const NOT_SURE_BELOW = 0.8;
const MAX_DIGITS = 16; // /read's limit (handler/segment.py MAX_DIGITS), and the longest number feedback takes
const NOT_A_DIGIT = "not_a_digit"; // the feedback that confirms "this is not a digit (not a number)"
// /read's 422 answers, in plain words (the reason says which).
const REASONS = {
  no_digit: "No digit drawn. Write a digit or a number, then press Predict.",
  two_lines: "That looks like more than one line of writing. Write the number on one line.",
  too_many_digits: `Too many digits: at most ${MAX_DIGITS} are read at once. Write a shorter number.`,
};

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const boxes = $("boxes");
const answerBox = $("answer");
const result = $("result");
const summary = $("summary");
const message = $("message");
const details = $("details");
const pieces = $("pieces");
const versionSelect = $("version");
const feedbackBox = $("feedback");
const meant = $("meant");
const meantHint = $("meant-hint");
const thanks = $("thanks");

const strokes = []; // finished and current strokes: arrays of {x, y, w} in drawing space
let current = null; // the stroke being drawn, and the pointer drawing it
let activePointer = null;
let debounceTimer = 0;
let inflight = null; // AbortController of the request whose answer we still want
let answered = null; // {image, predicted, pieces, version, ticket} of the answer on screen: what feedback is about

// ---- Drawing ---------------------------------------------------------------------------------

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
  boxes.replaceChildren(); // nor are its boxes
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

// The image sent: the canvas scaled to 560x280 (whatever the screen's pixel density), black on white.
const outgoing = document.createElement("canvas");
outgoing.width = WIDTH;
outgoing.height = HEIGHT;
function drawingAsDataURL() {
  const out = outgoing.getContext("2d");
  out.fillStyle = "#fff";
  out.fillRect(0, 0, WIDTH, HEIGHT);
  out.imageSmoothingEnabled = true;
  out.imageSmoothingQuality = "high";
  out.drawImage(canvas, 0, 0, WIDTH, HEIGHT);
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

// Everything goes to /read: one digit is answered as /predict would, a number digit by digit.
async function predict() {
  cancelPrediction();
  const controller = new AbortController();
  inflight = controller;
  const timer = setTimeout(() => controller.abort("timeout"), TIMEOUT_MS);
  setBusy(true);
  const version = versionSelect.value;
  const url = "/read" + (version ? "?version=" + encodeURIComponent(version) : "");
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
    if (response.ok && readable(answer)) showReading(answer, image);
    else if (response.status === 422 && answer && REASONS[answer.reason]) showError(422, null, answer.reason);
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

function readable(answer) {
  return (
    answer &&
    Array.isArray(answer.digits) &&
    answer.digits.length > 0 &&
    answer.digits.every((piece) => piece && (piece.digit === null || Number.isInteger(piece.digit)))
  );
}

function setBusy(busy) {
  answerBox.setAttribute("aria-busy", String(busy));
  document.body.classList.toggle("busy", busy);
}

// ---- Showing the answer ----------------------------------------------------------------------

const percent = (p) => Math.round(100 * (p || 0));

// What the page says of one piece: read and sure, read but not sure (its two best guesses), or not a digit
// (with the digit it looks most like, had it been one).
function judge(piece) {
  const p = (piece.probabilities || []).slice(0, 10);
  const ranked = [...p.keys()].sort((a, b) => p[b] - p[a]);
  if (piece.digit === null) return { kind: "not-digit", guess: ranked[0], p };
  const second = ranked.find((d) => d !== piece.digit);
  return { kind: (p[piece.digit] || 0) < NOT_SURE_BELOW ? "unsure" : "sure", digit: piece.digit, second, p };
}

function glyph(verdict) {
  const mark = document.createElement("span");
  mark.className = `glyph ${verdict.kind}`;
  mark.textContent = verdict.kind === "not-digit" ? "✗" : String(verdict.digit); // CSS adds "?" when unsure
  return mark;
}

function showReading(answer, image) {
  const verdicts = answer.digits.map(judge);
  const read = typeof answer.number === "string" && verdicts.every((v) => v.kind !== "not-digit");
  result.replaceChildren(...verdicts.map(glyph));
  result.classList.toggle("long", verdicts.length > 8);
  if (read) result.dataset.number = answer.number;
  else delete result.dataset.number;
  if (read) delete answerBox.dataset.state;
  else answerBox.dataset.state = "not-a-digit";
  const picked = versionSelect.value ? "" : " (the default)";
  summary.textContent = `${say(verdicts)} Answered by model version ${answer.version}${picked}.`;
  message.textContent = "";
  delete message.dataset.reason;
  pieces.replaceChildren(...answer.digits.map((piece, i) => pieceCard(piece, verdicts[i], i, verdicts.length)));
  showBoxes(answer.digits, verdicts);
  details.hidden = false;
  offerFeedback({
    image,
    predicted: read ? answer.number : null,
    pieces: verdicts.length,
    version: String(answer.version),
    ticket: answer.ticket,
  });
}

const listed = (items) => (items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`);

function say(verdicts) {
  if (verdicts.length === 1) {
    const [v] = verdicts;
    if (v.kind === "not-digit")
      return `That does not look like a digit. If it is one, it looks most like a ${v.guess} (${percent(v.p[v.guess])}%).`;
    if (v.kind === "unsure")
      return `Not sure: ${v.digit} (${percent(v.p[v.digit])}%) or ${v.second} (${percent(v.p[v.second])}%).`;
    return `${percent(v.p[v.digit])}% sure.`;
  }
  const places = (kind) => verdicts.flatMap((v, i) => (v.kind === kind ? [String(i + 1)] : []));
  const odd = places("not-digit");
  if (odd.length)
    return `Not read: ${odd.length > 1 ? "pieces" : "piece"} ${listed(odd)} of ${verdicts.length} ` +
      `${odd.length > 1 ? "do" : "does"} not look like a digit.`;
  const unsure = places("unsure");
  if (unsure.length) return `${verdicts.length} digits; not sure of digit ${listed(unsure)} (see each digit below).`;
  const sure = verdicts.map((v) => percent(v.p[v.digit]));
  const least = Math.min(...sure);
  return least === Math.max(...sure)
    ? `${verdicts.length} digits, each ${least}% sure.`
    : `${verdicts.length} digits, ${least}% sure or more each.`;
}

function pieceCard(piece, verdict, i, count) {
  const card = document.createElement("li");
  card.className = `piece ${verdict.kind}`;
  const head = document.createElement("h4");
  head.append(count > 1 ? `Digit ${i + 1} of ${count}: ` : "The digit: ", glyph(verdict));
  const sure = document.createElement("p");
  sure.className = "how-sure";
  const v = verdict;
  sure.textContent =
    v.kind === "not-digit" ? `Does not look like a digit; most like ${v.guess} (${percent(v.p[v.guess])}%).` :
    v.kind === "unsure" ? `Not sure: ${v.digit} (${percent(v.p[v.digit])}%) or ${v.second} (${percent(v.p[v.second])}%).` :
    `${percent(v.p[v.digit])}% sure.`;
  const bars = document.createElement("ol");
  bars.className = "bars";
  bars.setAttribute("aria-label", `How sure, for each digit${count > 1 ? `, digit ${i + 1}` : ""}`);
  showBars(bars, v.p, v.kind === "not-digit" ? v.guess : v.digit, v.kind === "unsure" ? v.second : null);
  card.append(head, sure, bars, preview(piece.input_28x28));
  return card;
}

function showBars(list, probabilities, winner, runnerUp) {
  for (let digit = 0; digit < 10; digit++) {
    const p = Math.max(0, Math.min(1, probabilities[digit] || 0));
    const shown = p >= 0.995 ? "100%" : p < 0.005 ? (p > 0 ? "<1%" : "0%") : `${Math.round(100 * p)}%`;
    const row = document.createElement("li");
    const label = document.createElement("span");
    label.className = "digit";
    label.textContent = String(digit);
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    // CSSOM (element.style) is allowed by the page's CSP; style attributes in HTML are not.
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = shown;
    row.append(label, track, value);
    row.classList.toggle("winner", digit === winner);
    row.classList.toggle("runner-up", digit === runnerUp);
    const role = digit === winner ? ", the answer" : digit === runnerUp ? ", the other guess" : "";
    row.setAttribute("aria-label", `${digit}: ${shown}${role}`);
    list.append(row);
  }
}

// The 28x28 the model read for this piece: 255 = ink, shown dark on white as it was drawn.
function preview(encoded) {
  const figure = document.createElement("figure");
  figure.className = "preview";
  const seen = document.createElement("canvas");
  seen.width = seen.height = 28;
  seen.setAttribute("role", "img");
  seen.setAttribute("aria-label", "The 28 by 28 pixel image the model read");
  const pctx = seen.getContext("2d");
  pctx.fillStyle = "#fff";
  pctx.fillRect(0, 0, 28, 28);
  const ink = encoded ? Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0)) : [];
  if (ink.length === 28 * 28) {
    const image = pctx.createImageData(28, 28);
    for (let i = 0; i < ink.length; i++) image.data.set([255 - ink[i], 255 - ink[i], 255 - ink[i], 255], 4 * i);
    pctx.putImageData(image, 0, 0);
  }
  const caption = document.createElement("figcaption");
  caption.textContent = "What the model saw: 28×28 pixels";
  figure.append(seen, caption);
  return figure;
}

// Each piece's box over the drawing: the answer's boxes are in the sent image's pixels (WIDTH x HEIGHT),
// placed in percent of the overlay, which covers the canvas exactly, so they follow any resize.
function showBoxes(digits, verdicts) {
  boxes.replaceChildren();
  digits.forEach((piece, i) => {
    const [x, y, w, h] = Array.isArray(piece.box) ? piece.box : [];
    if (![x, y, w, h].every(Number.isFinite)) return;
    const box = document.createElement("div");
    box.className = `box ${verdicts[i].kind}`;
    box.style.left = `${(100 * x) / WIDTH}%`;
    box.style.top = `${(100 * y) / HEIGHT}%`;
    box.style.width = `${(100 * w) / WIDTH}%`;
    box.style.height = `${(100 * h) / HEIGHT}%`;
    box.append(glyph(verdicts[i]));
    boxes.append(box);
  });
}

function resetAnswer(text) {
  result.replaceChildren();
  result.classList.remove("long");
  delete result.dataset.number;
  delete answerBox.dataset.state;
  summary.textContent = text;
  message.textContent = "";
  delete message.dataset.reason;
  details.hidden = true;
  pieces.replaceChildren();
  boxes.replaceChildren();
  offerFeedback(null);
}

// Plain words for each failure; the server's own message where it is the clearest thing to say.
function errorWords(status, detail, reason) {
  switch (status) {
    case 0:
      return "Cannot reach the web server. Check the connection, then try again.";
    case 422:
      return REASONS[reason] || REASONS.no_digit;
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

function showError(status, detail, reason) {
  resetAnswer("No answer.");
  message.textContent = errorWords(status, detail, reason);
  if (reason) message.dataset.reason = reason;
}

// ---- Feedback: was the answer right? -------------------------------------------------------------
// The drawing exactly as /read got it, the number the person meant (or "not a digit") and the answer go to
// /api/feedback with the answer's ticket; stored drawings become training data (docs/lifecycle.md).

function setFeedbackEnabled(enabled) {
  for (const control of feedbackBox.querySelectorAll("button, input")) control.disabled = !enabled;
}

function unflag() {
  meant.removeAttribute("aria-invalid");
  meantHint.classList.remove("invalid");
  meantHint.textContent = `Digits 0-9 only, at most ${MAX_DIGITS}.`;
}

function offerFeedback(about) {
  answered = about;
  feedbackBox.hidden = !about;
  thanks.textContent = "";
  setFeedbackEnabled(true);
  unflag(); // no complaint left from the last answer
  if (!about) return;
  const thing = about.pieces > 1 ? "number" : "digit";
  const read = about.predicted !== null;
  // Read: "Right", a typed number, or "Not a digit". Not read: "Right, not a digit" or the number it is.
  $("right").textContent = read ? "Right" : `Right, not a ${thing}`;
  $("right").setAttribute("aria-label", read ? `Right: I wrote ${about.predicted}` : `Right: it is not a ${thing}`);
  $("wrong-heading").textContent = read ? "Wrong? Type the number you wrote" : `It is a ${thing}? Type it`;
  $("not-digit").textContent = `Not a ${thing}`;
  $("not-digit").hidden = !read;
  meant.value = read ? about.predicted : "";
}

async function sendFeedback(number) {
  const about = answered;
  if (!about) return;
  setFeedbackEnabled(false);
  thanks.textContent = "Sending…";
  let status = 0;
  try {
    const response = await fetch("/api/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        image: about.image,
        number,
        predicted: about.predicted,
        version: about.version,
        ticket: about.ticket,
      }),
    });
    status = response.status;
  } catch {
    status = 0;
  }
  if (answered !== about) return; // a new drawing replaced the answer meanwhile
  if (status >= 200 && status < 300) {
    // One verdict per answer: the controls go, the thanks stays until the next drawing.
    feedbackBox.hidden = true;
    const right = number === about.predicted || (number === NOT_A_DIGIT && about.predicted === null);
    thanks.textContent = right ? "Thanks! Noted as right." :
      number === NOT_A_DIGIT ? `Thanks! Noted: not a ${about.pieces > 1 ? "number" : "digit"}.` :
      `Thanks! Noted: you wrote ${number}.`;
    answered = null;
  } else {
    setFeedbackEnabled(true);
    thanks.textContent =
      status === 0 ? "Could not reach the server: the feedback was not saved. Try again." :
      `The feedback was not saved (error ${status}). Try again in a moment.`;
  }
}

$("right").addEventListener("click", () => answered && sendFeedback(answered.predicted ?? NOT_A_DIGIT));
$("not-digit").addEventListener("click", () => sendFeedback(NOT_A_DIGIT));
meant.addEventListener("input", unflag); // the complaint was about what was there before
$("wrong").addEventListener("submit", (event) => {
  event.preventDefault(); // the page's script sends it; the form itself never navigates (CSP form-action 'none')
  const number = meant.value.replace(/\s+/g, "");
  if (!new RegExp(`^[0-9]{1,${MAX_DIGITS}}$`).test(number)) {
    meant.setAttribute("aria-invalid", "true");
    meantHint.classList.add("invalid");
    meantHint.textContent = `Type the number with the digits 0-9 only: 1 to ${MAX_DIGITS} of them.`;
    meant.focus();
    return;
  }
  sendFeedback(number);
});

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
  // In the version list and the number field, keys are theirs (Ctrl+Z undoes typing there, not a stroke).
  if (event.target instanceof HTMLSelectElement || event.target instanceof HTMLInputElement) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    clearAll();
  }
});

new ResizeObserver(fitCanvas).observe(canvas);
// Zooming or moving to another screen changes the pixel ratio without resizing the canvas.
function watchPixelRatio() {
  const query = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
  query.addEventListener("change", () => { fitCanvas(); watchPixelRatio(); }, { once: true });
}
watchPixelRatio();
fitCanvas();
loadVersions();
