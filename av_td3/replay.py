"""Replay memory that stores each camera frame once, as uint8, and rebuilds frame stacks at sampling.

Slot ``i`` holds one observation (its newest frame, its vector) and, if it is a transition's start, that
transition's action, reward and termination flag; the next observation is slot ``i + 1``. An episode's
last next-observation gets a slot of its own that starts no transition. Per 4x84x84 + 53-float
transition that is ~7.1 KB, against ~56 KB for float pairs of stacked frames (SB3) and ~226 KB for the
reference's float32 pairs.

A stack is rebuilt from the slots before its newest frame, zero-padded before the episode's first frame
(the env's stacks start as zeros too), so a sampled stack equals the stack the env returned.
"""

from __future__ import annotations

import numpy as np
import torch

from av_td3.envs.contract import IMAGE, VECTOR


class ReplayBuffer:
    def __init__(self, capacity: int, image_shape: tuple[int, ...] | None, vector_size: int,
                 action_dim: int, device: torch.device | str = "cpu", seed: int = 0):
        if image_shape is not None and capacity < 2 * image_shape[0] + 2:
            raise ValueError(f"replay capacity {capacity} is too small for {image_shape[0]}-frame stacks")
        self.capacity = capacity
        self.device = torch.device(device)
        self.stack = image_shape[0] if image_shape is not None else 0
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
        self.cursor = 0  # the slot the next observation goes to
        self.size = 0  # filled slots
        self.episode_open = False  # cursor - 1 holds the current episode's latest observation
        self.rng = torch.Generator(device=self.device).manual_seed(seed)

    def bytes_per_transition(self) -> float:
        tensors = [self.frame_pos, self.vector, self.action, self.reward, self.terminated, self.starts]
        if self.frames is not None:
            tensors.append(self.frames)
        return sum(t.element_size() * t.nelement() for t in tensors) / self.capacity

    def __len__(self) -> int:
        return int(self.starts.sum())

    def _write_obs(self, obs: dict[str, np.ndarray], pos: int) -> int:
        i = self.cursor
        if self.frames is not None:
            self.frames[i] = torch.as_tensor(obs[IMAGE][-1])
        self.vector[i] = torch.as_tensor(obs[VECTOR])
        self.frame_pos[i] = pos
        self.starts[i] = False
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        # The slot we overwrite ended the transition that started one slot earlier.
        self.starts[(i - 1) % self.capacity] = False
        return i

    def add(self, obs: dict[str, np.ndarray], action: np.ndarray, reward: float,
            next_obs: dict[str, np.ndarray], terminated: bool, truncated: bool) -> None:
        """Store one transition. ``obs`` must be the previous call's ``next_obs`` unless that call ended
        an episode (terminated or truncated)."""
        if not self.episode_open:
            self._write_obs(obs, 0)
        i = (self.cursor - 1) % self.capacity
        self.action[i] = torch.as_tensor(action)
        self.reward[i] = float(reward)
        self.terminated[i] = bool(terminated)
        self._write_obs(next_obs, int(self.frame_pos[i]) + 1)
        self.starts[i] = True
        self.episode_open = not (terminated or truncated)

    def sample(self, batch_size: int, n_step: int = 1, gamma: float = 0.99
               ) -> tuple[dict, torch.Tensor, torch.Tensor, dict, torch.Tensor]:
        """(obs, action, reward, next_obs, discount) as tensors on the buffer's device.

        ``reward`` = sum_{j<m} gamma^j r_{t+j} and ``next_obs`` = s_{t+m}, with m = n_step or fewer where
        the episode ends first (or where its next transition is not stored yet); ``discount`` = gamma^m,
        0 when the last of those transitions terminated. n_step=1: r_t, s_{t+1}, gamma (1 - done)."""
        idx = self._sample_starts(batch_size)
        reward = self.reward[idx]
        terminated = self.terminated[idx]
        last = idx  # the slot of the last transition summed
        discount = torch.full_like(reward, gamma)
        for _ in range(n_step - 1):
            nxt = (last + 1) % self.capacity
            # Go on through transitions of the same episode that are stored: an episode's final slot,
            # and the current one's latest, start none (starts=False); after a termination, stop.
            go = self.starts[nxt] & ~terminated
            reward = reward + torch.where(go, discount * self.reward[nxt], 0.0)
            terminated = terminated | (go & self.terminated[nxt])
            discount = torch.where(go, discount * gamma, discount)
            last = torch.where(go, nxt, last)
        nxt = (last + 1) % self.capacity
        obs, next_obs = {VECTOR: self.vector[idx]}, {VECTOR: self.vector[nxt]}
        if self.frames is not None:
            if n_step == 1:
                # One gather of stack+1 frames serves both stacks: obs = frames[:-1], next_obs = frames[1:].
                frames = self._stacks(idx, self.stack + 1)
                obs[IMAGE], next_obs[IMAGE] = frames[:, :-1], frames[:, 1:]
            else:
                obs[IMAGE], next_obs[IMAGE] = self._stacks(idx, self.stack), self._stacks(nxt, self.stack)
        return obs, self.action[idx], reward, next_obs, discount * (~terminated).float()

    def _stacks(self, idx: torch.Tensor, length: int) -> torch.Tensor:
        """(B, length, H, W): the ``stack`` frames of slot idx's observation (oldest first), then, for
        length = stack + 1, the next slot's newest frame. A frame k slots back belongs to the
        episode iff k <= frame_pos of the slot; the others read the zero row."""
        back = torch.arange(self.stack - 1, self.stack - 1 - length, -1, device=self.device)
        slots = (idx[:, None] - back[None, :]) % self.capacity
        in_episode = back[None, :] <= self.frame_pos[idx][:, None]
        slots = torch.where(in_episode, slots, self.capacity)  # the zero row
        # index_select copies whole frames (20x faster on CPU than advanced indexing's gather).
        frames = self._frame_rows.index_select(0, slots.view(-1))
        return frames.view(*slots.shape, *frames.shape[1:])

    def _sample_starts(self, n: int) -> torch.Tensor:
        """Uniform over slots that start a transition whose stacks are intact. Slots within ``stack``
        after the cursor may reach back into overwritten frames, so they are redrawn."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        out = torch.empty(0, dtype=torch.long, device=self.device)
        while len(out) < n:
            cand = torch.randint(0, self.size, (2 * n,), generator=self.rng, device=self.device)
            ok = self.starts[cand]
            if self.size == self.capacity and self.stack:
                ok &= (cand - self.cursor) % self.capacity >= self.stack
            out = torch.cat([out, cand[ok]])
        return out[:n]

    # --- checkpointing: the buffer is part of a run's resumable state --------------------------------------
    def state_dict(self) -> dict:
        """The filled slots only: until the ring wraps they are 0..size-1 (a checkpoint early in a run
        is as small as its data, not the preallocated capacity)."""
        n = self.size
        state = {k: getattr(self, k)[:n] for k in ("frame_pos", "vector", "action", "reward", "terminated",
                                                   "starts")}
        if self.frames is not None:
            state["frames"] = self.frames[:n]
        state.update(cursor=self.cursor, size=self.size, episode_open=self.episode_open,
                     rng=self.rng.get_state())
        return state

    def load_state_dict(self, state: dict) -> None:
        for k in ("frame_pos", "vector", "action", "reward", "terminated", "starts", "frames"):
            if k in state:
                getattr(self, k)[:len(state[k])].copy_(state[k])
        self.cursor, self.size = int(state["cursor"]), int(state["size"])
        self.episode_open = bool(state["episode_open"])
        self.rng.set_state(state["rng"])
