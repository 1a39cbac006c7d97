"""Rendered training images kept on disk, so a second `make train` does not render them again.

A cache file's name holds a hash of what made it: the serving preprocessing (every module of handler/
that handler/segment.py imports, directly or not: decoding, the ink map, the MNIST form, a number's
groups and cuts), the rendering code and its parameters. Change any of them and the old file is simply
not found. The rendering code is hashed whole, module by module: even a change that renders the same (a
new parameter, a module split in two) renders anew once.
"""

import ast
import hashlib
import importlib
import inspect
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "build" / "cache"  # the default of train/train.py's CACHE_DIR knob


def preprocessing(root: str = "handler.segment") -> list:
    """`root` and every module of handler/ it imports (`from .x import` or `from handler.x import`),
    directly or not: the serving preprocessing a render may run. segment.py reads a number and imports
    the rest, down to decoding a body."""
    found, todo = {}, [root]
    while todo:
        name = todo.pop()
        if name not in found:
            found[name] = importlib.import_module(name)
            for node in ast.walk(ast.parse(inspect.getsource(found[name]))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level <= 1:
                    imported = f"handler.{node.module}" if node.level else node.module
                    todo += [imported] if imported.startswith("handler.") else []
    return [found[name] for name in sorted(found)]


def key(*modules, **params) -> str:
    """Hash of the serving preprocessing's source (preprocessing()), the given modules' and the parameters."""
    digest = hashlib.sha256()
    for module in (*preprocessing(), *modules):
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
