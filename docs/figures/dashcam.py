"""docs/figures/dashcam.png: the embedded dashcam at three moments (the route's start, before a turn,
behind an NPC): its 256x144 RGB frame, the 84x84 and 36x36 gray images the policy sees, and the top-down
view of the same moment.

    python docs/figures/dashcam.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from av_td3.config import HighwayEnvConfig  # noqa: E402
from av_td3.envs.camera import TopDownCamera  # noqa: E402
from av_td3.envs.contract import to_gray_uint8  # noqa: E402
from av_td3.envs.highway import HighwayDrivingEnv  # noqa: E402

ROUTE = "right_90_r20.csv"


def place(vehicle, route, s: float, lateral: float = 0.0) -> None:
    yaw = route.yaw_at(s)
    vehicle.position = route.point_at(s) + lateral * np.array([-np.sin(yaw), np.cos(yaw)])
    vehicle.heading = yaw


def main() -> None:
    cfg = HighwayEnvConfig(camera="dashcam", route_file=ROUTE, image_height=84, image_width=84)
    env = HighwayDrivingEnv(cfg, 20, render_mode="rgb_array")
    env.reset(seed=2)
    top = TopDownCamera(HighwayEnvConfig(route_file=ROUTE, image_height=84, image_width=84, view_ahead=40.0,
                                         view_behind=8.0, render_scale=3), env.network, env.route)
    turn = env.route.turns()[0][0]
    npcs = [v for v in env.road.vehicles if v is not env.ego]
    moments = []
    for title, s_ego, npc_s in (("at the start", 0.0, None), (f"{15:.0f} m before the right turn", turn - 15, None),
                                ("behind an NPC, 12 m ahead", 60.0, 60.0 + 12 + 5)):
        place(env.ego, env.route, s_ego)
        for k, v in enumerate(npcs):  # NPCs out of sight, but for the one placed ahead
            place(v, env.route, min(env.route.length - 3, 40 + 30 * k), -cfg.reward.lane_width)
        if npc_s is not None:
            place(npcs[0], env.route, npc_s)
        rgb = env.camera.render(env.road.vehicles, env.ego).copy()
        moments.append((title, rgb, top.frame(env.road.vehicles, env.ego, rgb=True)[1]))
    fig, axes = plt.subplots(len(moments), 4, figsize=(14, 2.6 * len(moments)),
                             gridspec_kw={"width_ratios": [256 / 144, 1, 1, 1]})
    for row, (title, rgb, topdown) in zip(axes, moments):
        row[0].imshow(rgb)
        row[0].set_title(f"dashcam 256x144: {title}", fontsize=9)
        for ax, size in ((row[1], 84), (row[2], 36)):
            ax.imshow(to_gray_uint8(rgb, size, size), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(f"what the policy sees, {size}x{size}", fontsize=9)
        row[3].imshow(topdown)
        row[3].set_title("top-down view (env.camera=topdown)", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    out = Path(__file__).with_name("dashcam.png")
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
