"""Sensor data, matched to the frame the env just ticked.

CARLA delivers sensor data on its own threads. Taking "the latest callback" returns a frame from the
past (or, after an eval phase on the same server, from another env's ticks). Instead every datum is
stored with its frame number and the env asks for exactly the frame ``world.tick()`` returned.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from av_td3.envs.carla.errors import SensorTimeout
from av_td3.envs.contract import to_gray_uint8


class FrameMatcher:
    """A thread-safe queue of (frame, data) that hands out the datum of one frame.

    ``put`` runs on CARLA's sensor thread; ``wait(frame)`` drops everything older than ``frame`` and
    returns the datum of ``frame``, waiting up to ``timeout`` for it. The queue is bounded: while
    another env ticks the world this env's camera keeps producing frames nobody reads."""

    def __init__(self, name: str = "camera", maxlen: int = 64):
        self.name = name
        self._items: deque[tuple[int, Any]] = deque(maxlen=maxlen)
        self._cond = threading.Condition()

    def put(self, frame: int, data: Any) -> None:
        with self._cond:
            self._items.append((int(frame), data))
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def wait(self, frame: int, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._items and self._items[0][0] < frame:
                    self._items.popleft()  # stale: an earlier tick's (or another env's) frame
                if self._items:
                    got, data = self._items[0]
                    if got == frame:
                        self._items.popleft()
                        return data
                    # Sensor streams arrive in order: a newer frame means ours was never sent.
                    raise SensorTimeout(f"{self.name} frame {frame} was skipped (the next one is {got})")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SensorTimeout(f"no {self.name} data for frame {frame} within {timeout:.1f} s")
                self._cond.wait(remaining)


class EventLog:
    """Event-sensor data (collision, lane invasion, obstacle) by frame, thread-safe and bounded.

    Event sensors only send when something happens, so there is nothing to wait for; an event of frame
    f that arrives after ``world.tick()`` returned f is taken at the next step (one step late, never
    lost)."""

    def __init__(self, maxlen: int = 1024):
        self._items: deque[tuple[int, Any]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def put(self, frame: int, data: Any) -> None:
        with self._lock:
            self._items.append((int(frame), data))

    def take(self, up_to_frame: int) -> list[tuple[int, Any]]:
        """Remove and return every (frame, data) with frame <= ``up_to_frame``; later ones stay."""
        with self._lock:
            taken = [item for item in self._items if item[0] <= up_to_frame]
            kept = [item for item in self._items if item[0] > up_to_frame]
            self._items.clear()
            self._items.extend(kept)
        return taken

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def bgra_array(raw: bytes | np.ndarray, width: int, height: int) -> np.ndarray:
    """A carla.Image's ``raw_data`` (BGRA bytes, row-major) as an (height, width, 4) uint8 view."""
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4)


def bgra_to_gray(raw: bytes | np.ndarray, width: int, height: int, out_h: int, out_w: int) -> np.ndarray:
    """BGRA camera bytes -> the contract's grayscale (out_h, out_w) uint8 frame."""
    return to_gray_uint8(bgra_array(raw, width, height)[..., 2::-1], out_h, out_w)


def bgra_to_rgb(raw: bytes | np.ndarray, width: int, height: int) -> np.ndarray:
    return np.ascontiguousarray(bgra_array(raw, width, height)[..., 2::-1])


def nearest_obstacle(events: list[tuple[int, Any]], frame: int) -> tuple[float, Any]:
    """(distance, other actor) of the closest obstacle detected in ``frame``; (inf, None) when none.

    The obstacle sensor reports every frame something is in range, so only the current frame's
    detections describe the present."""
    best, other = math.inf, None
    for f, (distance, actor) in events:
        if f == frame and distance < best:
            best, other = float(distance), actor
    return best, other
