"""The previous defaults, newest last, for `make rollback`: <run dir>/default_history.json.

Why a file in TorchServe's run dir: it lives and dies with what it refers to (the registered versions,
the key file, the config snapshots `make serve` restores), and `make clean` removes it with them.
TorchServe's snapshots record each default too, but only as a sequence of states: a rollback read off
them would be a toggle (back to the version just left), while a stack of previous defaults lets rollback
step back more than once. Every default change made through our tools (`make set-default`, `make
promote`) pushes the default it replaces; `make rollback` pops. Only the last KEEP are kept.
"""

import json
from pathlib import Path

KEEP = 10


def _path(run_dir: Path) -> Path:
    return Path(run_dir) / "default_history.json"


def read(run_dir: Path) -> list[str]:
    try:
        history = json.loads(_path(run_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [v for v in history if isinstance(v, str)] if isinstance(history, list) else []


def write(run_dir: Path, history: list[str]) -> None:
    path = _path(run_dir)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(history[-KEEP:]))
    temporary.replace(path)  # atomic: an interrupted write leaves the old history, never half a file


def push(run_dir: Path, replaced: str) -> None:
    write(run_dir, [*read(run_dir), replaced])
