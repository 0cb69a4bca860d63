"""Cost of gradient diagnostics: TD3 updates/s with diagnostics off and on, and the ratio, in one run.

"off": the same TD3 update with clipping done by a bare ``clip_grad_norm_`` call and nothing measured
or fetched. "on": av-td3's GuardedStep (BEFORE/AFTER norms per part, clip indicator, alert and
non-finite counters, on-device skip), the update ratios (a parameter copy and norms) every
``--measure-every`` updates, as the trainer asks for them (trainer.log_every_updates, default 10), plus
fetching every logged value to the host after EVERY update (the most expensive logging setting).
Interleaved rounds; the median ratio is reported.

    python benchmarks/bench_diagnostics.py                       # SPEC shapes: 4x84x84, batch 256
    python benchmarks/bench_diagnostics.py --image 36 --batch 32 # quick
"""

from __future__ import annotations


import torch

from av_td3.agents.networks import parameter_groups
from av_td3.allocator import tune_allocator
from av_td3.logger import UpdateLog
from common import machine, make_agent, median, random_batch, rate, reference_clipping, update_parser


class BareStep:
    """clip_grad_norm_ + optimizer.step(): what a TD3 without diagnostics does."""

    def __init__(self, params, max_norm, optimizer):
        self.params, self.max_norm, self.optimizer = list(params), max_norm, optimizer
        self._true = torch.ones((), dtype=torch.bool, device=self.params[0].device)

    def __call__(self, loss):
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.optimizer.step()
        return {"finite": self._true}

    def health(self):
        return {}


def main() -> None:
    ap = update_parser(__doc__, updates=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--measure-every", type=int, default=10,
                    help="updates between update-ratio measurements (trainer.log_every_updates; 1 = every update)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    tune_allocator()  # as every av-td3 training process does (av_td3/allocator.py)
    torch.set_num_threads(a.threads)
    clipping = reference_clipping()
    on = make_agent(a.image, a.frames, a.batch, a.device, clipping, diagnostics_every=a.measure_every)
    off = make_agent(a.image, a.frames, a.batch, a.device, clipping)
    off.actor_step = BareStep(off.actor.parameters(), 1.0, off.actor_opt)
    off.critic_step = BareStep(off.critic.parameters(), 10.0, off.critic_opt)
    batch = random_batch(a.batch, a.frames, a.image, a.device)
    log = UpdateLog()

    def update_on():
        log.record(on.update(*batch), 0)
        log.fetch({n: g.health() for n, g in on.guarded_steps().items()})  # one sync, every update

    def update_off():
        off.update(*batch)

    for fn in (update_on, update_off):  # warm-up
        rate(fn, 2, a.device)
    ons, offs = [], []
    for _ in range(a.rounds):
        offs.append(rate(update_off, a.updates, a.device))
        ons.append(rate(update_on, a.updates, a.device))
    ratios = [x / y for x, y in zip(ons, offs)]
    n_actor = sum(p.numel() for p in on.actor.parameters())
    n_critic = sum(p.numel() for p in on.critic.parameters())
    print(f"machine: {machine()}, device {a.device}")
    print(f"shapes: {a.frames}x{a.image}x{a.image} + 53, batch {a.batch}; actor {n_actor:,} params, "
          f"critic {n_critic:,}; clipping=reference; {a.rounds} rounds x {a.updates} updates; update ratios "
          f"every {a.measure_every} updates")
    print(f"diagnostics off: {median(offs):8.2f} updates/s")
    print(f"diagnostics on : {median(ons):8.2f} updates/s (fetched every update)")
    print(f"updates/s on/off, median of per-round ratios: {median(ratios):.4f} "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f}) -> overhead {100 * (1 - median(ratios)):.2f}% "
          f"(target <= 3%; negative = within noise)")


if __name__ == "__main__":
    main()
