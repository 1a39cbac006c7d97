"""The model shipped in the repository (model/default/: what `make run` serves on a fresh clone). It is
replaced by hand, with its README and metrics.json, never by a training run pointed at it by mistake:
train/train.py asks refusal() before it trains, the Makefile's train target checks the same first."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "model" / "default"


def refusal(out_dir: str | Path) -> str | None:
    """Why a run may not write into out_dir, or None when it may."""
    if Path(out_dir).resolve().is_relative_to(SHIPPED_MODEL):
        readme = SHIPPED_MODEL.relative_to(ROOT) / "README.md"
        return f"error: {out_dir} is the shipped model ({readme}); train into build/... instead"
    return None
