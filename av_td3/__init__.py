"""av-td3: Hydra-driven TD3 experiments for end-to-end visual driving."""

import os
from pathlib import Path

__version__ = "0.1.0"


def config_dir() -> Path:
    """The ``conf/`` directory: packaged inside av_td3 in a wheel, beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"av-td3's conf/ directory is missing next to {here}: reinstall the package")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a Slurm allocation), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
