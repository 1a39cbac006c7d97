// Showing the answer: the number read (or why not), how sure, each piece's card and box over the drawing.
// The answer on screen lives in the page itself; what feedback is about is handed to feedback.js.

import { HEIGHT, WIDTH } from "./drawing.js";
import { MAX_DIGITS, offerFeedback } from "./feedback.js";
import { chosenVersion } from "./versions.js";

// Below this top probability the page says "not sure" and names its two best guesses. The model's
// probabilities are calibrated (a temperature fitted after training; ECE in metrics.json), so an
// answer shown 80% sure is right about 4 times in 5: below that it is a guess, and the page says so.
const NOT_SURE_BELOW = 0.8;
// /read's 422 answers, in plain words (the reason says which).
const REASONS = {
  no_digit: "No digit drawn. Write a digit or a number, then press Predict.",
  two_lines: "That looks like more than one line of writing. Write the number on one line.",
  too_many_digits: `Too many digits: at most ${MAX_DIGITS} are read at once. Write a shorter number.`,
};

const boxes = document.getElementById("boxes");
const answerBox = document.getElementById("answer");
const result = document.getElementById("result");
const summary = document.getElementById("summary");
const message = document.getElementById("message");
const details = document.getElementById("details");
const pieces = document.getElementById("pieces");

// Whether a 422's reason is one the page has words for.
export const knownReason = (reason) => Boolean(REASONS[reason]);

const percent = (p) => Math.round(100 * (p || 0));

// What the page says of one piece: read and sure, read but not sure (its two best guesses), or not a digit
// (with the digit it looks most like, had it been one).
function judge(piece) {
  const p = (piece.probabilities || []).slice(0, 10);
  const ranked = [...p.keys()].sort((a, b) => p[b] - p[a]);
  if (piece.digit === null) return { kind: "not-digit", guess: ranked[0], p };
  const second = ranked.find((d) => d !== piece.digit);
  const kind = (p[piece.digit] || 0) < NOT_SURE_BELOW ? "unsure" : "sure";
  return { kind, digit: piece.digit, second, p, yours: piece.adapted === true };
}

function glyph(verdict) {
  const mark = document.createElement("span");
  mark.className = `glyph ${verdict.kind}`;
  mark.textContent = verdict.kind === "not-digit" ? "✗" : String(verdict.digit); // CSS adds "?" when unsure
  return mark;
}

export function showReading(answer, image) {
  const verdicts = answer.digits.map(judge);
  const read = typeof answer.number === "string" && verdicts.every((v) => v.kind !== "not-digit");
  result.replaceChildren(...verdicts.map(glyph));
  result.classList.toggle("long", verdicts.length > 8);
  if (read) result.dataset.number = answer.number;
  else delete result.dataset.number;
  if (read) delete answerBox.dataset.state;
  else answerBox.dataset.state = "not-a-digit";
  const picked = chosenVersion() ? "" : " (the default)";
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
    return `${v.yours ? `Read as your ${v.digit}: ` : ""}${percent(v.p[v.digit])}% sure.`;
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
  if (v.yours && v.kind !== "not-digit") sure.textContent = `Read as your ${v.digit}. ${sure.textContent}`;
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

export function clearBoxes() {
  boxes.replaceChildren();
}

export function resetAnswer(text) {
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

export function showError(status, detail, reason) {
  resetAnswer("No answer.");
  message.textContent = errorWords(status, detail, reason);
  if (reason) message.dataset.reason = reason;
}
