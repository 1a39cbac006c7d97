// Feedback: was the answer right? The drawing exactly as /read got it, the number the person meant (or
// "not a digit") and the answer go to /api/feedback with the answer's ticket; stored drawings become
// training data (docs/lifecycle.md). This module owns what the feedback is about.

import { writerHeaders } from "./writer.js";

export const MAX_DIGITS = 16; // /read's limit (handler/segment.py MAX_DIGITS), and the longest number feedback takes
const NOT_A_DIGIT = "not_a_digit"; // the feedback that confirms "this is not a digit (not a number)"

const feedbackBox = document.getElementById("feedback");
const meant = document.getElementById("meant");
const meantHint = document.getElementById("meant-hint");
const thanks = document.getElementById("thanks");
const rightButton = document.getElementById("right");
const notDigitButton = document.getElementById("not-digit");
const wrongHeading = document.getElementById("wrong-heading");
const wrong = document.getElementById("wrong");

let answered = null; // {image, predicted, pieces, version, ticket} of the answer on screen: what feedback is about

function setFeedbackEnabled(enabled) {
  for (const control of feedbackBox.querySelectorAll("button, input")) control.disabled = !enabled;
}

function unflag() {
  meant.removeAttribute("aria-invalid");
  meantHint.classList.remove("invalid");
  meantHint.textContent = `Digits 0-9 only, at most ${MAX_DIGITS}.`;
}

export function offerFeedback(about) {
  answered = about;
  feedbackBox.hidden = !about;
  thanks.textContent = "";
  setFeedbackEnabled(true);
  unflag(); // no complaint left from the last answer
  if (!about) return;
  const thing = about.pieces > 1 ? "number" : "digit";
  const read = about.predicted !== null;
  // Read: "Right", a typed number, or "Not a digit". Not read: "Right, not a digit" or the number it is.
  rightButton.textContent = read ? "Right" : `Right, not a ${thing}`;
  rightButton.setAttribute("aria-label", read ? `Right: I wrote ${about.predicted}` : `Right: it is not a ${thing}`);
  wrongHeading.textContent = read ? "Wrong? Type the number you wrote" : `It is a ${thing}? Type it`;
  notDigitButton.textContent = `Not a ${thing}`;
  notDigitButton.hidden = !read;
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
      headers: { "Content-Type": "application/json", ...writerHeaders() },
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

// The verdict controls: Right, Not a digit, and the number typed in the Wrong form.
export function listenForFeedback() {
  rightButton.addEventListener("click", () => answered && sendFeedback(answered.predicted ?? NOT_A_DIGIT));
  notDigitButton.addEventListener("click", () => sendFeedback(NOT_A_DIGIT));
  meant.addEventListener("input", unflag); // the complaint was about what was there before
  wrong.addEventListener("submit", (event) => {
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
}
