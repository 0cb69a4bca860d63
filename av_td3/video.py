"""Evaluation videos (``trainer.eval_video=true``): the first episode of every evaluation phase, as the
policy sees it (the newest camera frame of its stack, upscaled) and, where the env renders RGB (the
embedded simulator), beside that render.

Written twice: ``RUN/videos/eval_<step>.gif`` and a TensorBoard video under ``eval/video`` (an animated
GIF in an image summary, which is what ``SummaryWriter.add_video`` writes, without its moviepy
dependency). Long episodes are subsampled evenly to at most ``MAX_FRAMES`` frames; the GIF's frame
duration keeps real time.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from av_td3.rundir import VIDEOS

MAX_FRAMES = 200  # per video: a 1000-frame episode is shown every 5th frame
HEIGHT = 144  # px of every panel
TAG = "eval/video"


class EpisodeFrames:
    """Collects one episode's frames: ``add(obs, env)`` after the reset and after every step."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def add(self, obs, env) -> None:
        panels = []
        image = obs.get("image") if isinstance(obs, dict) else None
        if image is not None and np.ndim(image) == 3:
            panels.append(_gray_panel(np.asarray(image)[-1]))  # the newest frame of the stack
        rgb = env.render() if getattr(env, "render_mode", None) == "rgb_array" else None
        if rgb is not None:
            panels.append(_rgb_panel(np.asarray(rgb)))
        if panels:
            self.frames.append(np.concatenate(panels, axis=1))


def _gray_panel(gray: np.ndarray) -> np.ndarray:
    k = max(1, HEIGHT // gray.shape[0])  # nearest-neighbour: the policy's pixels stay visible
    big = np.repeat(np.repeat(gray.astype(np.uint8), k, axis=0), k, axis=1)
    return _rgb_panel(np.stack([big] * 3, axis=-1))


def _rgb_panel(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    if h == HEIGHT:
        return rgb.astype(np.uint8)
    width = max(1, round(w * HEIGHT / h))
    return np.asarray(Image.fromarray(rgb.astype(np.uint8)).resize((width, HEIGHT), Image.NEAREST))


def to_gif(frames: list[np.ndarray], fps: float) -> bytes:
    """An animated GIF of ``frames`` (H x W x 3 uint8), subsampled to MAX_FRAMES, playing in real time."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to encode")
    stride = math.ceil(len(frames) / MAX_FRAMES)
    images = [Image.fromarray(f) for f in frames[::stride]]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 * stride / fps)))
    return out.getvalue()


def write(recorder: EpisodeFrames, run_dir: Path, step: int, fps: float, tb_writer=None) -> Path | None:
    """The recorded episode as ``RUN/videos/eval_<step>.gif`` and, given a SummaryWriter, as a
    TensorBoard video at ``step``. None when the env gave nothing to show (a vector-only task)."""
    if not recorder.frames:
        return None
    gif = to_gif(recorder.frames, fps)
    path = run_dir / VIDEOS / f"eval_{step:09d}.gif"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(gif)
    if tb_writer is not None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        h, w = recorder.frames[0].shape[:2]
        image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif)
        tb_writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=TAG, image=image)]), step)
    return path
