"""Replay memory that stores each camera frame once, as uint8, and rebuilds frame stacks at sampling.

Slot ``i`` holds one observation (its newest frame, its vector) and, if it is a transition's start, that
transition's action, reward and termination flag; the next observation is slot ``i + 1``. An episode's
last next-observation gets a slot of its own that starts no transition. Per 4x84x84 + 53-float
transition that is ~7.1 KB, against ~56 KB for float pairs of stacked frames (SB3) and ~226 KB for the
reference's float32 pairs.

A stack is rebuilt from the slots before its newest frame (every ``frame_stride``-th slot), zero-padded
before the episode's first frame (the env's stacks start as zeros too), so a sampled stack equals the
stack the env returned (envs/action_repeat.py stacks at the agent's rate).

Parallel envs (trainer.num_envs) write ``streams``: the ring is cut into one segment per env, each with
its own cursor, so every env's episodes stay contiguous; sampling is uniform over all stored
transitions. With one stream every formula reduces to the single ring's (same slots, same draws).
"""

from __future__ import annotations

import numpy as np
import torch

from av_td3.envs.contract import IMAGE, PRIVILEGED, VECTOR


class ReplayBuffer:
    def __init__(self, capacity: int, image_shape: tuple[int, ...] | None, vector_size: int,
                 action_dim: int, device: torch.device | str = "cpu", seed: int = 0, streams: int = 1,
                 target_size: int = 0, frame_stride: int = 1):
        if streams < 1:
            raise ValueError(f"replay streams must be >= 1, got {streams}")
        segment = capacity // streams
        self.stack = image_shape[0] if image_shape is not None else 0
        self.stride = frame_stride
        self.span = (self.stack - 1) * frame_stride + 1 if self.stack else 0  # slots one stack reaches over
        if image_shape is not None and segment < 2 * self.span + 2:
            raise ValueError(f"replay capacity {capacity} is too small for {image_shape[0]}-frame stacks"
                             + (f" in {streams} streams" if streams > 1 else ""))
        self.capacity = capacity
        self.streams, self.segment = streams, segment  # slots per stream (the remainder is unused)
        self.device = torch.device(device)
        # Storage lives on `device` (the GPU where there is one), so sampling copies nothing to it.
        kw = {"device": self.device}
        # One row past the capacity stays zero: stack positions before an episode's first frame gather
        # it, so sampling is a single index_select with no masking pass. ``frames`` is the ring itself.
        self._frame_rows = (torch.zeros((capacity + 1, *image_shape[1:]), dtype=torch.uint8, **kw)
                            if image_shape is not None else None)
        self.frames = self._frame_rows[:capacity] if image_shape is not None else None
        self.frame_pos = torch.zeros(capacity, dtype=torch.int32, **kw)  # index of the frame in its episode
        self.vector = torch.zeros((capacity, vector_size), dtype=torch.float32, **kw)
        self.action = torch.zeros((capacity, action_dim), dtype=torch.float32, **kw)
        self.reward = torch.zeros(capacity, dtype=torch.float32, **kw)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, **kw)
        self.starts = torch.zeros(capacity, dtype=torch.bool, **kw)  # slot starts a transition
        # Privileged targets of each observation (contract.privileged_targets), for an auxiliary loss;
        # NaN where unknown (an episode's first observation, which comes from a reset, not a step).
        self.target_size = target_size
        self.targets = torch.full((capacity, target_size), torch.nan, **kw) if target_size else None
        # Per stream: the slot its next observation goes to, its filled slots, and whether its latest
        # observation (cursor - 1) belongs to an episode still running.
        self.cursors = [k * segment for k in range(streams)]
        self.sizes = [0] * streams
        self.open = [False] * streams
        self.rng = torch.Generator(device=self.device).manual_seed(seed)

    # One stream (one env): the single ring's names.
    @property
    def cursor(self) -> int:
        return self.cursors[0]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    @property
    def episode_open(self) -> bool:
        return self.open[0]

    @episode_open.setter
    def episode_open(self, value: bool) -> None:
        self.open[0] = bool(value)

    def drop_episode(self, stream: int | None = None) -> None:
        """Forget that ``stream``'s (None: every stream's) episode is running: its next observation starts
        a new episode (after a lost episode, or on resume, where every env starts afresh)."""
        for k in range(self.streams) if stream is None else [stream]:
            self.open[k] = False

    def _wrap(self, slot: int, stream: int) -> int:
        base = stream * self.segment
        return base + (slot - base) % self.segment

    def _keys(self) -> tuple[str, ...]:
        """The per-slot tensors this buffer holds (checkpointed)."""
        keys = ("frame_pos", "vector", "action", "reward", "terminated", "starts")
        return keys + ("frames",) * (self.frames is not None) + ("targets",) * (self.targets is not None)

    def bytes_per_transition(self) -> float:
        tensors = [getattr(self, k) for k in self._keys()]
        return sum(t.element_size() * t.nelement() for t in tensors) / self.capacity

    def __len__(self) -> int:
        return int(self.starts.sum())

    def _write_obs(self, obs: dict[str, np.ndarray], pos: int, stream: int, targets: np.ndarray | None = None
                   ) -> int:
        i = self.cursors[stream]
        if self.frames is not None:
            self.frames[i] = torch.as_tensor(obs[IMAGE][-1])
        if self.targets is not None:
            self.targets[i] = torch.nan if targets is None else torch.as_tensor(targets)
        self.vector[i] = torch.as_tensor(obs[VECTOR])
        self.frame_pos[i] = pos
        self.starts[i] = False
        self.cursors[stream] = self._wrap(i + 1, stream)
        self.sizes[stream] = min(self.sizes[stream] + 1, self.segment)
        # The slot we overwrite ended the transition that started one slot earlier.
        self.starts[self._wrap(i - 1, stream)] = False
        return i

    def add(self, obs: dict[str, np.ndarray], action: np.ndarray, reward: float,
            next_obs: dict[str, np.ndarray], terminated: bool, truncated: bool, stream: int = 0,
            targets: np.ndarray | None = None) -> None:
        """Store one transition of env ``stream``. ``obs`` must be that stream's previous call's
        ``next_obs`` unless that call ended an episode (terminated or truncated). ``targets``:
        next_obs's privileged targets, for a buffer built with ``target_size``."""
        if not self.open[stream]:
            self._write_obs(obs, 0, stream)
        i = self._wrap(self.cursors[stream] - 1, stream)
        self.action[i] = torch.as_tensor(action)
        self.reward[i] = float(reward)
        self.terminated[i] = bool(terminated)
        self._write_obs(next_obs, int(self.frame_pos[i]) + 1, stream, targets)
        self.starts[i] = True
        self.open[stream] = not (terminated or truncated)

    def sample(self, batch_size: int, n_step: int = 1, gamma: float = 0.99, following: bool = False
               ) -> tuple:
        """(obs, action, reward, next_obs, discount) as tensors on the buffer's device, and with
        ``following`` a sixth item: s_{t+1}, whatever n_step is.

        ``reward`` = sum_{j<m} gamma^j r_{t+j} and ``next_obs`` = s_{t+m}, with m = n_step or fewer where
        the episode ends first (or where its next transition is not stored yet); ``discount`` = gamma^m,
        0 when the last of those transitions terminated. n_step=1: r_t, s_{t+1}, gamma (1 - done).
        A buffer with ``target_size`` adds obs[PRIVILEGED]: s_t's targets (NaN rows where unknown)."""
        idx = self._sample_starts(batch_size)
        reward = self.reward[idx]
        terminated = self.terminated[idx]
        last = idx  # the slot of the last transition summed
        discount = torch.full_like(reward, gamma)
        for _ in range(n_step - 1):
            nxt = self._next_slot(last)
            # Go on through transitions of the same episode that are stored: an episode's final slot,
            # and the current one's latest, start none (starts=False); after a termination, stop.
            go = self.starts[nxt] & ~terminated
            reward = reward + torch.where(go, discount * self.reward[nxt], 0.0)
            terminated = terminated | (go & self.terminated[nxt])
            discount = torch.where(go, discount * gamma, discount)
            last = torch.where(go, nxt, last)
        nxt = self._next_slot(last)
        obs, next_obs = {VECTOR: self.vector[idx]}, {VECTOR: self.vector[nxt]}
        if self.targets is not None:
            obs[PRIVILEGED] = self.targets[idx]
        if self.frames is not None:
            if n_step == 1 and self.stride == 1:
                # One gather of stack+1 frames serves both stacks: obs = frames[:-1], next_obs = frames[1:].
                frames = self._stacks(idx, self.stack + 1)
                obs[IMAGE], next_obs[IMAGE] = frames[:, :-1], frames[:, 1:]
            else:
                obs[IMAGE], next_obs[IMAGE] = self._stacks(idx, self.stack), self._stacks(nxt, self.stack)
        batch = (obs, self.action[idx], reward, next_obs, discount * (~terminated).float())
        if not following:
            return batch
        if n_step == 1:
            return (*batch, next_obs)
        one = self._next_slot(idx)  # a transition's next observation is always stored in the next slot
        then = {VECTOR: self.vector[one]}
        if self.frames is not None:
            then[IMAGE] = self._stacks(one, self.stack)
        return (*batch, then)

    def _stacks(self, idx: torch.Tensor, length: int) -> torch.Tensor:
        """(B, length, H, W): the ``stack`` frames of slot idx's observation (oldest first), then, for
        length = stack + 1 (stride 1 only), the next slot's newest frame. A frame k slots back belongs to
        the episode iff k <= frame_pos of the slot; the others read the zero row."""
        back = torch.arange(self.stack - 1, self.stack - 1 - length, -1, device=self.device) * self.stride
        base = (idx - idx % self.segment)[:, None]  # the stream's first slot
        slots = base + (idx[:, None] - base - back[None, :]) % self.segment
        in_episode = back[None, :] <= self.frame_pos[idx][:, None]
        slots = torch.where(in_episode, slots, self.capacity)  # the zero row
        # index_select copies whole frames (20x faster on CPU than advanced indexing's gather).
        frames = self._frame_rows.index_select(0, slots.view(-1))
        return frames.view(*slots.shape, *frames.shape[1:])

    def _next_slot(self, slot: torch.Tensor) -> torch.Tensor:
        base = slot - slot % self.segment
        return base + (slot - base + 1) % self.segment

    def _sample_starts(self, n: int) -> torch.Tensor:
        """Uniform over slots that start a transition whose stacks are intact. Slots within a stack's span
        after a full stream's cursor may reach back into overwritten frames, so they are redrawn."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        sizes = torch.tensor(self.sizes, device=self.device)
        ends = torch.cumsum(sizes, 0)  # draw u over all filled slots: stream k holds [ends[k-1], ends[k])
        cursors = torch.tensor(self.cursors, device=self.device)
        out = torch.empty(0, dtype=torch.long, device=self.device)
        while len(out) < n:
            cand = torch.randint(0, self.size, (2 * n,), generator=self.rng, device=self.device)
            if self.streams > 1:
                k = torch.searchsorted(ends, cand, right=True)
                cand = k * self.segment + cand - (ends[k] - sizes[k])
            ok = self.starts[cand]
            if self.stack:
                k = cand // self.segment
                full = sizes[k] == self.segment
                ok &= ~full | ((cand - cursors[k]) % self.segment >= self.span)
            out = torch.cat([out, cand[ok]])
        return out[:n]

    # --- checkpointing: the buffer is part of a run's resumable state --------------------------------------
    def state_dict(self) -> dict:
        """The filled slots only: until a stream's segment wraps they are its first slots (a checkpoint
        early in a run is as small as its data, not the preallocated capacity)."""
        keys = self._keys()
        if self.streams == 1:
            n = self.sizes[0]
            state = {k: getattr(self, k)[:n] for k in keys}
            state.update(cursor=self.cursors[0], size=n, episode_open=self.open[0], rng=self.rng.get_state())
            return state
        index = torch.cat([torch.arange(k * self.segment, k * self.segment + n, device=self.device)
                           for k, n in enumerate(self.sizes)])
        state = {k: getattr(self, k)[index] for k in keys}
        state.update(streams=self.streams, cursors=list(self.cursors), sizes=list(self.sizes),
                     open=list(self.open), rng=self.rng.get_state())
        return state

    def load_state_dict(self, state: dict) -> None:
        streams = int(state.get("streams", 1))
        if streams != self.streams:
            raise ValueError(f"the checkpoint's replay has {streams} streams (trainer.num_envs={streams}); "
                             f"this run has {self.streams}: resume with the num_envs it was started with")
        if (self.targets is not None) != ("targets" in state):
            raise ValueError("the checkpoint's replay " + ("lacks" if self.targets is not None else "holds")
                             + " privileged targets: resume with the agent.aux_weight it was started with")
        keys = self._keys()
        if streams == 1:
            for k in keys:
                getattr(self, k)[:len(state[k])].copy_(state[k])
            self.cursors, self.sizes = [int(state["cursor"])], [int(state["size"])]
            self.open = [bool(state["episode_open"])]
        else:
            self.cursors, self.sizes = [int(c) for c in state["cursors"]], [int(n) for n in state["sizes"]]
            self.open = [bool(o) for o in state["open"]]
            index = torch.cat([torch.arange(k * self.segment, k * self.segment + n, device=self.device)
                               for k, n in enumerate(self.sizes)])
            for k in keys:
                getattr(self, k)[index] = state[k].to(self.device)
        self.rng.set_state(state["rng"])
