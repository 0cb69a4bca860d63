"""NPC traffic and actor clean-up with batch commands (one round trip for a hundred actors).

The choices (which spawn points, which blueprints) are pure functions of a seeded generator, so a
scenario's traffic is reproducible per episode seed; the Traffic Manager is seeded separately.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)


def choose_spawn_points(points_xy: np.ndarray, avoid_xy: np.ndarray, n: int, min_distance: float,
                        rng: np.random.Generator) -> list[int]:
    """Indices of up to ``n`` distinct spawn points at least ``min_distance`` from ``avoid_xy``, in a
    random order. Fewer when the map has fewer (the caller logs it)."""
    points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    far = np.flatnonzero(np.linalg.norm(points_xy - np.asarray(avoid_xy)[:2], axis=1) >= min_distance)
    return [int(i) for i in rng.permutation(far)[:max(n, 0)]]


def four_wheeled(blueprints) -> list:
    """Cars, vans and trucks (no bikes or motorbikes), sorted by id so choices depend only on the seed."""
    keep = [bp for bp in blueprints
            if not bp.has_attribute("number_of_wheels") or int(bp.get_attribute("number_of_wheels")) == 4]
    return sorted(keep, key=lambda bp: bp.id)


def spawn_npcs(carla, client, blueprints: Sequence, spawn_points: Sequence, avoid_xy: np.ndarray, n: int,
               min_distance: float, tm_port: int, rng: np.random.Generator, role_name: str) -> list[int]:
    """Spawn ``n`` NPC vehicles on autopilot under the Traffic Manager at ``tm_port`` in one batch (no
    tick: they appear with the caller's next tick). Each carries ``role_name`` so a clean-up can find
    them even when the batch's reply was lost. Returns the ids spawned; spawns that failed (a point
    already occupied) are skipped."""
    if n <= 0:
        return []
    xy = np.array([[p.location.x, p.location.y] for p in spawn_points])
    chosen = choose_spawn_points(xy, avoid_xy, n, min_distance, rng)
    if len(chosen) < n:
        log.warning("only %d spawn points are %.0f m from the ego; spawning %d of %d NPCs",
                    len(chosen), min_distance, len(chosen), n)
    SpawnActor, SetAutopilot, FutureActor = (carla.command.SpawnActor, carla.command.SetAutopilot,
                                             carla.command.FutureActor)
    batch = []
    for i in chosen:
        bp = blueprints[int(rng.integers(len(blueprints)))]
        if bp.has_attribute("color"):  # else the server picks a colour at random, outside our seed
            colors = bp.get_attribute("color").recommended_values
            if colors:
                bp.set_attribute("color", colors[int(rng.integers(len(colors)))])
        bp.set_attribute("role_name", role_name)
        batch.append(SpawnActor(bp, spawn_points[i]).then(SetAutopilot(FutureActor, True, tm_port)))
    responses = client.apply_batch_sync(batch, False)
    ids = [r.actor_id for r in responses if not r.error]
    if len(ids) < len(batch):
        log.info("%d of %d NPC spawns failed (%s)", len(batch) - len(ids), len(batch),
                 next(r.error for r in responses if r.error))
    return ids


def destroy_actors(carla, client, ids: Sequence[int], tick: bool = False) -> list[int]:
    """Destroy ``ids`` in one batch; returns those the server still reported an error for (other than
    'not found', which means already gone)."""
    if not ids:
        return []
    responses = client.apply_batch_sync([carla.command.DestroyActor(int(i)) for i in ids], tick)
    failed = [int(i) for i, r in zip(ids, responses) if r.error and "not found" not in r.error.lower()]
    if failed:
        log.warning("could not destroy actors %s: %s", failed,
                    next(r.error for r in responses if r.error))
    return failed
