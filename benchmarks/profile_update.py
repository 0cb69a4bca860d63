"""Where one TD3 update's time goes, for av-td3 (separate and shared encoders) and Stable-Baselines3, on
the contenders of ``bench_update.py`` (same shapes, same replay contents), with ``torch.profiler``.

Prints milliseconds per update by kind of work (self time of the leaf operators, so nothing is counted
twice), then each convolution layer alone in both memory layouts: what the kernels themselves cost.
All contenders share this one process and av-td3's allocator setting (``av_td3/allocator.py``), so
SB3 is profiled without the page faults its default allocator costs (``bench_update.py`` times both).
The profiler inflates some operators (large copies most): read the kinds against each other.

    python benchmarks/profile_update.py                # CPU, 2 threads, SPEC shapes
    python benchmarks/profile_update.py --updates 2    # quicker
    python benchmarks/profile_update.py --experiment drive_from_camera --updates 50   # that task, equal terms
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from bench_update import build_contenders, experiment_shapes, experiment_task
from common import machine, update_parser

# Leaf operators by kind of work; anything else is "other" (Python, autograd bookkeeping, small ops).
KINDS = {
    "conv forward": ("aten::mkldnn_convolution", "aten::_convolution_pointwise", "aten::slow_conv"),
    "conv backward": ("aten::convolution_backward", "aten::mkldnn_convolution_backward"),
    "linear (mm)": ("aten::addmm", "aten::mm", "aten::bmm"),
    "activations": ("aten::clamp_min", "aten::relu", "aten::threshold_backward", "aten::tanh",
                    "aten::tanh_backward"),
    "copies, dtype, scaling": ("aten::copy_", "aten::div", "aten::div_", "aten::index", "aten::cat",
                               "aten::stack"),
    "optimizer, norms, targets": ("aten::_fused_adam_", "aten::_foreach", "aten::linalg_vector_norm",
                                  "aten::lerp_", "aten::addcmul_", "aten::addcdiv_", "aten::mul_"),
}


def kind_of(op: str) -> str:
    for kind, prefixes in KINDS.items():
        if op.startswith(prefixes):
            return kind
    return "other"


def profile_step(fn, n: int) -> tuple[dict[str, float], float]:
    """ms per update by kind (operators' self time), and wall ms per update, over ``n`` calls."""
    for _ in range(2):
        fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        wall = (time.perf_counter() - t0) / n * 1e3
    by_kind: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        if ev.key.startswith("aten::"):
            by_kind[kind_of(ev.key)] += ev.self_cpu_time_total / 1e3 / n
    return by_kind, wall


def cnn_layers(frames: int, image: int, channels, kernels, strides) -> list[tuple]:
    """(name, input channels, input side, output channels, kernel, stride) per convolution layer."""
    out, c_in, size = [], frames, image
    for c_out, k, s in zip(channels, kernels, strides):
        out.append((f"conv {c_in}->{c_out} {k}x{k}/{s}", c_in, size, c_out, k, s))
        c_in, size = c_out, (size - k) // s + 1
    return out


def layer_table(batch: int, layers: list[tuple]) -> None:
    """The CNN's layers alone: forward, input-gradient and weight-gradient kernels."""
    def best(fn, n=5):
        fn()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) * 1e3

    back = torch.ops.aten.convolution_backward
    print(f"\n{'layer':22s} {'layout':14s} {'forward':>9s} {'grad input':>11s} {'grad weight':>12s}  (ms, best of 5)")
    for name, c_in, size, c_out, k, s in layers:
        for fmt, label in ((torch.channels_last, "channels-last"), (torch.contiguous_format, "NCHW")):
            x = torch.randn(batch, c_in, size, size).contiguous(memory_format=fmt)
            w = (torch.randn(c_out, c_in, k, k) * 0.01).contiguous(memory_format=fmt)
            g = torch.randn_like(F.conv2d(x, w, None, s))
            args = (g, x, w, None, [s, s], [0, 0], [1, 1], False, [0, 0], 1)
            fwd = best(lambda: F.conv2d(x, w, None, s))
            gin = best(lambda: back(*args, [True, False, False]))
            gw = best(lambda: back(*args, [False, True, False]))
            print(f"{name:22s} {label:14s} {fwd:9.2f} {gin:11.2f} {gw:12.2f}")


def main() -> None:
    ap = update_parser(__doc__, updates=4)
    ap.add_argument("--fill", type=int, default=3000)
    ap.add_argument("--experiment", help="this experiment's task under bench_learning.py's equal terms instead "
                    "of SPEC's shapes (--image, --frames and --batch then come from it)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    contenders = build_contenders(a.image, a.frames, a.batch, "cpu", a.fill, compiled=False, sb3=True,
                                  experiment=a.experiment)
    results = {name: profile_step(fn, a.updates) for name, fn in contenders.items()}
    if a.experiment:
        _, cfg, env = experiment_task(a.experiment)
        frames, image, _ = env.observation_space["image"].shape
        shapes = experiment_shapes(a.experiment, cfg, env.observation_space)
        env.close()
        batch, agent = cfg.agent.batch_size, cfg.agent
        layers = cnn_layers(frames, image, agent.cnn_channels, agent.cnn_kernels, agent.cnn_strides)
    else:
        batch = a.batch
        layers = cnn_layers(a.frames, a.image, (32, 64, 64), (8, 4, 3), (4, 2, 1))  # SPEC's NatureCNN
        shapes = f"{a.frames}x{a.image}x{a.image} uint8 + 53, batch {a.batch}"
    print(f"machine: {machine()}; {shapes}, {a.updates} profiled updates each (the profiler adds some "
          f"overhead)")
    names = list(results)
    short = [n.split(" (")[0] + (" shared" if "shared" in n else " separate" if "separate" in n else "")
             for n in names]
    print(f"\n{'ms per update':28s}" + "".join(f"{s:>22s}" for s in short))
    for kind in [*KINDS, "other"]:
        print(f"{kind:28s}" + "".join(f"{results[n][0].get(kind, 0.0):22.1f}" for n in names))
    print(f"{'wall (profiled)':28s}" + "".join(f"{results[n][1]:22.1f}" for n in names))
    layer_table(batch, layers)


if __name__ == "__main__":
    main()
