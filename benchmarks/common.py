"""Shared by the benchmarks: SPEC-shaped agents and batches, and a robust timer."""

from __future__ import annotations

import argparse

import platform
import statistics
import time
from collections.abc import Callable

import torch

from av_td3.agents.spec import AgentSpec
from av_td3.agents.td3 import TD3Agent
from av_td3.config import ClippingConfig, NetClipConfig, TD3Config


def reference_clipping() -> ClippingConfig:
    return ClippingConfig(actor=NetClipConfig(mode="norm", max_norm=1.0, alert_cnn_warning=1.5,
                                              alert_cnn_critical=2.0),
                          critic=NetClipConfig(mode="norm", max_norm=10.0, alert_cnn_warning=15.0,
                                               alert_cnn_critical=20.0))


def make_agent(image: int, frames: int, batch: int, device: str, clipping: ClippingConfig,
               diagnostics_every: int = 1, **overrides) -> TD3Agent:
    cfg = TD3Config(batch_size=batch, **overrides)
    hp = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k != "_target_"}
    spec = AgentSpec(image_shape=(frames, image, image), vector_size=53, action_dim=2,
                     device=torch.device(device), clipping=clipping, diagnostics_every=diagnostics_every)
    return TD3Agent(spec, **hp)


def random_batch(batch: int, frames: int, image: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def obs():
        return {"image": torch.randint(0, 256, (batch, frames, image, image), generator=g,
                                       dtype=torch.uint8).to(device),
                "vector": torch.randn(batch, 53, generator=g).to(device)}

    return (obs(), (torch.rand(batch, 2, generator=g) * 2 - 1).to(device),
            torch.randn(batch, generator=g).to(device), obs(), torch.ones(batch).to(device))


def rate(fn: Callable[[], None], n: int, device: str) -> float:
    """Calls per second of ``fn`` over ``n`` calls (after the caller's warm-up)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return n / (time.perf_counter() - t0)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine(threads: int | None = None) -> str:
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu_name()}, {threads or torch.get_num_threads()} torch threads{gpu}, "
            f"torch {torch.__version__}")


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform knows, and its widest vector extension."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        name)
    except OSError:
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def update_parser(doc: str, updates: int, threads: int = 2) -> argparse.ArgumentParser:
    """The arguments every update benchmark takes: SPEC's shapes (image side, frames, batch), updates per
    round (or profiled), torch threads."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=int, default=84, help="image side (SPEC: 84)")
    ap.add_argument("--frames", type=int, default=4, help="frames per stack (SPEC: 4)")
    ap.add_argument("--batch", type=int, default=256, help="batch size (SPEC: 256)")
    ap.add_argument("--updates", type=int, default=updates, help="updates per round")
    ap.add_argument("--threads", type=int, default=threads, help="torch threads")
    return ap


def episode_seeds(cfg, final: bool, episodes: int) -> list[int]:
    """The episodes a run-inspecting script drives: with ``final`` the run's final evaluation's seeds
    (trainer.final_eval_episodes of them), otherwise ``episodes`` seeds from 2000."""
    if final:
        from av_td3.trainer import eval_seeds

        return eval_seeds(cfg.seed, cfg.trainer.final_eval_episodes or cfg.trainer.eval_episodes)
    return [2000 + episode for episode in range(episodes)]


def driven_policy(agent, weights: str | None):
    """What a run-inspecting script drives: what the run's evaluations drove (its averaged weights, where it
    keeps them), or the ``--weights`` chosen; one line and exit for weights the agent does not keep."""
    from av_td3.evaluation import driven

    try:
        return driven(agent, weights)
    except ValueError as e:
        raise SystemExit(f"--weights {weights}: {e}") from None
