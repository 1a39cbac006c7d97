"""Rendered training images kept on disk, so a second `make train` does not render them again.

A cache file's name holds a hash of what made it: the serving preprocessing (handler/preprocess.py),
the rendering code and its parameters. Change any of them and the old file is simply not found.
"""

import hashlib
import inspect
import os
from pathlib import Path

import numpy as np

import handler.preprocess

ROOT = Path(__file__).resolve().parent.parent
# Set by train/train.py from its CACHE_DIR knob. A module attribute rather than an argument because
# train/mnist_canvas.py's source is part of its renders' cache key: passing it down would change that key.
CACHE_DIR = ROOT / "build" / "cache"


def key(*modules, **params) -> str:
    """Hash of handler/preprocess.py, the given modules' source and the parameters."""
    digest = hashlib.sha256()
    for module in (handler.preprocess, *modules):
        digest.update(inspect.getsource(module).encode())
    digest.update(repr(sorted(params.items())).encode())
    return digest.hexdigest()[:16]


def cached(name: str, cache_key: str, compute) -> dict[str, np.ndarray]:
    """compute() -> dict of arrays, saved as CACHE_DIR/name-key.npz and loaded from there next time."""
    path = CACHE_DIR / f"{name}-{cache_key}.npz"
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    arrays = compute()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.npz")  # a run stopped half-way leaves no half file
    np.savez(partial, **arrays)
    partial.replace(path)
    return arrays
