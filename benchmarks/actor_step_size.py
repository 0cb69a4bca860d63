"""The reference's freezing arithmetic, measured: the actor's RMS step per weight at SPEC's
shapes (1,895,330 actor parameters, 4x84x84, batch 256, Adam lr 3e-4), over its first 8 updates on
random batches, with actor max_norm none / 1 / 0.01 and max_norm 1 with weight decay 1e-4.

    python benchmarks/actor_step_size.py          # ~2 min on 2 cores

The reference estimated ~2e-7 per weight for max_norm 1 (the clipped gradient spread over 1.9M weights,
times the learning rate: SGD's step). Adam divides each weight's step by the running RMS of its
gradient, so a gradient scaled down by clipping gives the same step; what clipping changes is how the
steps of one batch weigh against another's, and (with weight decay, which torch's Adam adds to the
gradient after clipping) how the task gradient weighs against the decay.
"""
import sys, math, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from common import make_agent, random_batch
from av_td3.config import ClippingConfig, NetClipConfig
torch.set_num_threads(1)
def arm(max_norm, wd):
    actor = NetClipConfig(mode="norm", max_norm=max_norm) if max_norm else NetClipConfig()
    clip = ClippingConfig(actor=actor, critic=NetClipConfig(mode="norm", max_norm=10.0))
    torch.manual_seed(0)
    agent = make_agent(84, 4, 256, "cpu", clip, weight_decay=wd)
    params = [p for p in agent.actor.parameters()]
    n = sum(p.numel() for p in params)
    steps = []
    for i in range(16):
        batch = random_batch(256, 4, 84, "cpu", seed=i)
        before = [p.detach().clone() for p in params]
        agent.update(*batch)
        d = math.sqrt(sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(params, before)))
        if d > 0:
            steps.append(d / math.sqrt(n))
    return n, steps
print("actor RMS step per weight (||theta_after - theta_before|| / sqrt(n)), Adam lr 3e-4:")
for max_norm, wd in ((None, 0.0), (1.0, 0.0), (0.01, 0.0), (1.0, 1e-4)):
    n, steps = arm(max_norm, wd)
    print(f"actor max_norm {max_norm}, weight decay {wd}: {n:,} params, RMS step per weight over {len(steps)} actor updates: "
          f"first {steps[0]:.2e}, median {sorted(steps)[len(steps)//2]:.2e}")
