"""Our TD3 update against a straightforward textbook TD3 update (CleanRL / Fujimoto's code): same
parameters after several updates from the same seed, with and without clipping."""

import copy

import pytest
import torch
import torch.nn.functional as F

from av_td3.agents.spec import AgentSpec
from av_td3.agents.td3 import TD3Agent
from av_td3.config import ClippingConfig, NetClipConfig, TD3Config

HP = dict(cnn_channels=[4, 8], cnn_kernels=[4, 3], cnn_strides=[2, 1], feature_dim=16,
          hidden_dims=[32, 32], encoder="separate", n_critics=2, actor_lr=1e-3, critic_lr=1e-3,
          weight_decay=1e-4, gamma=0.99, tau=0.05, policy_noise=0.2, noise_clip=0.5, policy_delay=2,
          batch_size=8, exploration_noise=0.1)


def make_agent(clipping: ClippingConfig, **over) -> TD3Agent:
    spec = AgentSpec(image_shape=(3, 12, 12), vector_size=5, action_dim=2, device=torch.device("cpu"),
                     clipping=clipping)
    return TD3Agent(spec, **{**HP, **over})


def random_batch(seed: int, terminated_frac: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    B = HP["batch_size"]
    img = lambda: torch.randint(0, 256, (B, 3, 12, 12), generator=g, dtype=torch.uint8)  # noqa: E731
    obs = {"image": img(), "vector": torch.randn(B, 5, generator=g)}
    nxt = {"image": img(), "vector": torch.randn(B, 5, generator=g)}
    action = torch.rand(B, 2, generator=g) * 2 - 1
    reward = torch.randn(B, generator=g)
    not_term = (torch.rand(B, generator=g) > terminated_frac).float()
    return obs, action, reward, nxt, not_term


def enc(net, image):
    """The encoder written plainly, from its parameters alone: pixels scaled to [-1, 1], then
    conv -> ReLU per layer, flatten, linear -> ReLU, all out of place and in the contiguous layout."""
    x = image.float() / 127.5 - 1.0
    for conv in (m for m in net.encoder.convs if isinstance(m, torch.nn.Conv2d)):
        x = F.relu(F.conv2d(x, conv.weight.contiguous(), conv.bias, conv.stride))
    linear = net.encoder.linear[0]
    return F.relu(F.linear(x.flatten(1), linear.weight, linear.bias))


def textbook_td3(agent: TD3Agent, clip_actor: float | None, clip_critic: float | None):
    """Copies of the agent's networks, updated by TD3 written plainly."""
    actor, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    actor_t, critic_t = copy.deepcopy(agent.actor_target), copy.deepcopy(agent.critic_target)
    aopt = torch.optim.Adam(actor.parameters(), lr=HP["actor_lr"], weight_decay=HP["weight_decay"])
    copt = torch.optim.Adam(critic.parameters(), lr=HP["critic_lr"], weight_decay=HP["weight_decay"])
    it = 0

    def update(obs, action, reward, nxt, not_term):
        nonlocal it
        it += 1
        with torch.no_grad():
            noise = (torch.randn_like(action) * HP["policy_noise"]).clamp(-HP["noise_clip"], HP["noise_clip"])
            next_action = (actor_t(enc(actor_t, nxt["image"]), nxt["vector"]) + noise).clamp(-1, 1)
            q1_t, q2_t = critic_t(enc(critic_t, nxt["image"]), nxt["vector"], next_action)
            y = reward + not_term * HP["gamma"] * torch.min(q1_t, q2_t)
        q1, q2 = critic(enc(critic, obs["image"]), obs["vector"], action)
        loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        copt.zero_grad()
        loss.backward()
        if clip_critic:
            torch.nn.utils.clip_grad_norm_(critic.parameters(), clip_critic)
        copt.step()
        if it % HP["policy_delay"] == 0:
            pi = actor(enc(actor, obs["image"]), obs["vector"])
            q = critic.heads[0](torch.cat([enc(critic, obs["image"]), obs["vector"], pi], 1))
            actor_loss = -q.mean()
            aopt.zero_grad()
            actor_loss.backward()
            if clip_actor:
                torch.nn.utils.clip_grad_norm_(actor.parameters(), clip_actor)
            aopt.step()
            for net, tgt in ((actor, actor_t), (critic, critic_t)):
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    tp.data.mul_(1 - HP["tau"]).add_(HP["tau"] * p.data)

    return update, (actor, critic, actor_t, critic_t)


@pytest.mark.parametrize("clip", [None, (1.0, 10.0), (1e-3, 1e-2)])
def test_update_matches_textbook_td3(clip):
    torch.manual_seed(0)
    clipping = ClippingConfig()
    if clip:
        clipping = ClippingConfig(actor=NetClipConfig(mode="norm", max_norm=clip[0]),
                                  critic=NetClipConfig(mode="norm", max_norm=clip[1]))
    agent = make_agent(clipping)
    update, ref_nets = textbook_td3(agent, *(clip or (None, None)))
    for i in range(6):
        batch = random_batch(i)
        torch.manual_seed(100 + i)
        agent.update(*batch)
        torch.manual_seed(100 + i)
        update(*batch)
    ours = (agent.actor, agent.critic, agent.actor_target, agent.critic_target)
    for mine, ref in zip(ours, ref_nets):
        for (name, p), q in zip(mine.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=2e-5, atol=2e-6, msg=name)


def test_actor_metrics_only_on_actor_updates_and_terminal_targets():
    agent = make_agent(ClippingConfig())
    keys = [("actor_loss" in agent.update(*random_batch(i))) for i in range(6)]
    assert keys == [False, True, False, True, False, True]


def test_terminated_transitions_do_not_bootstrap():
    agent = make_agent(ClippingConfig(), gamma=0.5)
    obs, action, reward, nxt, _ = random_batch(0)
    # With every transition terminated the critic regresses onto the reward alone.
    for _ in range(300):
        agent.update(obs, action, reward, nxt, torch.zeros_like(reward))
    q1, _ = agent.critic(agent.critic.encoder(obs["image"]), obs["vector"], action)
    torch.testing.assert_close(q1, reward, atol=0.1, rtol=0.0)


def test_ddpg_switches():
    cfg = TD3Config(n_critics=1, policy_noise=0.0, policy_delay=1)
    agent = make_agent(ClippingConfig(), n_critics=cfg.n_critics, policy_noise=0.0, policy_delay=1)
    assert len(agent.critic.heads) == 1
    assert "actor_loss" in agent.update(*random_batch(0))


def test_shared_encoder_trains_only_the_actor_mlp():
    agent = make_agent(ClippingConfig(), encoder="shared")
    assert agent.actor.encoder is None
    m = agent.update(*random_batch(0))
    m = agent.update(*random_batch(1))
    assert float(m["actor_before_cnn"]) == 0.0 and float(m["actor_before_mlp"]) > 0.0


def test_nan_in_batch_skips_update_without_touching_targets():
    agent = make_agent(ClippingConfig())
    obs, action, reward, nxt, nt = random_batch(0)
    agent.update(obs, action, reward, nxt, nt)
    before = [p.clone() for p in agent.critic_target.parameters()] + [p.clone() for p in agent.critic.parameters()]
    reward = reward.clone()
    reward[0] = float("nan")
    m = agent.update(obs, action, reward, nxt, nt)
    assert not bool(m["critic_finite"])
    after = list(agent.critic_target.parameters()) + list(agent.critic.parameters())
    for b, a in zip(before, after):
        assert torch.equal(b, a)
    assert agent.critic_step.health()["nonfinite_total"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["separate", "shared"])
def test_compiled_encoders_give_the_same_parameters(encoder):
    import shutil

    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("torch.compile on the CPU needs a C++ compiler (c++/g++ not found)")
    torch.manual_seed(0)
    eager = make_agent(ClippingConfig(), encoder=encoder)
    torch.manual_seed(0)
    compiled = make_agent(ClippingConfig(), encoder=encoder, compile=True)
    for i in range(4):
        for agent in (eager, compiled):
            torch.manual_seed(100 + i)
            agent.update(*random_batch(i))
    for a, b in zip(eager.actor.parameters(), compiled.actor.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager.critic_target.parameters(), compiled.critic_target.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert eager.critic.state_dict().keys() == compiled.critic.state_dict().keys()  # checkpoints match
