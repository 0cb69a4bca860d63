"""Atomic checkpoints of a run's whole state, loaded without running code.

``save`` writes to a temporary file in the same directory, fsyncs it and renames it over the old one, so
a run killed at any moment leaves either the previous or the new checkpoint, never a torn one. ``load``
uses ``torch.load(weights_only=True)``: a checkpoint holds only tensors, numbers, strings and containers,
so a file from elsewhere cannot execute code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from av_td3.rundir import CHECKPOINT  # noqa: F401  (callers name the file through this module)


def save(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise RuntimeError(f"cannot load checkpoint {path}: {e}. Delete it to start the run afresh.") from e


def rng_state(np_generators: dict[str, np.random.Generator]) -> dict[str, Any]:
    """Python, NumPy (global and the given generators) and torch RNG states, in weights_only types."""
    state: dict[str, Any] = {
        "python": _py_state(),
        "torch": torch.get_rng_state(),
        "numpy_global": _np_legacy_state(),
        "generators": {k: g.bit_generator.state for k, g in np_generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], np_generators: dict[str, np.random.Generator]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy_global"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    for k, g in np_generators.items():
        g.bit_generator.state = state["generators"][k]


def _py_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _np_legacy_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
