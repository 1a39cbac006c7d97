// The model version picker: filled from /api/models; "" is the default version.

const versionSelect = document.getElementById("version");

export const chosenVersion = () => versionSelect.value;

export async function loadVersions() {
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

export function onVersionChange(changed) {
  versionSelect.addEventListener("change", changed);
}
