// Asking the model: a pause after a stroke asks /read for the drawing; a newer drawing cancels the
// question still on its way. This module owns the pending timer and request.

import { drawingAsDataURL, drawnStrokes } from "./drawing.js";
import { knownReason, showError, showReading } from "./render.js";
import { chosenVersion } from "./versions.js";
import { writerHeaders } from "./writer.js";

const DEBOUNCE_MS = 250; // a pause this long after a stroke means "done for now": ask the model
const TIMEOUT_MS = 15000; // the server gives up after 10 s; this only catches a hung connection

const answerBox = document.getElementById("answer");

let debounceTimer = 0;
let inflight = null; // AbortController of the request whose answer we still want

export function schedulePrediction() {
  clearTimeout(debounceTimer);
  setBusy(true);
  debounceTimer = setTimeout(predict, DEBOUNCE_MS);
}

export function cancelPrediction() {
  clearTimeout(debounceTimer);
  if (inflight) inflight.abort("stale");
  inflight = null;
  setBusy(false);
}

// Everything goes to /read: one digit is answered as /predict would, a number digit by digit. The strokes
// go beside the image: they say which ink is which digit where digits touch (docs/reading.md).
export async function predict() {
  cancelPrediction();
  const controller = new AbortController();
  inflight = controller;
  const timer = setTimeout(() => controller.abort("timeout"), TIMEOUT_MS);
  setBusy(true);
  const version = chosenVersion();
  const url = "/read" + (version ? "?version=" + encodeURIComponent(version) : "");
  const image = drawingAsDataURL();
  const strokes = drawnStrokes();
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": strokes ? "application/json" : "text/plain", ...writerHeaders() },
      body: strokes ? JSON.stringify({ image, strokes }) : image,
      signal: controller.signal,
    });
    const answer = await response.json().catch(() => null);
    if (controller !== inflight) return; // a newer drawing replaced this request
    if (response.ok && readable(answer)) showReading(answer, image);
    else if (response.status === 422 && answer && knownReason(answer.reason)) showError(422, null, answer.reason);
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

export function setBusy(busy) {
  answerBox.setAttribute("aria-busy", String(busy));
  document.body.classList.toggle("busy", busy);
}
