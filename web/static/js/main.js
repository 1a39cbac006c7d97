// The canvas page: write a digit or a whole number with mouse, touch or pen; the answer comes when a
// stroke ends. This module wires the others together: drawing.js (the strokes and the canvas),
// requests.js (asking /read), render.js (showing the answer), feedback.js (was it right?) and
// versions.js (the model version picker), writer.js (this writer's id, and forgetting their handwriting).

import {
  hasStrokes,
  isDrawing,
  keepCanvasFitted,
  listenForStrokes,
  removeAllStrokes,
  removeLastStroke,
} from "./drawing.js";
import { listenForFeedback, offerFeedback } from "./feedback.js";
import { clearBoxes, resetAnswer } from "./render.js";
import { cancelPrediction, predict, schedulePrediction, setBusy } from "./requests.js";
import { loadVersions, onVersionChange } from "./versions.js";
import { listenForForget } from "./writer.js";

function undo() {
  if (isDrawing()) return;
  cancelPrediction();
  removeLastStroke();
  if (hasStrokes()) predict();
  else resetAnswer("Nothing drawn yet.");
}

function clearAll() {
  if (isDrawing()) return;
  cancelPrediction();
  removeAllStrokes();
  resetAnswer("Nothing drawn yet.");
}

listenForStrokes({
  started() {
    cancelPrediction();
    offerFeedback(null); // the drawing changes: the answer on screen is no longer about it
    clearBoxes(); // nor are its boxes
    setBusy(true); // an answer is coming: screen readers wait for it instead of the stale one
  },
  ended: schedulePrediction,
});
listenForFeedback();
listenForForget();
onVersionChange(() => {
  if (hasStrokes()) predict();
});

// ---- Buttons and keys ------------------------------------------------------------------------

document.getElementById("predict").addEventListener("click", predict);
document.getElementById("undo").addEventListener("click", undo);
document.getElementById("clear").addEventListener("click", clearAll);
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

keepCanvasFitted();
loadVersions();
