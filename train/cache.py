"""Rendered training images kept on disk, so a second `make train` does not render them again.

A cache file's name holds a hash of what made it: the serving preprocessing (handler/preprocess.py),
the rendering code and its parameters. Change any of them and the old file is simply not found. The
rendering code is hashed whole, module by module: even a change that renders the same (a new parameter,
a module split in two) renders anew once.
"""

import hashlib
import inspect
import os
from pathlib import Path

import numpy as np

import handler.preprocess

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "build" / "cache"  # the default of train/train.py's CACHE_DIR knob


def key(*modules, **params) -> str:
    """Hash of handler/preprocess.py, the given modules' source and the parameters."""
    digest = hashlib.sha256()
    for module in (handler.preprocess, *modules):
        digest.update(inspect.getsource(module).encode())
    digest.update(repr(sorted(params.items())).encode())
    return digest.hexdigest()[:16]


def cached(directory: Path, name: str, cache_key: str, compute) -> dict[str, np.ndarray]:
    """compute() -> dict of arrays, saved as directory/name-key.npz and loaded from there next time."""
    path = Path(directory) / f"{name}-{cache_key}.npz"
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.npz")  # a run stopped half-way leaves no half file
    np.savez(partial, **arrays)
    partial.replace(path)
    return arrays
