// The writer (docs/writers.md): a random id of 128 bits, base64url, kept in localStorage and sent as
// X-Writer with every drawing and feedback, so the answers learn this writer's handwriting from their
// corrections. "Forget my handwriting" deletes that memory on the server (DELETE /api/writer) and takes a
// new id. Without localStorage (private modes may refuse it) the page sends no id: nothing is adapted.

const KEY = "writer";
const ID = /^[A-Za-z0-9_-]{22,128}$/;

const forgetButton = document.getElementById("forget");
const forgetStatus = document.getElementById("forget-status");

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function writerId() {
  try {
    let id = localStorage.getItem(KEY);
    if (!id || !ID.test(id)) {
      id = newId();
      localStorage.setItem(KEY, id);
    }
    return id;
  } catch {
    return null;
  }
}

// The header to send with /read and /api/feedback: {"X-Writer": id}, or none.
export function writerHeaders() {
  const id = writerId();
  return id ? { "X-Writer": id } : {};
}

async function forget() {
  forgetButton.disabled = true;
  forgetStatus.textContent = "Forgetting…";
  let status = 0;
  try {
    status = (await fetch("/api/writer", { method: "DELETE", headers: writerHeaders() })).status;
  } catch {
    status = 0;
  }
  forgetButton.disabled = false;
  if (status === 200) {
    try {
      localStorage.setItem(KEY, newId());
    } catch {
      // nothing kept, nothing to replace
    }
    forgetStatus.textContent = "Forgotten: answers are the model's own again.";
  } else {
    forgetStatus.textContent = status === 0 ? "Could not reach the server; try again." : `Not forgotten (error ${status}); try again.`;
  }
}

export function listenForForget() {
  forgetButton.addEventListener("click", forget);
}
