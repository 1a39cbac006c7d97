"use strict";
const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const result = document.getElementById("result");
const message = document.getElementById("message");
let drawing = false;

function clearCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  result.textContent = "";
  delete result.dataset.digit;
  message.textContent = "";
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
}

canvas.addEventListener("pointerdown", (event) => {
  drawing = true;
  ctx.lineWidth = 16; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000";
  ctx.beginPath();
  ctx.moveTo(...point(event));
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  ctx.lineTo(...point(event));
  ctx.stroke();
});
window.addEventListener("pointerup", () => { drawing = false; });

async function predict() {
  const response = await fetch("/predict", { method: "POST", headers: { "Content-Type": "text/plain" }, body: canvas.toDataURL() });
  const answer = await response.json();
  if (!response.ok) {
    message.textContent = answer.error;
    return;
  }
  result.textContent = answer.digit;
  result.dataset.digit = answer.digit;
}

document.getElementById("predict").addEventListener("click", predict);
document.getElementById("clear").addEventListener("click", clearCanvas);
clearCanvas();
