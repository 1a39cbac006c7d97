"""Which versions of a model TorchServe has registered, and which is the default, read from its
config snapshot: TorchServe writes one into <run dir>/logs/config/ at start-up and after every
register, unregister and set-default (a Java properties file whose model_snapshot holds JSON).

Reading the snapshot needs no key at all, so the web app lists versions without the management key.
`make serve` restores the same snapshot, so the versions and the default survive a restart.
"""

import json
import re
from pathlib import Path

# A version name as /predict's ?version= and a feedback body's "version" take it.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}


def read_properties(path: Path) -> dict:
    """A Java .properties file as written by java.util.Properties.store (no line continuations)."""
    props = {}
    for line in Path(path).read_text(encoding="latin-1").splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "!")):
            continue
        match = re.match(r"\s*((?:\\.|[^=:\s\\])+)\s*[=:]?\s*(.*)$", line)
        if match:
            props[_unescape(match.group(1))] = _unescape(match.group(2))
    return props


def _unescape(text: str) -> str:
    def one(m: re.Match) -> str:
        s = m.group(1)
        return chr(int(s[1:], 16)) if s[0] == "u" else _ESCAPES.get(s, s)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", one, text)


def latest_snapshot(run_dir: Path) -> Path | None:
    """The newest snapshot (names start with a timestamp, so they sort by time)."""
    snapshots = sorted(Path(run_dir, "logs", "config").glob("*.cfg"))
    return snapshots[-1] if snapshots else None


def snapshot_models(path: Path) -> dict:
    """The model_snapshot JSON of a snapshot file: {"models": {name: {version: {...}}}, ...}."""
    text = read_properties(path).get("model_snapshot")
    return json.loads(text) if text else {}


def model_versions(run_dir: Path, model: str) -> dict:
    """{"model": name, "versions": [sorted], "default": version or None} as TorchServe last recorded it."""
    path = latest_snapshot(run_dir)
    versions = snapshot_models(path).get("models", {}).get(model, {}) if path else {}
    default = next((v for v, info in versions.items() if info.get("defaultVersion")), None)
    return {"model": model, "versions": sorted(versions, key=_version_key), "default": default}


def _version_key(version: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.-]", version)]
