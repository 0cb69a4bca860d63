"""The learning levers, each doing what its setting says: exploration processes and their schedule,
n-step targets, DrQ's random shift, LayerNorm, the actor's saturation penalty, reward scale and clip,
action repeat."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from av_td3.agents.networks import mlp, random_shift
from av_td3.config import ClippingConfig, ConfigError, ExplorationConfig
from av_td3.envs.action_repeat import ActionRepeat
from av_td3.exploration import Explorer
from av_td3.metrics import EpisodeMetrics
from av_td3.replay import ReplayBuffer
from av_td3.trainer import crossed, learning_reward

BOX = spaces.Box(-1.0, 1.0, (2,), np.float32)


def noise_series(process: str, n: int = 20_000, seed: int = 0, **kw) -> np.ndarray:
    ex = Explorer(ExplorationConfig(process=process, std=1.0, **kw), BOX, seed, horizon=n)
    ex.reset()
    return np.array([ex.noise.sample() for _ in range(n)])


def autocorrelation(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).mean() / x.var())


def test_gaussian_is_white_with_unit_variance():
    x = noise_series("gaussian")
    assert x.std() == pytest.approx(1.0, abs=0.03) and abs(autocorrelation(x[:, 0], 1)) < 0.03


def test_ou_is_unit_variance_ar1():
    x = noise_series("ou", ou_theta=0.1)
    assert x.std() == pytest.approx(1.0, abs=0.15)
    for lag in (1, 5):  # an AR(1) with coefficient 1 - theta
        assert autocorrelation(x[:, 0], lag) == pytest.approx(0.9**lag, abs=0.05)


def test_pink_noise_has_a_1_over_f_spectrum():
    n = 4096
    x = noise_series("pink", n=n)[:, 0]
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(n)
    slope = np.polyfit(np.log(f[1:]), np.log(power[1:]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.2)  # white noise would give 0, Brownian -2
    assert autocorrelation(x, 1) > 0.3


def test_std_decays_linearly_then_holds():
    ex = Explorer(ExplorationConfig(std=1.0, final_std=0.2, decay_steps=100), BOX, 0, 10)
    assert [ex.std(s) for s in (0, 50, 100, 1000)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    assert Explorer(ExplorationConfig(std=0.3), BOX, 0, 10).std(10**6) == 0.3


def test_actions_are_policy_plus_scaled_noise_clipped():
    cfg = ExplorationConfig(process="gaussian", std=0.5)
    a, b = Explorer(cfg, BOX, 3, 10), Explorer(cfg, BOX, 3, 10)
    policy = np.array([0.2, 0.99], np.float32)
    acts = np.array([a.action(policy, 0) for _ in range(2000)])
    noise = np.array([b.noise.sample() for _ in range(2000)])
    np.testing.assert_allclose(acts, np.clip(policy + 0.5 * noise, -1, 1), atol=1e-6)
    assert acts.max() <= 1.0 and (acts[:, 1] == 1.0).mean() > 0.4


def test_warmup_uniform_or_from_the_process():
    uniform = Explorer(ExplorationConfig(), BOX, 0, 10)
    u = np.array([uniform.warmup_action() for _ in range(5000)])
    assert u.min() >= -1 and u.max() <= 1 and u.std() == pytest.approx(1 / math.sqrt(3), abs=0.02)
    ou = Explorer(ExplorationConfig(process="ou", warmup="process", warmup_std=0.5, ou_theta=0.05), BOX, 0, 10)
    w = np.array([ou.warmup_action() for _ in range(5000)])
    assert autocorrelation(w[:, 0], 1) > 0.9  # correlated in time, unlike uniform draws


def test_same_seed_same_noise_and_rng_state_restores_it():
    a = Explorer(ExplorationConfig(process="pink"), BOX, 7, 50)
    state = a.rng.bit_generator.state
    a.reset()
    first = [a.action(np.zeros(2), 0) for _ in range(60)]  # past the horizon: a new sequence
    a.rng.bit_generator.state = state
    a.reset()
    np.testing.assert_array_equal(first, [a.action(np.zeros(2), 0) for _ in range(60)])


def test_exploration_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="exploration.process"):
        ExplorationConfig(process="brown")
    with pytest.raises(ConfigError, match="exploration.decay_steps"):
        ExplorationConfig(final_std=0.1)


# --- n-step returns -------------------------------------------------------------------------------
def fill(buf: ReplayBuffer, rewards, terminated_last: bool) -> None:
    """One episode of len(rewards) transitions; the action's first entry is the step index."""
    obs = lambda t: {"vector": np.array([t], np.float32)}  # noqa: E731
    for t, r in enumerate(rewards):
        last = t == len(rewards) - 1
        buf.add(obs(t), np.array([t, 0], np.float32), r, obs(t + 1), last and terminated_last,
                last and not terminated_last)


@pytest.mark.parametrize("terminated", [True, False])
def test_n_step_targets_on_a_hand_made_trajectory(terminated):
    g, n = 0.9, 3
    rewards = [1.0, 2.0, 3.0, 4.0, 5.0]
    buf = ReplayBuffer(64, None, 1, 2, seed=0)
    fill(buf, rewards, terminated)
    fill(buf, [100.0, 100.0], False)  # a second episode the sums must never reach into
    obs, action, reward, next_obs, discount = buf.sample(512, n, g)
    seen = set()
    for k in range(512):
        t = int(action[k, 0])
        if obs["vector"][k, 0] != t or reward[k] >= 100:  # the second episode's transitions
            continue
        seen.add(t)
        m = min(n, len(rewards) - t)
        want = sum(g**j * rewards[t + j] for j in range(m))
        assert reward[k].item() == pytest.approx(want)
        assert next_obs["vector"][k, 0].item() == t + m
        ends = t + m == len(rewards)
        assert discount[k].item() == pytest.approx(0.0 if (ends and terminated) else g**m)
    assert seen == set(range(len(rewards)))


def test_n_step_stops_at_the_latest_stored_transition():
    buf = ReplayBuffer(64, None, 1, 2, seed=0)
    obs = lambda t: {"vector": np.array([t], np.float32)}  # noqa: E731
    for t in range(3):  # an episode still running: transitions 0, 1, 2 stored
        buf.add(obs(t), np.array([t, 0], np.float32), 1.0, obs(t + 1), False, False)
    _, action, reward, next_obs, discount = buf.sample(256, 5, 0.5)
    for k in range(256):
        t = int(action[k, 0])
        assert next_obs["vector"][k, 0].item() == 3  # never past the newest observation
        assert discount[k].item() == pytest.approx(0.5 ** (3 - t))


def test_n_step_image_stacks_are_the_later_observation():
    from test_replay import episodes

    buf = ReplayBuffer(500, (4, 6, 6), 3, 2, seed=0)
    stored = []
    for tr in episodes(200, 4, 6, seed=2):
        buf.add(*tr)
        stored.append(tr)
    by_id = {int(t[1][0]): t for t in stored}
    obs, action, _, next_obs, _ = buf.sample(64, 2, 0.99)
    for k in range(64):
        first = by_id[int(action[k, 0])]
        np.testing.assert_array_equal(obs["image"][k].numpy(), first[0]["image"])
        second = by_id.get(int(action[k, 0]) + 1)
        ended = first[4] or first[5]
        want = first[3] if ended or second is None else second[3]
        np.testing.assert_array_equal(next_obs["image"][k].numpy(), want["image"])


def test_following_is_the_one_step_next_observation_whatever_n_step():
    from test_replay import episodes

    buf = ReplayBuffer(64, None, 1, 2, seed=0)
    fill(buf, [1.0] * 6, True)
    fill(buf, [1.0] * 3, False)
    for n in (1, 3):
        obs, action, _, next_obs, _, following = buf.sample(256, n, 0.9, following=True)
        torch.testing.assert_close(following["vector"], obs["vector"] + 1)
        if n == 1:
            assert following is next_obs
        else:  # next_obs is up to n steps ahead; following stays one step ahead
            assert (next_obs["vector"] - obs["vector"]).max() == 3
    buf = ReplayBuffer(500, (4, 6, 6), 3, 2, seed=0)
    stored = {}
    for tr in episodes(200, 4, 6, seed=2):
        buf.add(*tr)
        stored[int(tr[1][0])] = tr
    _, action, _, _, _, following = buf.sample(64, 3, 0.99, following=True)
    for k in range(64):  # the transition's own next observation, stack and all
        np.testing.assert_array_equal(following["image"][k].numpy(), stored[int(action[k, 0])][3]["image"])


@pytest.mark.parametrize("pair", ["bootstrap", "consecutive"])
def test_the_consecutive_smoothness_pair_shares_its_shift(pair):
    """With s_t+1 = s_t, CAPS's term is zero when both images get the same shift (consecutive): the
    actor loss is the unpenalised one. The bootstrap pair shifts next_obs independently, so the term
    also penalises acting differently on two shifts of one image."""
    from test_td3 import random_batch

    obs, action, reward, _, discount = random_batch(0)
    batch = (obs, action, reward, obs, discount, obs)
    losses = {}
    for penalty in (0.0, 10.0):
        torch.manual_seed(3)
        agent = make_agent(augmentation="shift", shift_pad=2, encoder="shared", policy_delay=1,
                           smoothness_penalty=penalty, smoothness_pair=pair)
        assert agent.wants_following == (penalty > 0 and pair == "consecutive")
        losses[penalty] = float(agent.update(*batch)["actor_loss"])
    if pair == "consecutive":
        assert losses[10.0] == pytest.approx(losses[0.0], abs=1e-6)
    else:
        assert losses[10.0] > losses[0.0] + 1e-4


# --- the auxiliary loss on privileged targets -----------------------------------------------------------
def test_privileged_targets_come_from_the_step_info_scaled():
    from av_td3.envs.contract import (HEADING_TARGET_SCALE, LATERAL_SCALE, PRIVILEGED_TARGETS, privileged_targets,
                                      privileged_units)

    info = {"lateral_deviation": 0.7, "heading_error": -0.05, "obstacle_distance": 10.0, "time_to_collision": 2.0}
    t = privileged_targets(info, obstacle_range=20.0)
    assert t.dtype == np.float32 and t.shape == (len(PRIVILEGED_TARGETS),)
    np.testing.assert_allclose(t, [0.7 / LATERAL_SCALE, -0.05 / HEADING_TARGET_SCALE, 0.5, 5.0 / 30.0], rtol=1e-6)
    raw = [0.7, -0.05, 10.0, 5.0]  # the quantities in their units: the scales undo the scaling
    scales = [scale for scale, _ in privileged_units(20.0).values()]
    assert list(privileged_units(20.0)) == list(PRIVILEGED_TARGETS)
    np.testing.assert_allclose(t * np.array(scales), raw, rtol=1e-6)
    nothing_ahead = {**info, "obstacle_distance": math.inf, "time_to_collision": math.inf}
    np.testing.assert_array_equal(privileged_targets(nothing_ahead, 20.0)[2:], [1.0, 0.0])


def test_replay_keeps_each_observations_targets_and_none_for_a_reset():
    """Targets travel with the observation they describe (the step's next_obs); an episode's first
    observation, from a reset, has none (NaN), and a checkpoint keeps them."""
    buf = ReplayBuffer(64, None, 1, 2, seed=0, target_size=2)
    for episode in range(2):
        for t in range(4):
            buf.add({"vector": np.array([t], np.float32)}, np.array([t, 0], np.float32), 0.0,
                    {"vector": np.array([t + 1], np.float32)}, False, t == 3, targets=np.array([t + 1, -(t + 1)]))
    obs, action, *_ = buf.sample(256, 3, 0.9)
    first = obs["vector"][:, 0] == 0
    assert first.any() and obs["privileged"][first].isnan().all()
    torch.testing.assert_close(obs["privileged"][~first, 0], obs["vector"][~first, 0])
    torch.testing.assert_close(obs["privileged"][~first, 1], -obs["vector"][~first, 0])
    again = ReplayBuffer(64, None, 1, 2, seed=0, target_size=2)
    again.load_state_dict(buf.state_dict())
    torch.testing.assert_close(again.targets, buf.targets, equal_nan=True)
    with pytest.raises(ValueError, match="aux_weight"):
        ReplayBuffer(64, None, 1, 2, seed=0).load_state_dict(buf.state_dict())


def test_the_auxiliary_head_learns_the_targets_and_skips_unknown_ones():
    """aux_weight > 0: a head on the critic's CNN fits the targets (its loss falls), rows without
    targets add nothing, and the loss trains the CNN. aux_weight = 0 builds no head and asks for none."""
    from test_td3 import random_batch

    assert make_agent().critic.aux_head is None and not make_agent().wants_targets
    torch.manual_seed(0)
    agent = make_agent(encoder="shared", aux_weight=1.0)
    assert agent.wants_targets
    obs, action, reward, next_obs, discount = random_batch(0)
    # A target the image determines: the mean brightness of the newest frame, and its negative.
    brightness = obs["image"][:, -1].float().mean((1, 2)) / 127.5 - 1.0
    targets = torch.stack([brightness, -brightness, brightness, brightness], 1)
    targets[:5] = torch.nan  # reset observations
    obs = {**obs, "privileged": targets}
    losses = [float(agent.update(obs, action, reward, next_obs, discount)["aux_loss"]) for _ in range(60)]
    assert math.isfinite(losses[0]) and losses[-1] < 0.5 * losses[0]
    cnn_before = [p.clone() for p in agent.critic.encoder.parameters()]
    agent.aux_weight = 1e6  # the aux term dominates the CNN's gradient
    agent.update(obs, action, reward, next_obs, discount)
    assert any(not torch.equal(a, b) for a, b in zip(cnn_before, agent.critic.encoder.parameters()))


# --- image augmentation, LayerNorm, saturation penalty ------------------------------------------------
def test_random_shift_is_a_replicate_padded_crop():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 10, 12)
    torch.manual_seed(1)
    out = random_shift(x, pad=2)
    torch.manual_seed(1)
    dx, dy = torch.randint(0, 5, (2, 16))
    torch.testing.assert_close(out, random_shift_reference(x, dx, dy, pad=2), rtol=0, atol=0)
    assert len({(int(a), int(b)) for a, b in zip(dx, dy)}) > 4  # offsets differ across the batch
    cl = random_shift(x.contiguous(memory_format=torch.channels_last), pad=2)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    # The agent shifts the uint8 batch before its float conversion: the same crop, the same draws.
    u8 = (x * 255).to(torch.uint8)
    torch.manual_seed(1)
    out_u8 = random_shift(u8, pad=2)
    assert out_u8.dtype == torch.uint8
    torch.testing.assert_close(out_u8.float(), random_shift_reference(u8.float(), dx, dy, pad=2), rtol=0, atol=0)


def test_vertical_shift_moves_rows_only_with_the_same_draws():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 10, 10)
    both = random_shift(x, pad=2, generator=torch.Generator().manual_seed(5))
    rows = random_shift(x, pad=2, generator=torch.Generator().manual_seed(5), horizontal=False)
    dx, dy = torch.randint(0, 5, (2, 16), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(rows, random_shift_reference(x, torch.full_like(dx, 2), dy, pad=2), rtol=0, atol=0)
    torch.testing.assert_close(both, random_shift_reference(x, dx, dy, pad=2), rtol=0, atol=0)
    agent = make_agent(augmentation="shift_vertical", shift_pad=2)
    assert agent.shift_pad == 2 and not agent.shift_horizontal


def random_shift_reference(x, dx, dy, pad):
    """DrQ's shift written out: pad by edge replication, crop each sample at its own offset."""
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))])


def test_layer_norm_before_every_hidden_relu():
    net = mlp([5, 8, 8, 1], layer_norm=True)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"]
    assert "LayerNorm" not in [type(m).__name__ for m in mlp([5, 8, 1])]


def make_agent(**over):
    from test_td3 import make_agent as make

    return make(ClippingConfig(), **over)


def test_augmentation_and_layer_norm_agents_update():
    from test_td3 import random_batch

    agent = make_agent(augmentation="shift", shift_pad=2, layer_norm=True)
    assert any(isinstance(m, torch.nn.LayerNorm) for m in agent.critic.modules())
    for i in range(4):
        m = agent.update(*random_batch(i))
    assert torch.isfinite(m["critic_loss"]) and torch.isfinite(m["actor_loss"])


@pytest.mark.parametrize("penalty", [0.0, 1e-2])
def test_saturation_penalty_keeps_the_actor_out_of_the_tanh_tails(penalty):
    """A critic that always prefers larger actions pushes the pre-tanh output up without bound under
    Adam; the penalty holds it where its gradient meets the critic's."""
    from test_td3 import random_batch

    agent = make_agent(saturation_penalty=penalty, actor_lr=1e-2, policy_delay=1)
    head = agent.critic.heads[0]
    with torch.no_grad():  # Q = sum of the actions: dQ/da = 1 everywhere, the critic frozen
        for p in head.parameters():
            p.zero_()
        head[-1].bias.zero_()
        linears = [m for m in head if isinstance(m, torch.nn.Linear)]
        linears[0].weight[0, -2:] = 1.0  # unit 0 carries a0 + a1 + 10 (> 0, through every ReLU)
        linears[0].bias[0] = 10.0
        for layer in linears[1:]:
            layer.weight[0, 0] = 1.0
    agent.critic_opt.param_groups[0]["lr"] = 0.0
    for i in range(300):
        m = agent.update(*random_batch(i % 4))
    pre = float(m["actor_pre_tanh"])
    if penalty:
        assert pre < 3.0  # 2 c x = sech^2(x) at x ~ 2.3 for c = 1e-2
    else:
        assert pre > 5.0


# --- reward transform, action repeat --------------------------------------------------------------
def test_learning_reward_scales_then_clips():
    assert learning_reward(-250.0, 0.1, None) == pytest.approx(-25.0)
    assert learning_reward(-250.0, 0.1, 10.0) == -10.0 and learning_reward(3.0, 1.0, 1.0) == 1.0
    assert learning_reward(0.7, 1.0, None) == 0.7


class Counter(gym.Env):
    """Reward = the frame index; terminates at frame ``end``."""

    observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = BOX

    def __init__(self, end: int):
        self.end = end

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return (np.array([self.t], np.float32), float(self.t), self.t == self.end, False,
                {"t": self.t, "distance_travelled": 1.0, "route_completed": self.t == self.end,
                 "collision": False, "lane_invasion": False, "off_road": False, "dt": 0.05, "time_to_collision": math.inf,
                 "longitudinal_acceleration": 0.0, "lateral_acceleration": 0.0, "lateral_deviation": 0.0,
                 "marking_overlap": 0.0})


def test_action_repeat_sums_rewards_and_stops_at_the_episode_end():
    env = ActionRepeat(Counter(end=7), 3)
    env.reset()
    results = [env.step(np.zeros(2)) for _ in range(3)]
    assert [r[1] for r in results] == [1 + 2 + 3, 4 + 5 + 6, 7]
    assert [len(r[4]["frames"]) for r in results] == [3, 3, 1] and results[-1][2]
    metrics = EpisodeMetrics()
    for r in results:
        metrics.add(r[1], r[4])
    out = metrics.result()
    assert out["length"] == 7 and out["return"] == 28 and out["distance_m"] == 7 and out["success"] == 1


def test_intervals_count_env_frames():
    assert crossed(9, 10, 10) and not crossed(10, 11, 10) and crossed(8, 12, 10) and not crossed(3, 5, 0)
    assert [s for s in range(1, 31) if crossed(s - 1, s, 10)] == [10, 20, 30]
