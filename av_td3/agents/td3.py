"""TD3 (Fujimoto et al., 2018) for image + vector observations. DDPG is the same class with
``n_critics=1, policy_noise=0, policy_delay=1``.

The update reads top to bottom: critic target with target policy smoothing and clipped double-Q,
critic step, then every ``policy_delay``-th update the actor step and the soft target updates. Gradient
measurement, clipping and the non-finite guard are one call per network (``GuardedStep``); the update
returns device tensors and never syncs with the host.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from av_td3.agents.flat import FlatParameters
from av_td3.agents.networks import Actor, Critic, NatureCNN, parameter_groups, random_shift
from av_td3.agents.spec import AgentSpec
from av_td3.envs.contract import PRIVILEGED, PRIVILEGED_TARGETS
from av_td3.gradients import GuardedStep

log = logging.getLogger("av_td3")

Obs = dict[str, torch.Tensor]  # {"image": uint8 (B, F, H, W) (absent without a camera), "vector": (B, V)}


def _cpu_has_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class TD3Agent:
    def __init__(self, spec: AgentSpec, cnn_channels: Sequence[int], cnn_kernels: Sequence[int], cnn_strides: Sequence[int],
                 feature_dim: int, hidden_dims: Sequence[int], encoder: str, n_critics: int,
                 actor_lr: float, critic_lr: float, weight_decay: float, gamma: float, tau: float,
                 policy_noise: float, noise_clip: float, policy_delay: int, batch_size: int,
                 layer_norm: bool = False, n_step: int = 1, augmentation: str = "none", shift_pad: int = 4,
                 saturation_penalty: float = 0.0, smoothness_penalty: float = 0.0,
                 smoothness_pair: str = "bootstrap", aux_weight: float = 0.0, policy_average: float = 0.0,
                 precision: str = "float32", compile: bool = False):
        image_shape, vector_size, action_dim = spec.image_shape, spec.vector_size, spec.action_dim
        self.device = spec.device
        self.gamma, self.tau = gamma, tau
        self.policy_noise, self.noise_clip, self.policy_delay = policy_noise, noise_clip, policy_delay
        self.batch_size, self.n_step = batch_size, n_step
        self.saturation_penalty, self.smoothness_penalty = saturation_penalty, smoothness_penalty
        # CAPS's consecutive pair: the replay adds s_t+1 to each batch (ReplayBuffer.sample(following=True)).
        self.wants_following = bool(smoothness_penalty) and smoothness_pair == "consecutive"
        self.shift_pad = shift_pad if augmentation in ("shift", "shift_vertical") else 0
        self.shift_horizontal = augmentation == "shift"
        # The auxiliary loss on the critic's CNN: the replay adds each observation's privileged targets.
        self.aux_weight = aux_weight
        self.wants_targets = bool(aux_weight)
        if aux_weight and image_shape is None:
            raise ValueError("agent.aux_weight trains the image encoder: it needs a camera (env.camera)")
        self.shared_encoder = encoder == "shared"
        self.num_updates = 0

        def make_encoder() -> NatureCNN | None:
            if image_shape is None:
                return None
            return NatureCNN(image_shape, cnn_channels, cnn_kernels, cnn_strides, feature_dim, precision)

        if precision == "bfloat16" and self.device.type == "cpu" and not _cpu_has_bf16():
            log.warning("agent.precision=bfloat16 on a CPU without native bf16 instructions (AVX512-BF16 "
                        "or AMX): oneDNN emulates them, and updates run several times slower than in "
                        "float32")
        # Separate encoders (the reference): actor and critic each own a CNN with its own target.
        # Shared (DrQ-v2): the critic's CNN feeds the actor detached features and the targets.
        critic_encoder = make_encoder()
        actor_encoder = None if self.shared_encoder else make_encoder()
        n_feat = 0 if image_shape is None else feature_dim
        self.critic = Critic(critic_encoder, n_feat, vector_size, action_dim, hidden_dims, n_critics, layer_norm,
                             aux_outputs=len(PRIVILEGED_TARGETS) if aux_weight else 0).to(self.device)
        self.actor = Actor(actor_encoder, n_feat, vector_size, action_dim, hidden_dims,
                           layer_norm).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        # Weight averaging (agent.policy_average): a moving average of the weights the policy acts with (the
        # actor, and with the shared encoder the critic's CNN), which evaluations drive. Training never
        # reads it, so a run learns the same with or without it.
        self.policy_average = policy_average
        self.actor_average = self.encoder_average = None
        if policy_average:
            self.actor_average = copy.deepcopy(self.actor).requires_grad_(False)
            if self.shared_encoder and critic_encoder is not None:
                self.encoder_average = copy.deepcopy(critic_encoder).requires_grad_(False)
        if compile:  # in place (Module.compile): state_dict keys, and so checkpoints, stay the same
            for net in (self.critic, self.actor, self.critic_target, self.actor_target):
                if net.encoder is not None:
                    net.encoder.compile(dynamic=False)

        # Each network's parameters and gradients packed into one buffer (agents/flat.py): Adam, zero_grad
        # and the soft target update run one kernel per network instead of one per tensor.
        self.flat = {name: FlatParameters(getattr(self, name))
                     for name in ("critic", "actor", "critic_target", "actor_target")}
        self._unchecked = {"critic", "actor"}  # networks whose packed gradients no backward has checked yet
        # fused=True: one kernel per step, and its found_inf skips non-finite steps on the device.
        self.critic_opt = torch.optim.Adam([self.flat["critic"].param], lr=critic_lr,
                                           weight_decay=weight_decay, fused=True)
        self.actor_opt = torch.optim.Adam([self.flat["actor"].param], lr=actor_lr,
                                          weight_decay=weight_decay, fused=True)
        # Update sizes are measured once per logging interval: the actor steps every policy_delay-th update.
        every = spec.diagnostics_every
        self.critic_step = GuardedStep(parameter_groups(self.critic), spec.clipping.critic, self.critic_opt,
                                       measure_every=every)
        self.actor_step = GuardedStep(parameter_groups(self.actor), spec.clipping.actor, self.actor_opt,
                                      measure_every=max(1, every // policy_delay))

    # --- features ------------------------------------------------------------------------------------
    @staticmethod
    def _encode(encoder: NatureCNN | None, obs: Obs) -> torch.Tensor:
        if encoder is None:  # vector-only observations (env=gym)
            return obs["vector"].new_zeros(obs["vector"].shape[0], 0)
        return encoder(obs["image"])

    def _pixels(self, obs: Obs, channels_last: bool, following: Obs | None = None) -> tuple[Obs, Obs | None]:
        """obs (and ``following``, shifted by obs's own offsets: one shift of their stacked channels) as
        the encoders' float input."""
        if "image" not in obs:
            return obs, following
        image = obs["image"] if following is None else torch.cat([obs["image"], following["image"]], 1)
        if self.shift_pad:  # DrQ: a random shift per sample, drawn anew for every batch (on the uint8s)
            image = random_shift(image, self.shift_pad, horizontal=self.shift_horizontal)
        if following is None:
            return {**obs, "image": self.critic.encoder.pixels(image, channels_last)}, None
        now, then = image.split(obs["image"].shape[1], 1)
        return ({**obs, "image": self.critic.encoder.pixels(now, channels_last)},
                {**following, "image": self.critic.encoder.pixels(then, channels_last)})

    def policy(self, obs: Obs, averaged: bool = False) -> torch.Tensor:
        return torch.tanh(self.pre_tanh(obs, averaged))

    def pre_tanh(self, obs: Obs, averaged: bool = False) -> torch.Tensor:
        """The actor's output before its tanh on ``obs``: |x| >~ 3 is a saturated actor, whose tanh passes
        almost no gradient back (what bench_learning reports per evaluation). ``averaged``: with the
        averaged weights (agent.policy_average)."""
        if averaged:
            actor, shared_encoder = self.actor_average, self.encoder_average
        else:
            actor, shared_encoder = self.actor, self.critic.encoder
        feat = self._encode(shared_encoder if self.shared_encoder else actor.encoder, obs)
        return actor.pre_tanh(feat.detach() if self.shared_encoder else feat, obs["vector"])

    # --- acting ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], averaged: bool = False) -> np.ndarray:
        """The deterministic policy action; the trainer's Explorer adds the exploration noise."""
        batch = {k: torch.as_tensor(v, device=self.device).unsqueeze(0) for k, v in obs.items()}
        return self.policy(batch, averaged)[0].cpu().numpy()

    def evaluation_policy(self, averaged: bool | None = None) -> "TD3Agent | AveragedPolicy":
        """What evaluations drive: the averaged weights where agent.policy_average keeps them (or
        ``averaged``, when given), else the trained ones."""
        averaged = bool(self.policy_average) if averaged is None else averaged
        if averaged and not self.policy_average:
            raise ValueError("this agent keeps no averaged weights (agent.policy_average is 0)")
        return AveragedPolicy(self) if averaged else self

    # --- learning --------------------------------------------------------------------------------------
    def update(self, obs: Obs, action: torch.Tensor, reward: torch.Tensor, next_obs: Obs,
               discount: torch.Tensor, following: Obs | None = None) -> dict[str, torch.Tensor]:
        """One TD3 update from a replay batch. ``reward`` is the (n-step) discounted reward sum and
        ``discount`` what bootstraps it: gamma^m, or 0 after a termination (``ReplayBuffer.sample``).
        ``following``: s_t+1, for the smoothness term's consecutive pair (``wants_following``)."""
        self.num_updates += 1
        # uint8 -> float once per batch; up to three encoders read obs, two next_obs. next_obs only
        # meets no-grad encoders, which are faster in NCHW; obs trains the CNNs, in channels-last.
        obs, following = self._pixels(obs, True, following if self.wants_following else None)
        next_obs, _ = self._pixels(next_obs, channels_last=False)

        # Critic target: target policy smoothing, clipped double-Q; truncation still bootstraps.
        with torch.no_grad():
            if self.shared_encoder:  # DrQ-v2: the online critic CNN encodes next_obs for both targets
                next_actor_feat = next_critic_feat = self._encode(self.critic.encoder, next_obs)
            else:
                next_actor_feat = self._encode(self.actor_target.encoder, next_obs)
                next_critic_feat = self._encode(self.critic_target.encoder, next_obs)
            noise = (torch.randn_like(action) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_action = (self.actor_target(next_actor_feat, next_obs["vector"]) + noise).clamp(-1, 1)
            next_q = torch.stack(self.critic_target(next_critic_feat, next_obs["vector"], next_action))
            target_q = reward + discount * next_q.min(0).values
            if following is not None and self.num_updates % self.policy_delay == 0:
                # s_t+1's features for the actor's smoothness term, from the CNN the actor reads, before
                # the critic step (as obs's features are)
                following_feat = self._encode(self.critic.encoder if self.shared_encoder else self.actor.encoder,
                                              following)

        feat = self._encode(self.critic.encoder, obs)
        qs = self.critic(feat, obs["vector"], action)
        critic_loss = sum(F.mse_loss(q, target_q) for q in qs)
        metrics = {"critic_loss": critic_loss.detach(), "q1": qs[0].detach().mean(), "q2": qs[-1].detach().mean()}
        if self.aux_weight:  # the CNN also learns to predict the privileged targets of what it sees
            aux_loss = self._aux_loss(feat, obs[PRIVILEGED])
            metrics["aux_loss"] = aux_loss.detach()
            critic_loss = critic_loss + self.aux_weight * aux_loss
        self._backward("critic", critic_loss)
        critic = self.critic_step(critic_loss)
        metrics |= {f"critic_{k}": v for k, v in critic.items()}
        if self.num_updates % self.policy_delay:
            return metrics

        # Actor: maximise Q1. Separate encoders: Q1 of the just-updated critic (as TD3's code does),
        # whose CNN needs no gradient here. Shared: the detached features of this update (as DrQ-v2).
        if self.shared_encoder:
            critic_feat = actor_feat = feat.detach()
        else:
            with torch.no_grad():
                critic_feat = self._encode(self.critic.encoder, obs)
            actor_feat = self._encode(self.actor.encoder, obs)
        pre_tanh = self.actor.pre_tanh(actor_feat, obs["vector"])
        action_pi = torch.tanh(pre_tanh)
        actor_loss = -self.critic.q1(critic_feat, obs["vector"], action_pi).mean()
        if self.saturation_penalty:  # keeps the tanh out of saturation, where Adam would push it on
            actor_loss = actor_loss + self.saturation_penalty * pre_tanh.pow(2).mean()
        if self.smoothness_penalty:  # CAPS's temporal term: the next state's action close to this one's
            if following is not None:
                then, then_feat = following, following_feat
            elif self.shared_encoder:
                then, then_feat = next_obs, next_actor_feat
            else:
                with torch.no_grad():
                    then, then_feat = next_obs, self._encode(self.actor.encoder, next_obs)
            next_pi = self.actor(then_feat.detach(), then["vector"])
            actor_loss = actor_loss + self.smoothness_penalty * (action_pi - next_pi).pow(2).sum(1).mean()
        self._backward("actor", actor_loss)
        actor = self.actor_step(actor_loss)

        # Soft target updates, skipped (tau -> 0) when either step was skipped as non-finite.
        tau = self.tau * (critic["finite"] & actor["finite"]).float()
        for name in ("critic", "actor"):
            self.flat[f"{name}_target"].param.data.lerp_(self.flat[name].param.data, tau)
        if self.policy_average:
            self._average(critic["finite"] & actor["finite"])
        metrics.update(actor_loss=actor_loss.detach(), actor_pre_tanh=pre_tanh.detach().abs().mean(),
                       **{f"actor_{k}": v for k, v in actor.items()})
        return metrics

    def _average(self, finite: torch.Tensor) -> None:
        """Move the averaged weights toward the trained ones: at rate 1/k on the k-th actor update (the
        plain mean of every actor so far, so the random initial weights wash out) until that falls to
        agent.policy_average, an exponential moving average from then on; no step when the update was
        skipped as non-finite."""
        k = self.num_updates // self.policy_delay
        rate = max(self.policy_average, 1.0 / k) * finite.float()
        averaged, trained = [self.actor_average], [self.actor]
        if self.encoder_average is not None:
            averaged.append(self.encoder_average)
            trained.append(self.critic.encoder)
        torch._foreach_lerp_([p.data for m in averaged for p in m.parameters()],
                             [p.data for m in trained for p in m.parameters()], rate)

    def _aux_loss(self, feat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the critic's auxiliary head over the samples whose targets are known
        (an episode's first observation has none), summed over the targets; no host sync."""
        known = targets.isfinite().all(1)
        error = (self.critic.aux_head(feat) - targets.nan_to_num()).pow(2).sum(1)
        return torch.where(known, error, 0.0).sum() / known.sum().clamp(min=1)

    def _backward(self, name: str, loss: torch.Tensor) -> None:
        """Zero the network's packed gradients and backpropagate ``loss`` into them (checked once per
        agent that autograd accumulated into the buffer)."""
        self.flat[name].zero_grad()
        loss.backward()
        if name in self._unchecked:
            self.flat[name].check_grads()
            self._unchecked.discard(name)

    # --- checkpointing ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(),
                "critic_target": self.critic_target.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "actor_step": self.actor_step.state_dict(), "critic_step": self.critic_step.state_dict(),
                "num_updates": self.num_updates} | self._average_state()

    def _average_state(self) -> dict:
        state = {}
        if self.actor_average is not None:
            state["actor_average"] = self.actor_average.state_dict()
        if self.encoder_average is not None:
            state["encoder_average"] = self.encoder_average.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_step", "critic_step"):
            getattr(self, name).load_state_dict(state[name])
        for name, trained in (("actor_average", self.actor), ("encoder_average", self.critic.encoder)):
            averaged = getattr(self, name)
            if averaged is not None:  # a checkpoint saved without the average starts it from the trained weights
                averaged.load_state_dict(state.get(name, trained.state_dict()))
        for name in ("actor", "critic"):
            getattr(self, f"{name}_opt").load_state_dict(state[f"{name}_opt"])
        self.num_updates = int(state["num_updates"])

    def guarded_steps(self) -> dict[str, GuardedStep]:
        return {"actor": self.actor_step, "critic": self.critic_step}


class AveragedPolicy:
    """A TD3Agent acting with its averaged weights (agent.policy_average): what its evaluations drive."""

    def __init__(self, agent: TD3Agent):
        self.agent = agent

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.agent.act(obs, averaged=True)
