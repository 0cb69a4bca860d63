"""The frame-once replay buffer returns exactly the stacks the env produced."""

import numpy as np
import pytest
import torch

from av_td3.envs.contract import FrameStack
from av_td3.replay import ReplayBuffer


def episodes(n_transitions: int, stack: int, hw: int, seed: int, stride: int = 1):
    """Yield (obs, action, reward, next_obs, terminated, truncated) like a real env with FrameStack:
    random episode lengths, some terminated, some truncated; the action holds the transition id."""
    rng = np.random.default_rng(seed)
    fs = FrameStack(stack, hw, hw, stride)
    tid = 0
    while tid < n_transitions:
        length = int(rng.integers(1, 12))
        fs.reset()
        obs = {"image": fs.push(rng.integers(0, 256, (hw, hw), dtype=np.uint8)),
               "vector": rng.normal(size=3).astype(np.float32)}
        for t in range(length):
            nxt = {"image": fs.push(rng.integers(0, 256, (hw, hw), dtype=np.uint8)),
                   "vector": rng.normal(size=3).astype(np.float32)}
            last = t == length - 1
            terminated = last and bool(rng.integers(0, 2))
            yield obs, np.array([tid, 0.5], np.float32), float(rng.normal()), nxt, terminated, last and not terminated
            tid += 1
            obs = nxt


@pytest.mark.parametrize("stride", [1, 3])  # frames 1 or 3 slots apart (env.frame_stride)
@pytest.mark.parametrize("capacity", [40, 1000])  # 40 wraps around many times
def test_sampled_transitions_equal_what_was_stored(capacity, stride):
    buf = ReplayBuffer(capacity, (4, 6, 6), 3, 2, seed=0, frame_stride=stride)
    truth = {}
    for obs, action, reward, nxt, term, trunc in episodes(300, 4, 6, seed=1, stride=stride):
        buf.add(obs, action, reward, nxt, term, trunc)
        truth[int(action[0])] = (obs, reward, nxt, term)
    for _ in range(5):
        o, a, r, n, discount = buf.sample(64, 1, 0.99)
        for k in range(64):
            obs, reward, nxt, term = truth[int(a[k, 0])]
            np.testing.assert_array_equal(o["image"][k].numpy(), obs["image"])
            np.testing.assert_array_equal(n["image"][k].numpy(), nxt["image"])
            np.testing.assert_array_equal(o["vector"][k].numpy(), obs["vector"])
            np.testing.assert_array_equal(n["vector"][k].numpy(), nxt["vector"])
            assert r[k].item() == pytest.approx(reward)
            assert discount[k].item() == pytest.approx(0.0 if term else 0.99)
    if capacity == 40:  # only recent transitions survive the wrap-around
        assert min(int(a[k, 0]) for k in range(64)) > 300 - capacity - 12


def test_bytes_per_transition_84x84x4():
    buf = ReplayBuffer(1000, (4, 84, 84), 53, 2)
    assert buf.bytes_per_transition() < 7.5 * 1024
    assert buf.bytes_per_transition() >= 84 * 84  # each frame stored once


def test_state_dict_round_trip():
    a = ReplayBuffer(50, (2, 4, 4), 3, 2, seed=3)
    for tr in episodes(30, 2, 4, seed=2):
        a.add(*tr)
    b = ReplayBuffer(50, (2, 4, 4), 3, 2, seed=99)
    b.load_state_dict(a.state_dict())
    sa, sb = a.sample(16), b.sample(16)
    torch.testing.assert_close(sa[1], sb[1])
    torch.testing.assert_close(sa[0]["image"], sb[0]["image"])


def test_vector_only_observations():
    buf = ReplayBuffer(20, None, 3, 1)
    rng = np.random.default_rng(0)
    o = {"vector": rng.normal(size=3).astype(np.float32)}
    for t in range(30):
        n = {"vector": rng.normal(size=3).astype(np.float32)}
        buf.add(o, np.array([t], np.float32), 0.0, n, False, t % 7 == 6)
        o = n
    obs, *_ = buf.sample(8)
    assert "image" not in obs and obs["vector"].shape == (8, 3)


def test_checkpoint_holds_only_the_filled_slots():
    buf = ReplayBuffer(10_000, (4, 6, 6), 3, 2, seed=0)
    for tr in episodes(100, 4, 6, seed=3):
        buf.add(*tr)
    state = buf.state_dict()
    assert len(state["frames"]) == buf.size < 200 and len(state["vector"]) == buf.size
    fresh = ReplayBuffer(10_000, (4, 6, 6), 3, 2, seed=5)
    fresh.load_state_dict(state)
    torch.manual_seed(0)
    a = buf.sample(32)
    b = fresh.sample(32)
    for x, y in zip(a, b):
        for u, v in (zip(x.values(), y.values()) if isinstance(x, dict) else [(x, y)]):
            torch.testing.assert_close(u, v)


@pytest.mark.parametrize("capacity", [80, 1000])  # 80: each of the 2 streams wraps many times
@pytest.mark.parametrize("n_step", [1, 3])
def test_streams_of_parallel_envs_keep_their_episodes_apart(capacity, n_step):
    """Two envs' transitions interleaved step by step (trainer.num_envs=2): every sampled transition has
    its own env's stacks, and n-step returns never run into the other env's episode."""
    buf = ReplayBuffer(capacity, (4, 6, 6), 3, 2, seed=0, streams=2)
    truth, gens = {}, [episodes(300, 4, 6, seed=1), episodes(300, 4, 6, seed=2)]
    sequences = {0: [], 1: []}
    for _ in range(300):
        for k, gen in enumerate(gens):
            obs, action, reward, nxt, term, trunc = next(gen)
            action = action.copy()
            action[1] = k  # which env
            buf.add(obs, action, reward, nxt, term, trunc, stream=k)
            truth[(k, int(action[0]))] = (obs, reward, nxt, term, trunc)
            sequences[k].append(int(action[0]))
    o, a, r, n, discount = buf.sample(128, n_step, 0.9)
    assert {int(a[i, 1]) for i in range(128)} == {0, 1}  # both streams are sampled
    for i in range(128):
        k, tid = int(a[i, 1]), int(a[i, 0])
        obs, reward, nxt, term, trunc = truth[(k, tid)]
        np.testing.assert_array_equal(o["image"][i].numpy(), obs["image"])
        if n_step == 1:
            np.testing.assert_array_equal(n["image"][i].numpy(), nxt["image"])
            assert r[i].item() == pytest.approx(reward)
        else:  # the n-step sum over this env's own following transitions, cut at its episode's end
            total, g, j = 0.0, 1.0, tid
            for _ in range(n_step):
                _, rj, nj, tj, uj = truth[(k, j)]
                total += g * rj
                g *= 0.9
                if tj or uj or (k, j + 1) not in truth:
                    break
                j += 1
            assert r[i].item() == pytest.approx(total, rel=1e-5, abs=1e-5)
            np.testing.assert_array_equal(n["image"][i].numpy(), nj["image"])
    if capacity == 80:
        assert min(int(a[i, 0]) for i in range(128)) > 300 - capacity // 2 - 12


def test_streams_state_dict_round_trip_and_a_mismatch_is_named():
    a = ReplayBuffer(60, (2, 4, 4), 3, 2, seed=3, streams=2)
    g0, g1 = episodes(40, 2, 4, seed=2), episodes(40, 2, 4, seed=5)
    for _ in range(25):
        a.add(*next(g0), stream=0)
    for _ in range(10):
        a.add(*next(g1), stream=1)
    b = ReplayBuffer(60, (2, 4, 4), 3, 2, seed=99, streams=2)
    b.load_state_dict(a.state_dict())
    sa, sb = a.sample(16), b.sample(16)
    torch.testing.assert_close(sa[1], sb[1])
    torch.testing.assert_close(sa[0]["image"], sb[0]["image"])
    with pytest.raises(ValueError, match="2 streams .*num_envs"):
        ReplayBuffer(60, (2, 4, 4), 3, 2, streams=1).load_state_dict(a.state_dict())


@pytest.mark.parametrize("repeat, stride", [(1, 1), (2, 1), (3, 1), (1, 3), (2, 2)])
def test_a_real_env_s_stacks_are_the_replay_s(repeat, stride):
    """The policy acts on the stacks the agent trains on: the embedded dashcam's stacks, through the action
    repeat and the frame stride, equal the ones the replay rebuilds from one stored frame per agent step,
    up to an episode that ends mid-repeat (11 frames), and sampled next observations follow their own."""
    from av_td3.config import HighwayEnvConfig
    from av_td3.envs.action_repeat import with_repeat
    from av_td3.envs.highway import HighwayDrivingEnv

    cfg = HighwayEnvConfig(image_height=16, image_width=16, camera="dashcam", max_episode_steps=11)
    env = with_repeat(HighwayDrivingEnv(cfg, 2), repeat, stride)
    space = env.observation_space
    buf = ReplayBuffer(200, space["image"].shape, space["vector"].shape[0], 2, frame_stride=stride)
    seen, following = [], {}
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        seen.append(obs["image"])
        done = False
        while not done:
            action = np.array([0.3, 1.0], np.float32)  # steer and throttle: the frames change
            nxt, reward, term, trunc, _ = env.step(action)
            buf.add(obs, action, reward, nxt, term, trunc)
            seen.append(nxt["image"])
            following[obs["image"].tobytes()] = nxt["image"].tobytes()
            obs, done = nxt, term or trunc
    stored = buf._stacks(torch.arange(len(seen)), buf.stack).numpy()
    assert len(seen) == 2 * (-(-11 // repeat) + 1)
    for k, image in enumerate(seen):
        np.testing.assert_array_equal(stored[k], image)
    assert len({image.tobytes() for image in seen}) == len(seen) // 2  # every stack of an episode differs
    o, _, _, n, _ = buf.sample(64)
    for now, then in zip(o["image"].numpy(), n["image"].numpy()):
        assert following[now.tobytes()] == then.tobytes()
