"""What an env tells the trainer when its simulator fails. Pure Python (no simulator imports), so the
trainer can catch these on any machine."""

from __future__ import annotations


class EpisodeLost(Exception):
    """The simulator failed mid-episode (a worker process died, hung past env.step_timeout, or CARLA lost
    its server) and a fresh one is ready. The transition in flight is gone: drop it, count it, and call
    ``reset()`` for a new episode."""


class EnvFailed(RuntimeError):
    """The env failed env.max_reconnects times in a row (or its first start failed): the run stops with
    a checkpoint and this error; relaunching it resumes once the simulator works again."""
