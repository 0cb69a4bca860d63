"""The embedded simulator's camera: highway-env's pygame rendering around the ego, heading up.

The static road is rendered once; each step a window of it around the ego gets the vehicles drawn on,
and a rotated grid of ``render_scale``^2 samples per image pixel is read from it and area-averaged to
grayscale. Every shortcut here (cached sprites and rotations, the luma table, the skipped fill) leaves
the pixels exactly as highway-env's own drawing calls would make them (tests/test_highway_env.py).
"""

from __future__ import annotations

import math
import os
import sys

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # offscreen rendering, no window or display needed

import numpy as np  # noqa: E402
import pygame  # noqa: E402
from highway_env.road.graphics import LaneGraphics, WorldSurface  # noqa: E402
from highway_env.road.road import RoadNetwork  # noqa: E402
from highway_env.vehicle.dynamics import BicycleVehicle  # noqa: E402
from highway_env.vehicle.graphics import VehicleGraphics  # noqa: E402
from highway_env.vehicle.kinematics import Vehicle  # noqa: E402

from av_td3.config.env import HighwayEnvConfig  # noqa: E402
from av_td3.envs.route import Route  # noqa: E402


def vehicle_sprite(surface: WorldSurface, length: float, width: float, color) -> pygame.Surface:
    """The unrotated sprite VehicleGraphics.display draws for a vehicle without tires (its rectangles,
    in its order, at ``surface``'s scaling): body, two headlights, black outline."""
    tire_length, headlight_length, headlight_width = 1, 0.72, 0.6  # display's constants
    full = length + 2 * tire_length
    sprite = pygame.Surface((surface.pix(full), surface.pix(full)), flags=pygame.SRCALPHA)
    body = (surface.pix(tire_length), surface.pix(full / 2 - width / 2), surface.pix(length), surface.pix(width))
    lights_x, lights_w = surface.pix(tire_length + length - headlight_length), surface.pix(headlight_length)
    left = (lights_x, surface.pix(full / 2 - (1.4 * width) / 3), lights_w, surface.pix(headlight_width))
    right = (lights_x, surface.pix(full / 2 + (0.6 * width) / 5), lights_w, surface.pix(headlight_width))
    pygame.draw.rect(sprite, color, body, 0)
    pygame.draw.rect(sprite, VehicleGraphics.lighten(color), left, 0)
    pygame.draw.rect(sprite, VehicleGraphics.lighten(color), right, 0)
    pygame.draw.rect(sprite, VehicleGraphics.BLACK, body, 1)
    return sprite


ROTATION_CACHE = 4096  # rotated sprites kept (~1 KB each); NPCs on a straight keep one heading for long


def rotate_sprite(image: pygame.Surface, angle: float) -> tuple:
    """What VehicleGraphics.blit_rotate computes before its blit, for an image rotated about its centre:
    (rotated image, origin_pos, min_box, max_box, pivot_move), each as blit_rotate has it."""
    w, h = image.get_size()
    box = [pygame.math.Vector2(p).rotate(angle) for p in [(0, 0), (w, 0), (w, -h), (0, -h)]]
    min_box = (min(box, key=lambda p: p[0])[0], min(box, key=lambda p: p[1])[1])
    max_box = (max(box, key=lambda p: p[0])[0], max(box, key=lambda p: p[1])[1])
    origin_pos = w / 2, h / 2
    pivot = pygame.math.Vector2(origin_pos[0], -origin_pos[1])
    pivot_move = pivot.rotate(angle) - pivot
    return pygame.transform.rotate(image, angle), origin_pos, min_box, max_box, pivot_move


_LUMA_TABLES: dict[bytes, np.ndarray] = {}


def luma_table(weights: np.ndarray) -> np.ndarray:
    """The float32 luma of every 24-bit colour (bytes 0-2 of a pixel; byte 3, alpha, has no weight), as
    the per-pixel product bytes @ weights computes it: 64 MB, built once per process (~0.4 s, by the
    first camera). A sample's luma is then one lookup instead of a byte conversion and a product (~40 us
    per 84x84 frame). tests/test_highway_env.py holds it to the product for all 2^24 colours and both
    alpha values, at the camera's shape."""
    key = weights.tobytes()
    table = _LUMA_TABLES.get(key)
    if table is None:
        table = np.empty(2**24, dtype=np.float32)
        # Products of at most 2048 rows: OpenBLAS keeps a gemv that small on the calling thread (larger
        # ones wake its worker threads, which then spin on the other cores after the call).
        colours = np.arange(2**24, dtype=np.uint32).view(np.uint8).reshape(-1, 2048, 4)
        for block, out in zip(colours, table.reshape(-1, 2048)):
            out[:] = block.astype(np.float32) @ weights
        _LUMA_TABLES[key] = table
    return table


class TopDownCamera:
    """highway-env's rendering around the ego, heading up: ``render`` gives (H k, W k) samples as the
    surface's packed 32-bit pixels, ``to_gray`` the (H, W) uint8 image, ``to_rgb`` the (H k, W k, 3) one."""

    def __init__(self, cfg: HighwayEnvConfig, network: RoadNetwork, route: Route):
        self.k = k = cfg.render_scale
        metres_per_pixel = (cfg.view_ahead + cfg.view_behind) / cfg.image_height
        self.scaling = k / metres_per_pixel  # rendered pixels per metre
        # Sample centres in the vehicle frame (forward, right), in rendered pixels: row 0 is farthest ahead.
        rows = (np.arange(cfg.image_height * k) + 0.5) / k
        cols = (np.arange(cfg.image_width * k) + 0.5) / k
        self.fwd = ((cfg.view_ahead - rows * metres_per_pixel) * self.scaling).astype(np.float32)
        self.right = ((cols - cfg.image_width / 2) * metres_per_pixel * self.scaling).astype(np.float32)
        # The window around the ego holds every sample at any heading (+2 px for the pixel-grid snap).
        radius = math.hypot(max(abs(self.fwd[0]), abs(self.fwd[-1])), abs(self.right[0])) + 2
        self.size = size = int(math.ceil(2 * radius))
        self.view = WorldSurface((size, size), 0, pygame.Surface((size, size), 0, 32))
        self.view.scaling = self.scaling
        self._sprites: dict[tuple, pygame.Surface] = {}  # unrotated vehicle sprites (see _draw)
        self._rotated: dict[tuple, tuple] = {}  # rotate_sprite's results by (sprite, angle)
        # Vehicles whose centre is farther than this from the window's centre draw nothing in it (the
        # window's half-diagonal plus 10 m, more than any vehicle sprite's half-diagonal): not drawn.
        self.draw_reach = size / math.sqrt(2) / self.scaling + 10.0
        self.row_stride = self.view.get_pitch() // 4  # uint32 pixels per surface row
        # Byte positions of R, G, B in a pixel (little-endian ints: a shift of 8 n is byte n).
        self.rgb_bytes = [shift // 8 if sys.byteorder == "little" else 3 - shift // 8
                          for shift in self.view.get_shifts()[:3]]
        self.luma = np.zeros(4, dtype=np.float32)
        self.luma[self.rgb_bytes] = (0.299, 0.587, 0.114)  # contract.to_gray_uint8's weights
        # Little-endian (alpha, which luma gives no weight, is byte 3): a sample's colour is its low 24
        # bits and its luma one lookup in the process's table; otherwise the per-pixel product.
        self.luma_lookup = luma_table(self.luma) if 3 not in self.rgb_bytes else None
        # The static road, rendered once with a margin of one view radius around the route.
        margin = radius / self.scaling + 2 * cfg.reward.lane_width
        lo, hi = route.xy.min(axis=0) - margin, route.xy.max(axis=0) + margin
        width, height = (int(math.ceil(d)) for d in (hi - lo) * self.scaling)
        self.road = WorldSurface((width, height), 0, pygame.Surface((width, height), 0, 32))
        self.road.scaling = self.scaling
        self.road.origin = lo
        self.road.fill(WorldSurface.BLACK)  # off the road
        lanes = network.lanes_list()
        for lane in lanes:
            LaneGraphics.draw_ground(lane, self.road, WorldSurface.GREY, lane.width / 2)
        for lane in lanes:
            LaneGraphics.display(lane, self.road)

    def render(self, vehicles: list[Vehicle], ego: Vehicle) -> np.ndarray:
        size, sc = self.size, self.scaling
        # Two-element geometry on floats (numpy's per-call cost is most of it), the same operations in
        # the same order as on the arrays. The window's origin sits on the road cache's pixel grid, so
        # the blit copies pixels 1:1.
        ex, ey = ego.position.tolist()
        rx, ry = self.road.origin.tolist()
        ox, oy = int(math.floor((ex - rx) * sc)) - size // 2, int(math.floor((ey - ry) * sc)) - size // 2
        vx, vy = rx + ox / sc, ry + oy / sc
        self.view.origin = np.array([vx, vy])
        if not (0 <= ox <= self.road.get_width() - size and 0 <= oy <= self.road.get_height() - size):
            self.view.fill(WorldSurface.BLACK)  # part of the window is off the cached road
        self.view.blit(self.road, (max(-ox, 0), max(-oy, 0)),
                       area=pygame.Rect(max(ox, 0), max(oy, 0), size, size))
        cx0, cy0 = vx + size / 2 / sc, vy + size / 2 / sc  # the window's centre
        for v in vehicles:
            x, y = v.position.tolist()
            if abs(x - cx0) <= self.draw_reach and abs(y - cy0) <= self.draw_reach:
                self._draw(v)
        # World = ego + fwd (cos h, sin h) + right (-sin h, cos h), in the window's pixels; the window is
        # large enough that every sample falls inside it.
        # numpy float64 scalars, as the array arithmetic gave: added to the float32 grids they promote
        # them to float64 (a Python float would not).
        cx, cy = np.float64((ex - vx) * sc), np.float64((ey - vy) * sc)
        c, s = math.cos(ego.heading), math.sin(ego.heading)
        px = np.add.outer(cx + self.fwd * c, -self.right * s).astype(np.int32)  # floor: all positive
        py = np.add.outer(cy + self.fwd * s, self.right * c).astype(np.int32)
        pixels = np.frombuffer(self.view.get_buffer(), dtype=np.uint32)  # row-major; locks the surface
        samples = pixels.take(py * self.row_stride + px)
        del pixels  # unlock before the next blit
        return samples

    def _draw(self, v: Vehicle) -> None:
        """VehicleGraphics.display(v, self.view, offscreen=True), pixel for pixel, with the unrotated
        sprite drawn once per (length, width, colour) and each rotation of it kept: display builds a
        new surface and four rectangles per vehicle per frame, then rotates it (NPCs in the full tier
        repeat their heading in ~60% of frames at light, ~90% at heavy). Vehicles of the classes
        display gives tires (plain Vehicle, BicycleVehicle) are drawn by display itself."""
        surface = self.view
        if type(v) in (Vehicle, BicycleVehicle):
            VehicleGraphics.display(v, surface, offscreen=True)
            return
        if not surface.is_visible(v.position):
            return
        color = VehicleGraphics.get_color(v, False)
        key = (v.LENGTH, v.WIDTH, color)
        sprite = self._sprites.get(key)
        if sprite is None:
            sprite = self._sprites[key] = vehicle_sprite(surface, v.LENGTH, v.WIDTH, color)
        h = v.heading if abs(v.heading) > 2 * np.pi / 180 else 0  # display's heading snap
        pos = [*surface.pos2pix(v.position[0], v.position[1])]
        angle = np.rad2deg(-h)
        rotated = self._rotated.get((key, angle))
        if rotated is None:
            if len(self._rotated) >= ROTATION_CACHE:
                self._rotated.clear()
            rotated = self._rotated[(key, angle)] = rotate_sprite(sprite, angle)
        image, origin_pos, min_box, max_box, pivot_move = rotated
        # VehicleGraphics.blit_rotate's upper-left corner, the same expression on the same floats.
        surface.blit(image, (pos[0] - origin_pos[0] + min_box[0] - pivot_move[0],
                             pos[1] - origin_pos[1] - max_box[1] + pivot_move[1]))

    def frame(self, vehicles: list[Vehicle], ego: Vehicle, rgb: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(the policy's (H, W) uint8 gray frame, the (H k, W k, 3) RGB render when ``rgb``, else None)."""
        samples = self.render(vehicles, ego)
        return self.to_gray(samples), (self.to_rgb(samples) if rgb else None)

    def to_gray(self, samples: np.ndarray) -> np.ndarray:
        """ITU-R 601 luma (as contract.to_gray_uint8) averaged over each k x k block: with an integer
        factor contract.resize_area's fractional-box resize is a plain block mean."""
        if self.luma_lookup is not None:
            luma = self.luma_lookup.take(samples & np.uint32(0xFFFFFF))
        else:
            luma = self._bytes(samples) @ self.luma
        k = self.k
        # Block mean as k^2 strided adds (numpy's reduction over small inner axes is ~10x slower).
        total = luma[0::k, 0::k].copy()
        for i, j in [(i, j) for i in range(k) for j in range(k)][1:]:
            total += luma[i::k, j::k]
        total /= k * k
        return total.round(out=total).clip(0, 255, out=total).astype(np.uint8)

    def to_rgb(self, samples: np.ndarray) -> np.ndarray:
        return self._bytes(samples)[..., self.rgb_bytes].astype(np.uint8)

    def _bytes(self, samples: np.ndarray) -> np.ndarray:
        return samples.view(np.uint8).reshape(*samples.shape, 4).astype(np.float32)
