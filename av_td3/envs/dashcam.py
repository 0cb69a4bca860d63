"""The embedded simulator's dashcam: a pinhole camera over a flat world, with CARLA's mount and intrinsics.

The camera (``env.camera_*``: width x height pixels, horizontal field of view, ``camera_x`` m forward of
the ego's centre, ``camera_z`` m up, pitched up by ``camera_pitch`` degrees) sees, as an RGB frame:
- the ground: a raster of the road drawn once per route, ``RASTER_PPM`` pixels per metre (road surface,
  lane markings as the road has them: dashed between the lanes, solid at the edges; a light kerb band;
  grass beyond), with a fixed texture of small brightness blocks so that motion shows; each ground pixel
  is the raster's texel under the ray through the pixel's centre, out to ``FAR`` m; beyond it a haze;
- the sky above the horizon;
- NPC vehicles as boxes of their length and width and ``BOX_HEIGHT`` m, faces shaded by orientation,
  drawn far to near so that a near car hides a far one (clipped at the camera's near plane).
Pure numpy: the rays' ground points are fixed in the vehicle frame (a flat world, a fixed mount), so a
frame is one rotation and translation of them, one raster gather and a few box fills. The policy sees
the frame through ``contract.to_gray_uint8``, the function the CARLA env applies to its camera.

Frames: x forward, y right, z up (the world is left-handed like CARLA's: y right of x).
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # offscreen drawing, no window or display needed

import numpy as np  # noqa: E402
import pygame  # noqa: E402
from highway_env.road.lane import AbstractLane, LineType  # noqa: E402
from highway_env.road.road import RoadNetwork  # noqa: E402
from highway_env.vehicle.kinematics import Vehicle  # noqa: E402

from av_td3.envs.contract import to_gray_uint8  # noqa: E402
from av_td3.envs.route import Route  # noqa: E402

RASTER_PPM = 10.0  # raster pixels per metre (0.1 m texels: a 0.15 m marking is a texel or two wide)
FAR = 120.0  # m: ground farther ahead than this is haze
NEAR = 0.1  # m: the near clipping plane for boxes
BOX_HEIGHT = 1.5  # m
MARKING_WIDTH = 0.15  # m
DASH_LENGTH, DASH_PERIOD = 3.0, 4.33 + 3.0  # m (highway-env's stripes: 3 m painted, 4.33 m apart)
KERB_WIDTH = 0.8  # m beyond each road edge
MARGIN = 40.0  # m of grass drawn around the route (farther ground repeats the raster's edge texels)
SAMPLE_STEP = 0.25  # m between the points that outline lanes and markings in the raster

# Raster classes (palette blocks of TEXTURES shades each) and their base colours (RGB).
GRASS, ROAD, KERB, MARKING = range(4)
BASE = np.array([(108, 150, 74), (86, 86, 90), (182, 180, 172), (236, 236, 228)], dtype=np.float64)
TEXTURES = 4  # shades per class: the texture that makes motion visible
TEXTURE_BLOCK = {GRASS: 1.0, ROAD: 0.5, KERB: 0.5, MARKING: 0.5}  # m per texture block
SHADE = np.array([-1.5, -0.5, 0.5, 1.5]) * 6.0  # brightness steps of the shades (RGB units)
SKY_TOP, SKY_HORIZON, HAZE = (110, 160, 225), (188, 208, 228), (150, 164, 150)
# NPC body colours (RGB), one per vehicle in turn (env.npc_colours replaces them), and the shade of each
# face: top, front / back, sides. In the policy's gray the road is 77-95; the faces of the first four
# colours stay clear of it (dark blue 22-34, white 153-232, yellow 125-190, light blue 108-165), but the
# red car's front and back are 84 and its sides 68: from behind it is road-coloured.
BODY_COLOURS = np.array([(30, 34, 48), (232, 232, 232), (228, 196, 60), (118, 176, 228), (200, 64, 52)], dtype=np.float64)
FACE_SHADE = {"top": 1.0, "end": 0.82, "side": 0.66}


class DashCamera:
    """``frame(vehicles, ego)`` -> (the policy's gray image, the RGB frame when asked). One per route."""

    def __init__(self, cfg, network: RoadNetwork, route: Route):
        self.width, self.height = w, h = cfg.camera_width, cfg.camera_height
        self.out_shape = (cfg.image_height, cfg.image_width)
        self.f = w / 2 / math.tan(math.radians(cfg.camera_fov) / 2)  # focal length, pixels (square pixels)
        self.cx, self.cy = w / 2, h / 2  # principal point
        self.mount = np.array([cfg.camera_x, 0.0, cfg.camera_z])
        p = math.radians(cfg.camera_pitch)
        self.cos_p, self.sin_p = math.cos(p), math.sin(p)
        self._face_colours: dict[int, dict[str, int]] = {}  # by paint
        self.body_colours = BODY_COLOURS if cfg.npc_colours is None else np.array(cfg.npc_colours, dtype=np.float64)
        self._ground_rays()
        raster, self.origin, palette = road_raster(network, route)
        self._flat = raster.ravel()
        self.raster_shape = raster.shape
        # The frame is a 32-bit pygame surface (boxes are its polygons) whose pixels numpy writes too (the
        # ground): a packed colour per pixel, R G B in bytes 2 1 0 (BGRA in memory, as CARLA's images).
        self.surface = pygame.Surface((w, h), 0, 32)
        if self.surface.get_shifts()[:3] != (16, 8, 0) or np.little_endian is False:
            raise RuntimeError("the dashcam needs a little-endian 32-bit surface with R, G, B in bytes 2, 1, 0")
        self.pixels = np.frombuffer(self.surface.get_buffer(), dtype=np.uint32).reshape(h, -1)[:, :w]
        self.rgb = self.pixels.view(np.uint8).reshape(h, w, 4)[..., 2::-1]  # (h, w, 3) RGB view
        self.palette_rgb = palette  # (classes x TEXTURES, 3) uint8: the ground's colours
        self.palette = pack(palette)
        self.background = pack(self._background())

    # --- geometry -------------------------------------------------------------------------------------
    def _ground_rays(self) -> None:
        """Each pixel's ray in the vehicle frame; for the rows that meet the ground within FAR, the point
        (forward gx per row, right gy per pixel) where it does."""
        u = np.arange(self.width) + 0.5
        v = np.arange(self.height) + 0.5
        b = (u - self.cx) / self.f  # right per unit forward, in the camera frame
        c = -(v - self.cy) / self.f  # up per unit forward
        dx = self.cos_p - c * self.sin_p  # per row: the ray's forward and up in the vehicle frame
        dz = self.sin_p + c * self.cos_p
        t = np.where(dz < 0, self.mount[2] / np.maximum(-dz, 1e-12), np.inf)  # ray length to the ground
        forward = t * dx  # m ahead of the camera where the row meets the ground (centre column)
        # Ground rows: below the horizon and nearer than FAR; rows between the horizon and FAR are haze.
        self.horizon_row = int(np.searchsorted(-dz, 0.0, side="right"))  # first row looking down
        ground = np.flatnonzero((dz < 0) & (forward <= FAR))
        self.ground_row = int(ground[0]) if len(ground) else self.height
        rows = slice(self.ground_row, self.height)
        self.gx = (self.mount[0] + forward[rows]).astype(np.float32)  # (R,) forward of the ego's centre
        self.gy = (t[rows, None] * b[None, :]).astype(np.float32)  # (R, W) right of the ego's centre

    def _background(self) -> np.ndarray:
        """Sky (a vertical gradient) above the horizon, haze down to the first ground row."""
        frame = np.empty((self.height, self.width, 3), dtype=np.uint8)
        top, horizon = np.array(SKY_TOP, float), np.array(SKY_HORIZON, float)
        for r in range(self.height):
            if r < self.horizon_row:
                a = r / max(self.horizon_row - 1, 1)
                frame[r] = np.round(top + (horizon - top) * a)
            else:
                frame[r] = HAZE
        return frame

    # --- a frame --------------------------------------------------------------------------------------
    def frame(self, vehicles: list[Vehicle], ego: Vehicle, rgb: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(the policy's gray image, a copy of the RGB frame when ``rgb``, else None)."""
        image = self.render(vehicles, ego)
        gray = to_gray_uint8(image, *self.out_shape)
        return gray, (image.copy() if rgb else None)

    def render(self, vehicles: list[Vehicle], ego: Vehicle) -> np.ndarray:
        """The (height, width, 3) uint8 RGB frame (a view of the camera's buffer, valid until the next)."""
        pixels = self.pixels
        ex, ey = ego.position.tolist()
        c, s = math.cos(ego.heading), math.sin(ego.heading)
        pixels[:self.ground_row] = self.background[:self.ground_row]
        # Ground: the fixed ground points turned and moved with the ego, in raster texels, then one gather.
        ox, oy = self.origin
        ppm = RASTER_PPM
        gy = self.gy
        col = gy * np.float32(-s * ppm)
        col += (self.gx * np.float32(c * ppm) + np.float32((ex - ox) * ppm))[:, None]
        row = gy * np.float32(c * ppm)
        row += (self.gx * np.float32(s * ppm) + np.float32((ey - oy) * ppm))[:, None]
        rh, rw = self.raster_shape
        ix = np.clip(col, 0, rw - 1, out=col).astype(np.int32)
        iy = np.clip(row, 0, rh - 1, out=row).astype(np.int32)
        iy *= rw
        iy += ix
        pixels[self.ground_row:] = self.palette.take(self._flat.take(iy))
        self._draw_vehicles(vehicles, ego, ex, ey, c, s)
        return self.rgb

    def _draw_vehicles(self, vehicles, ego, ex: float, ey: float, c: float, s: float) -> None:
        tan_half = self.cx / self.f
        boxes = []
        for v in vehicles:
            if v is ego:
                continue
            x, y = v.position.tolist()
            fwd = (x - ex) * c + (y - ey) * s
            right = -(x - ex) * s + (y - ey) * c
            reach = 0.5 * math.hypot(v.LENGTH, v.WIDTH)
            if fwd + reach < self.mount[0] - 1.0 or fwd - reach > FAR or abs(right) - reach > (fwd + reach) * tan_half + 1.0:
                continue  # behind the camera, too far, or outside the field of view
            boxes.append((fwd * fwd + right * right, fwd, right, v))
        boxes.sort(key=lambda b: -b[0])  # far to near: near cars hide far ones
        for _, fwd, right, v in boxes:
            self._draw_box(fwd, right, float(v.heading) - float(ego.heading), v.LENGTH, v.WIDTH, self._colours(v))

    def _colours(self, v: Vehicle) -> dict[str, int]:
        """The vehicle's packed face colours: body colour ``v.paint`` (the env numbers its NPCs as it
        spawns them) of the body colours, shaded per face."""
        paint = getattr(v, "paint", 0) % len(self.body_colours)
        colours = self._face_colours.get(paint)
        if colours is None:
            body = self.body_colours[paint]
            colours = self._face_colours[paint] = {
                kind: int(pack(np.round(body * shade))) for kind, shade in FACE_SHADE.items()}
        return colours

    def _draw_box(self, fwd: float, right: float, yaw: float, length: float, width: float,
                  colours: dict[str, int]) -> None:
        """A box of ``length`` x ``width`` x BOX_HEIGHT centred at (fwd, right) on the ground, turned by
        ``yaw`` from the ego's heading: the faces that look towards the camera, each filled flat."""
        c, s = math.cos(yaw), math.sin(yaw)
        # The camera in the box's frame (x along the box, y to its right, z up): which faces it sees.
        cam_f, cam_r = self.mount[0] - fwd, -right
        lx, ly, lz = cam_f * c + cam_r * s, -cam_f * s + cam_r * c, self.mount[2]
        hl, hw, hh = length / 2, width / 2, BOX_HEIGHT
        faces = []
        if lz > hh:
            faces.append(("top", ((hl, -hw, hh), (hl, hw, hh), (-hl, hw, hh), (-hl, -hw, hh))))
        if abs(lx) > hl:
            e = hl if lx > 0 else -hl
            faces.append(("end", ((e, -hw, 0.0), (e, hw, 0.0), (e, hw, hh), (e, -hw, hh))))
        if abs(ly) > hw:
            e = hw if ly > 0 else -hw
            faces.append(("side", ((-hl, e, 0.0), (hl, e, 0.0), (hl, e, hh), (-hl, e, hh))))
        mx, mz, f, cx, cy = float(self.mount[0]), float(self.mount[2]), self.f, self.cx, self.cy
        cp, sp = self.cos_p, self.sin_p
        for kind, corners in faces:
            # Camera frame per corner: (depth along the optical axis, right, up).
            cam = []
            for a, b, z in corners:
                dx, dy, dz = fwd + a * c - b * s - mx, right + a * s + b * c, z - mz
                cam.append((dx * cp + dz * sp, dy, -dx * sp + dz * cp))
            cam = clip_near(cam)
            if cam is not None:
                pygame.draw.polygon(self.surface, colours[kind],
                                    [(cx + f * r / d, cy - f * u / d) for d, r, u in cam])


def clip_near(polygon: list[tuple[float, float, float]]) -> list[tuple[float, float, float]] | None:
    """The part of a polygon (camera-frame points: depth, right, up) in front of the near plane
    (Sutherland-Hodgman on one plane), or None when nothing of it is."""
    if all(p[0] >= NEAR for p in polygon):
        return polygon
    out = []
    for p, q in zip(polygon, polygon[1:] + polygon[:1]):
        if p[0] >= NEAR:
            out.append(p)
        if (p[0] >= NEAR) != (q[0] >= NEAR):
            t = (p[0] - NEAR) / (p[0] - q[0])
            out.append(tuple(pi + t * (qi - pi) for pi, qi in zip(p, q)))
    return out if len(out) >= 3 else None


def pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (...) uint32 pixels of the dashcam's surface (R << 16 | G << 8 | B)."""
    rgb = np.asarray(rgb).astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


# --- the road raster ------------------------------------------------------------------------------------
def road_raster(network: RoadNetwork, route: Route) -> tuple[np.ndarray, tuple[float, float], np.ndarray]:
    """(raster (rows = y, cols = x) of palette indices, its origin (x, y) in m, the (N, 3) uint8 palette):
    every lane's surface, kerbs beyond the road's edges, markings by the lanes' line types, grass."""
    lanes = network.lanes_list()
    pts = np.vstack([_outline(lane, 0.0) for lane in lanes] + [route.xy])
    lo = pts.min(axis=0) - MARGIN
    hi = pts.max(axis=0) + MARGIN
    size = np.ceil((hi - lo) * RASTER_PPM).astype(int)
    surface = pygame.Surface((int(size[0]), int(size[1])), depth=8)
    surface.fill(GRASS)

    def draw(polygon: np.ndarray, cls: int) -> None:
        pygame.draw.polygon(surface, cls, ((polygon - lo) * RASTER_PPM).tolist())

    for lane in lanes:  # kerb bands first: each lane's outer side, wider than the road
        draw(_band(lane, -lane.width / 2 - KERB_WIDTH, lane.width / 2 + KERB_WIDTH), KERB)
    for lane in lanes:
        draw(_band(lane, -lane.width / 2, lane.width / 2), ROAD)
    for lane in lanes:
        for side, kind in enumerate(lane.line_types):
            edge = (side - 0.5) * lane.width  # side 0: the lane's left edge (lateral -w/2)
            if kind in (LineType.CONTINUOUS, LineType.CONTINUOUS_LINE):
                draw(_band(lane, edge - MARKING_WIDTH / 2, edge + MARKING_WIDTH / 2), MARKING)
            elif kind == LineType.STRIPED:
                for s0 in np.arange(0.0, lane.length, DASH_PERIOD):
                    draw(_band(lane, edge - MARKING_WIDTH / 2, edge + MARKING_WIDTH / 2, s0,
                               min(s0 + DASH_LENGTH, lane.length)), MARKING)
    classes = pygame.surfarray.array2d(surface).T.astype(np.uint8)  # (rows = y, cols = x)
    # Texture: a fixed random shade per block (the same on every machine), block size per class.
    raster = classes * TEXTURES
    rng = np.random.default_rng(0)
    for cls, block in TEXTURE_BLOCK.items():
        n = max(int(round(block * RASTER_PPM)), 1)
        shades = rng.integers(0, TEXTURES, size=(-(-classes.shape[0] // n), -(-classes.shape[1] // n)), dtype=np.uint8)
        shades = np.repeat(np.repeat(shades, n, 0), n, 1)[:classes.shape[0], :classes.shape[1]]
        mask = classes == cls
        raster[mask] += shades[mask]
    palette = np.clip(np.round(BASE[:, None, :] + SHADE[None, :, None]), 0, 255).astype(np.uint8).reshape(-1, 3)
    return raster.astype(np.uint8), (float(lo[0]), float(lo[1])), palette


def _outline(lane: AbstractLane, lateral: float, s0: float = 0.0, s1: float | None = None) -> np.ndarray:
    s1 = lane.length if s1 is None else s1
    s = np.linspace(s0, s1, max(int(math.ceil((s1 - s0) / SAMPLE_STEP)), 1) + 1)
    return np.array([lane.position(float(si), lateral) for si in s])


def _band(lane: AbstractLane, lat0: float, lat1: float, s0: float = 0.0, s1: float | None = None) -> np.ndarray:
    """The polygon between two lateral offsets of a lane, from s0 to s1."""
    return np.vstack([_outline(lane, lat0, s0, s1), _outline(lane, lat1, s0, s1)[::-1]])
