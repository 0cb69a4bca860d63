"""An env in a supervised child process: a simulator that dies or hangs costs one episode, not the run.

Why a process: CARLA 0.9.16's Traffic Manager makes RPCs from a C++ worker thread with no exception
handling, so a server that dies mid-episode makes the client call ``std::terminate`` and aborts the whole
Python process (carla-simulator/carla#4072, #4577, #6748): no ``except``, no checkpoint, no error.txt. In
a child process that abort kills only the child, and the parent sees a closed pipe.

``SupervisedEnv`` has the env's Gymnasium API (spaces, ``reset``, ``step``, ``render``, ``close``). Every
call gets a deadline (``env.step_timeout``); the supervisor replaces the worker, by its pid, when it
- died (the pipe closed: a crash, an abort, SIGKILL), or
- did not answer within the deadline (a hung tick, SIGSTOP),
and then raises ``EpisodeLost``: the trainer drops the transition in flight, counts it and resets. The
env's own ``EpisodeLost`` (CARLA's, after it reconnected and rebuilt the episode inside the worker) and
``EnvFailed`` (its reconnects gave up) are passed on as they are. Any other exception inside the worker
is a bug or a bad setting, not a simulator failure: it is raised in the parent as ``EnvWorkerError``
with the worker's traceback, and the worker is left running.

A replacement is retried with exponential backoff (``env.reconnect_delay`` doubling, at most 60 s); after
``env.max_reconnects`` failures in a row (a failure followed by no successful call) it raises
``EnvFailed``. Workers start with multiprocessing's ``spawn``: a fresh interpreter, no threads or
simulator handles inherited from the trainer.

Why not gymnasium.vector.AsyncVectorEnv: it has no per-call deadline it can recover from (``step_wait``'s
timeout raises and leaves the vector env unusable, "Tried to step environment that timed out"), a worker
that dies surfaces as an exception on the next pipe read with no replacement, and it auto-resets episodes
itself, while the trainer owns episode boundaries and seeds (exact resume).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from av_td3.envs.errors import EnvFailed, EpisodeLost

log = logging.getLogger("av_td3")

MAX_BACKOFF_S = 60.0


class EnvWorkerError(RuntimeError):
    """The env raised inside its worker (not a simulator failure); the message holds its traceback."""


def _serve(conn, build: Callable[[], gym.Env]) -> None:
    """The worker's loop: build the env, answer (command, argument) messages until ``close``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle (it closes us)
    try:
        env = build()
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("error", (f"{type(e).__name__}: {e}", traceback.format_exc())))
        return
    conn.send(("ok", {"observation_space": env.observation_space, "action_space": env.action_space,
                      "metadata": env.metadata, "render_mode": env.render_mode}))
    while True:
        try:
            command, arg = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            if command == "step":
                out = env.step(arg)
            elif command == "reset":
                out = env.reset(**arg)
            elif command == "render":
                out = env.render()
            elif command == "suspend":  # another env on the same simulator is about to drive
                suspend = getattr(env.unwrapped, "suspend", None)
                out = suspend() if suspend is not None else None
            elif command == "close":
                env.close()
                conn.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown worker command {command!r}")
        except EpisodeLost as e:
            conn.send(("lost", f"{type(e).__name__}: {e}"))
            continue
        except EnvFailed as e:  # the env gave up by itself (CARLA: its reconnects in a row failed)
            conn.send(("failed", f"{type(e).__name__}: {e}"))
            continue
        except Exception as e:  # noqa: BLE001 - sent to the parent with its traceback
            conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
            continue
        conn.send(("ok", out))


class Turns:
    """The envs of a run that share one simulator (the train and eval env on one CARLA server) take
    turns: before one of them is stepped or reset, the one that drove last is told to ``suspend``
    (CARLA: park its ego, remove its NPCs, stop its sensors, set its Traffic Manager asynchronous), so
    only one env ticks the world and only one Traffic Manager is synchronous. Envs in one process do
    this themselves (envs/carla/share.py); across worker processes the supervisor does it."""

    def __init__(self) -> None:
        self.active: SupervisedEnv | None = None

    def take(self, env: "SupervisedEnv") -> None:
        previous, self.active = self.active, env
        if previous is not None and previous is not env and previous._process is not None:
            try:
                previous._call("suspend", None)
            except EpisodeLost as e:  # it will be rebuilt anyway; its next call starts a new episode
                log.warning("%s env: suspending it failed: %s", previous.name, e)


class SupervisedEnv(gym.Env):
    """``build()`` (picklable, e.g. a functools.partial) makes the env inside a worker process."""

    def __init__(self, build: Callable[[], gym.Env], *, name: str, step_timeout: float,
                 start_timeout: float, max_reconnects: int, reconnect_delay: float,
                 turns: Turns | None = None):
        self.build, self.name, self.turns = build, name, turns
        self.step_timeout, self.start_timeout = step_timeout, start_timeout
        self.max_reconnects, self.reconnect_delay = max_reconnects, reconnect_delay
        self.replacements = 0  # workers replaced after a failure, over this object's life
        self._failures = 0  # failures since the last call that succeeded
        self._ctx = mp.get_context("spawn")
        self._process = self._conn = None
        self._pending: str | None = None  # the command step_async sent, until step_wait reads it
        self._sent_to_dead = False
        spaces = self._start()  # the first start gets no retries: a bad config should fail at once
        self.observation_space, self.action_space = spaces["observation_space"], spaces["action_space"]
        self.metadata, self.render_mode = spaces["metadata"], spaces["render_mode"]

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # --- gymnasium API --------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.turns is not None:
            self.turns.take(self)
        return self._call("reset", {"seed": seed, "options": options})

    def step(self, action):
        if self.turns is not None:
            self.turns.take(self)
        return self._call("step", action)

    def render(self):
        return self._call("render", None)

    def close(self) -> None:
        if self._process is None:
            return
        try:
            self._conn.send(("close", None))
            if self._conn.poll(min(self.step_timeout, 10.0)):
                self._conn.recv()
        except (OSError, EOFError):
            pass
        self._kill()

    # --- supervision ----------------------------------------------------------------------------------
    def _start(self) -> dict[str, Any]:
        parent, child = self._ctx.Pipe()
        self._process = self._ctx.Process(target=_serve, args=(child, self.build), daemon=True,
                                          name=f"av-td3 {self.name} env")
        self._process.start()
        child.close()  # the worker holds its end: its death closes the pipe for us
        self._conn = parent
        if not parent.poll(self.start_timeout):
            self._kill()
            raise EnvFailed(f"the {self.name} env's worker did not start within {self.start_timeout:g} s "
                            f"(env.start_timeout)")
        try:
            kind, payload = parent.recv()
        except EOFError:
            code = self._kill()
            raise EnvFailed(f"the {self.name} env's worker died while starting (exit code {code})") from None
        if kind != "ok":
            self._kill()
            message, worker_traceback = payload
            error = EnvFailed(f"the {self.name} env could not be built in its worker: {message}")
            error.worker_traceback = worker_traceback  # for error.txt; the console gets the one line
            raise error
        return payload

    def _call(self, command: str, arg):
        self._send(command, arg)
        return self._receive(command)

    def step_async(self, action) -> None:
        """Send a step and return at once; ``step_wait`` reads its result (parallel envs: send to all,
        then read all)."""
        if self.turns is not None:
            self.turns.take(self)
        self._pending = self._send("step", action)

    def step_wait(self):
        command, self._pending = self._pending, None
        if command is None:
            raise RuntimeError("step_wait() without step_async()")
        return self._receive(command)

    def _send(self, command: str, arg) -> str:
        """Send ``command``; a worker found dead on sending is noted, and ``_receive`` replaces it."""
        if self._process is None:
            self._replace("no worker is running")
        try:
            self._conn.send((command, arg))
        except (OSError, EOFError):
            self._sent_to_dead = True
        return command

    def _receive(self, command: str):
        try:
            if self._sent_to_dead:
                raise EOFError
            if not self._conn.poll(self.step_timeout):
                return self._lost(f"no answer to {command} within env.step_timeout={self.step_timeout:g} s")
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            self._sent_to_dead = False
            return self._lost(f"its worker (pid {self.pid}) died during {command}")
        if kind == "lost":  # the env rebuilt its episode itself (CARLA's reconnect): the worker is sound
            raise EpisodeLost(f"{self.name} env: {payload}")
        if kind == "failed":
            raise EnvFailed(f"the {self.name} env gave up in its worker: {payload}")
        if kind == "error":
            raise EnvWorkerError(f"the {self.name} env raised in its worker during {command}: {payload}")
        self._failures = 0
        return payload

    def _lost(self, why: str):
        pid = self.pid
        self._kill()
        self._replace(why)
        raise EpisodeLost(f"{self.name} env: {why}; worker {pid} replaced by {self.pid}")

    def _replace(self, why: str) -> None:
        """Start a new worker with backoff; EnvFailed after max_reconnects failures in a row."""
        while True:
            self._failures += 1
            if self._failures > self.max_reconnects:
                raise EnvFailed(f"the {self.name} env failed {self._failures} times in a row (env.max_reconnects="
                                f"{self.max_reconnects}); last: {why}")
            delay = min(self.reconnect_delay * 2 ** (self._failures - 1), MAX_BACKOFF_S)
            log.warning("%s env: %s; starting a new worker in %.1f s (failure %d of at most %d in a row)",
                        self.name, why, delay, self._failures, self.max_reconnects)
            time.sleep(delay)
            try:
                self._start()
                self.replacements += 1
                return
            except EnvFailed as e:
                why = str(e)

    def _kill(self) -> int | None:
        """Kill the worker by its pid (SIGKILL works on a stopped process too) and reap it."""
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is None:
            return None
        if process.is_alive():
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.join(5.0)
        return process.exitcode
