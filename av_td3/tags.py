"""Every TensorBoard tag av-td3 writes, in one place.

The trainer writes these names and the analysis tools (validate, compare) read them, so a renamed tag
cannot silently break a check. The reference system's names are kept verbatim so its tooling still
reads our runs; the BEFORE-per-part, clip-coefficient and ``*_clipped`` tags are ours.
"""

NETWORKS = ("actor", "critic")
PARTS = ("cnn", "mlp")

# --- training -------------------------------------------------------------------------------------
ACTOR_LOSS = "train/actor_loss"
CRITIC_LOSS = "train/critic_loss"
Q1 = "train/q1_value"
Q2 = "train/q2_value"
EPISODE_REWARD = "train/episode_reward"
EPISODE_LENGTH = "train/episode_length"
STEPS_PER_SECOND = "train/steps_per_second"
EXPLORATION_NOISE = "train/exploration_noise"
RECONNECTS = "train/reconnects"  # episodes lost to simulator failures so far (written when one is lost)
AUX_LOSS = "train/aux_loss"  # the auxiliary head's error on the privileged targets (agent.aux_weight)
ACTOR_PRE_TANH = "train/actor_pre_tanh_abs"  # mean |actor output before tanh|: >~3 is a saturated actor


def reward_component(name: str) -> str:
    return f"rewards/{name}_component"


# --- gradient diagnostics ---------------------------------------------------------------------------
def grad_norm(net: str, when: str, part: str | None = None) -> str:
    """``debug/actor_grad_norm_BEFORE_clip``, ``debug/critic_cnn_grad_norm_AFTER_clip``, ..."""
    assert net in NETWORKS and when in ("BEFORE", "AFTER") and part in (None, *PARTS)
    middle = f"{net}_{part}" if part else net
    return f"debug/{middle}_grad_norm_{when}_clip"


def update_ratio(net: str, part: str | None = None) -> str:
    """||theta_after - theta_before|| / ||theta_before|| of one optimizer step: ``debug/actor_update_ratio``,
    ``debug/critic_cnn_update_ratio``, ... (a healthy step is ~1e-3; a frozen network's far below)."""
    assert net in NETWORKS and part in (None, *PARTS)
    return f"debug/{net}_{part}_update_ratio" if part else f"debug/{net}_update_ratio"


def clip_ratio(net: str) -> str:
    """AFTER / BEFORE of the whole network: min(1, max_norm / BEFORE) under norm clipping."""
    return f"debug/{net}_grad_clip_ratio"


def clipped(net: str) -> str:
    """1.0 on a logged update whose gradients clipping changed, 0.0 otherwise."""
    return f"debug/{net}_clipped"


def nonfinite_skips(net: str) -> str:
    """Cumulative number of updates of ``net`` skipped for a non-finite loss or gradient."""
    return f"debug/{net}_nonfinite_skips"


# --- alerts: written only when they fire, the value is the offending norm -----------------------------
# (network, part) -> the reference's tag stem; the level ("warning"/"critical") is appended.
ALERT_STEMS = {
    ("actor", "cnn"): "alerts/gradient_explosion",
    ("critic", "cnn"): "alerts/critic_gradient_explosion",
}
ALERT_LEVELS = ("warning", "critical")
NONFINITE_ALERT = "alerts/nonfinite_gradient"


def alert(net: str, part: str, level: str) -> str:
    return f"{ALERT_STEMS[(net, part)]}_{level}"


# --- evaluation -------------------------------------------------------------------------------------
EVAL_MEAN_REWARD = "eval/mean_reward"
EVAL_SUCCESS_RATE = "eval/success_rate"
EVAL_AVG_COLLISIONS = "eval/avg_collisions"
EVAL_AVG_LANE_INVASIONS = "eval/avg_lane_invasions"
EVAL_AVG_EPISODE_LENGTH = "eval/avg_episode_length"


def all_grad_tags(net: str) -> list[str]:
    """Every per-update gradient tag of one network (the validator's 'expected' list)."""
    tags = [grad_norm(net, w) for w in ("BEFORE", "AFTER")]
    tags += [grad_norm(net, w, p) for w in ("BEFORE", "AFTER") for p in PARTS]
    return tags + [clip_ratio(net), clipped(net)]


def clip_limit(net: str) -> str:
    """The whole-network max_norm in force (written beside the norms when the network is norm-clipped)."""
    return f"debug/{net}_grad_clip_limit"


def custom_scalars_layout() -> dict:
    """TensorBoard's Custom Scalars dashboard: per network, one chart of BEFORE and AFTER with the limit,
    one of the clip ratio, one of the update ratios (whole, cnn, mlp)."""
    layout = {}
    for net in NETWORKS:
        layout[net] = {
            f"{net} gradient norm: BEFORE, AFTER, limit": [
                "Multiline", [grad_norm(net, "BEFORE"), grad_norm(net, "AFTER"), clip_limit(net)]],
            f"{net} clip ratio (AFTER / BEFORE)": ["Multiline", [clip_ratio(net)]],
            f"{net} update ratio ||step|| / ||weights||": [
                "Multiline", [update_ratio(net)] + [update_ratio(net, p) for p in PARTS]],
        }
    return layout


# Older names that other TD3 code wrote for the same quantities, read as the canonical tag when a run
# lacks it (analysis.runs applies them on reading). Each alias says where it comes from.
ALIASES: dict[str, str] = {
    # The reference system before its gradient-clipping fix (docs/reference.md):
    # per-part norms logged after clipping under gradients/, summed over parameters (so parts/<net>
    # shows their factor against the whole).
    **{f"gradients/{net}_{part}_norm": grad_norm(net, "AFTER", part) for net in NETWORKS for part in PARTS},
}
