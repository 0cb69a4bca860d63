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
          batch_size=8)


# SPEC's networks and observation at a small batch: oneDNN picks other kernels at these sizes.
SPEC_NETS = dict(cnn_channels=[32, 64, 64], cnn_kernels=[8, 4, 3], cnn_strides=[4, 2, 1], feature_dim=512,
                 hidden_dims=[256, 256], batch_size=16)
SPEC_SHAPES = dict(image_shape=(4, 84, 84), vector_size=53)


def make_agent(clipping: ClippingConfig, image_shape=(3, 12, 12), vector_size=5, **over) -> TD3Agent:
    spec = AgentSpec(image_shape=image_shape, vector_size=vector_size, action_dim=2,
                     device=torch.device("cpu"), clipping=clipping)
    return TD3Agent(spec, **{**HP, **over})


def random_batch(seed: int, terminated_frac: float = 0.3, image_shape=(3, 12, 12), vector_size=5,
                 batch_size=HP["batch_size"]):
    g = torch.Generator().manual_seed(seed)
    B = batch_size
    img = lambda: torch.randint(0, 256, (B, *image_shape), generator=g, dtype=torch.uint8)  # noqa: E731
    obs = {"image": img(), "vector": torch.randn(B, vector_size, generator=g)}
    nxt = {"image": img(), "vector": torch.randn(B, vector_size, generator=g)}
    action = torch.rand(B, 2, generator=g) * 2 - 1
    reward = torch.randn(B, generator=g)
    not_term = (torch.rand(B, generator=g) > terminated_frac).float()
    return obs, action, reward, nxt, not_term * HP["gamma"]  # the discount: gamma, 0 when terminated


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

    def update(obs, action, reward, nxt, discount):
        nonlocal it
        it += 1
        with torch.no_grad():
            noise = (torch.randn_like(action) * HP["policy_noise"]).clamp(-HP["noise_clip"], HP["noise_clip"])
            next_action = (actor_t(enc(actor_t, nxt["image"]), nxt["vector"]) + noise).clamp(-1, 1)
            q1_t, q2_t = critic_t(enc(critic_t, nxt["image"]), nxt["vector"], next_action)
            y = reward + discount * torch.min(q1_t, q2_t)
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


def updated_side_by_side(agent: TD3Agent, clip_actor, clip_critic, batches):
    """Update the agent and a textbook copy of it on the same batches with the same noise; yield
    (name, ours, textbook's) for every parameter of the four networks."""
    update, ref_nets = textbook_td3(agent, clip_actor, clip_critic)
    for i, batch in enumerate(batches):
        torch.manual_seed(100 + i)
        agent.update(*batch)
        torch.manual_seed(100 + i)
        update(*batch)
    for (name, p), q in zip(named_parameters(agent), (q for ref in ref_nets for q in ref.parameters()), strict=True):
        yield name, p, q


def named_parameters(agent: TD3Agent):
    """("actor.<parameter>", parameter), ... over the four networks, in textbook_td3's order."""
    for net in ("actor", "critic", "actor_target", "critic_target"):
        for name, p in getattr(agent, net).named_parameters():
            yield f"{net}.{name}", p


@pytest.mark.parametrize("clip", [None, (1.0, 10.0), (1e-3, 1e-2)])
def test_update_matches_textbook_td3(clip):
    torch.manual_seed(0)
    clipping = ClippingConfig()
    if clip:
        clipping = ClippingConfig(actor=NetClipConfig(mode="norm", max_norm=clip[0]),
                                  critic=NetClipConfig(mode="norm", max_norm=clip[1]))
    agent = make_agent(clipping)
    batches = [random_batch(i) for i in range(6)]
    for name, p, q in updated_side_by_side(agent, *(clip or (None, None)), batches):
        torch.testing.assert_close(p, q, rtol=2e-5, atol=2e-6, msg=name)


def test_update_matches_textbook_td3_at_spec_shapes():
    """The fast update (channels-last and NCHW encoders, scaling folded into conv1, in-place ReLUs)
    against the plain one on SPEC's 4x84x84 + 53 observation and full-width networks."""
    torch.manual_seed(0)
    clipping = ClippingConfig(actor=NetClipConfig(mode="norm", max_norm=1.0),
                              critic=NetClipConfig(mode="norm", max_norm=10.0))
    agent = make_agent(clipping, **SPEC_SHAPES, **SPEC_NETS)
    batches = [random_batch(i, **SPEC_SHAPES, batch_size=SPEC_NETS["batch_size"]) for i in range(4)]
    start = {name: p.detach().clone() for name, p in named_parameters(agent)}
    # Elementwise, Adam amplifies rounding where a gradient element is as small as its eps (1e-8), and the
    # convolution kernels' summation order differs between layouts and CPUs: up to ~5e-5 per weight here,
    # 6e-4 of how far the update moved a tensor on a CPU with AMX. So: every element within a tenth of one
    # Adam step (lr 1e-3), and each tensor within 1% of how far the plain update moved it. A wrong layout,
    # scaling or gradient moves most elements by a whole step (a step size 10% off: 10% of the move).
    for name, p, q in updated_side_by_side(agent, 1.0, 10.0, batches):
        assert (p - q).abs().max() < 1e-4, name
        assert (p - q).norm() <= 1e-2 * (q - start[name]).norm(), name


def test_encoder_layouts_give_the_same_features():
    """Training encoders read channels-last pixels, no-grad ones NCHW: the same features either way."""
    agent = make_agent(ClippingConfig(), **SPEC_SHAPES, **SPEC_NETS)
    image = random_batch(0, **SPEC_SHAPES, batch_size=8)[0]["image"]
    encoder = agent.critic.encoder
    with torch.no_grad():
        cl, nchw = (encoder(encoder.pixels(image, channels_last=c)) for c in (True, False))
        torch.testing.assert_close(cl, nchw, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cl, enc(agent.critic, image), rtol=1e-5, atol=1e-6)


def test_bfloat16_encoders_follow_float32_at_bf16_precision():
    """agent.precision=bfloat16: parameters, gradients and their norms stay float32, the features
    agree with float32 to bf16's precision, and a few updates move the parameters the same way."""
    torch.manual_seed(0)
    fp32 = make_agent(ClippingConfig(), **SPEC_SHAPES, **SPEC_NETS)
    torch.manual_seed(0)
    bf16 = make_agent(ClippingConfig(), precision="bfloat16", **SPEC_SHAPES, **SPEC_NETS)
    start = [p.detach().clone() for p in fp32.critic.parameters()]
    image = random_batch(0, **SPEC_SHAPES, batch_size=8)[0]["image"]
    with torch.no_grad():
        f32, f16 = fp32.critic.encoder(image), bf16.critic.encoder(image)
    assert f16.dtype == torch.float32
    assert (f16 - f32).norm() / f32.norm() < 2e-2
    for i in range(4):
        for agent in (fp32, bf16):
            torch.manual_seed(100 + i)
            m = agent.update(*random_batch(i, **SPEC_SHAPES, batch_size=SPEC_NETS["batch_size"]))
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in bf16.critic.parameters())
    grads = [p.grad for p in bf16.actor.parameters()]
    assert float(m["actor_before"]) == pytest.approx(float(torch.nn.utils.get_total_norm(grads)), rel=1e-5)
    moved32 = torch.cat([(p.detach() - s).flatten() for p, s in zip(fp32.critic.parameters(), start)])
    moved16 = torch.cat([(p.detach() - s).flatten() for p, s in zip(bf16.critic.parameters(), start)])
    assert F.cosine_similarity(moved32, moved16, dim=0) > 0.9


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


@pytest.mark.parametrize("encoder", ["separate", "shared"])
def test_pre_tanh_is_the_actors_output_before_its_tanh(encoder):
    """``pre_tanh`` reads the encoder the policy reads: written plainly from the actor's parameters, and the
    policy's action is its tanh."""
    agent = make_agent(ClippingConfig(), encoder=encoder)
    obs = random_batch(3)[0]
    with torch.no_grad():
        pre = agent.pre_tanh(obs)
        net = agent.critic if encoder == "shared" else agent.actor
        plain = agent.actor.mlp(torch.cat([enc(net, obs["image"]), obs["vector"]], 1))
        assert torch.allclose(pre, plain, atol=1e-5)
        assert torch.equal(agent.policy(obs), torch.tanh(pre))


@pytest.mark.parametrize("encoder", ["separate", "shared"])
def test_policy_average_is_the_running_mean_then_an_ema_of_the_policys_weights(encoder):
    """agent.policy_average: the k-th actor update moves the averaged weights by max(rate, 1/k) toward the
    trained ones (the actor, and with the shared encoder the critic's CNN); training is the same without
    it; a checkpoint keeps the average; the averaged policy acts with it."""
    rate = 0.3  # above 1/k from the 4th actor update: both phases in 8 updates
    torch.manual_seed(0)
    plain = make_agent(ClippingConfig(), encoder=encoder)
    torch.manual_seed(0)
    agent = make_agent(ClippingConfig(), encoder=encoder, policy_average=rate)
    policy_nets = lambda a: [a.actor] + ([a.critic.encoder] if encoder == "shared" else [])  # noqa: E731
    expected = None
    for i in range(8):
        for a in (plain, agent):
            torch.manual_seed(100 + i)
            a.update(*random_batch(i))
        if i % 2:  # an actor update (policy_delay 2)
            k = (i + 1) // 2
            trained = [p.detach().clone() for net in policy_nets(agent) for p in net.parameters()]
            expected = trained if expected is None else [
                e + max(rate, 1 / k) * (t - e) for e, t in zip(expected, trained)]
    averaged = [p for net in [agent.actor_average] + ([agent.encoder_average] if encoder == "shared" else [])
                for p in net.parameters()]
    for a, e in zip(averaged, expected):
        torch.testing.assert_close(a, e)
    for net in ("actor", "critic", "actor_target", "critic_target"):  # training never reads the average
        for a, b in zip(getattr(plain, net).parameters(), getattr(agent, net).parameters()):
            assert torch.equal(a, b), net
    obs = {k: v[:1] for k, v in random_batch(9)[0].items()}
    obs_np = {k: v[0].numpy() for k, v in obs.items()}
    policy = agent.evaluation_policy()
    assert policy is not agent and agent.evaluation_policy(averaged=False) is agent
    with torch.no_grad():
        assert torch.equal(torch.as_tensor(policy.act(obs_np)), agent.policy(obs, averaged=True)[0])
        assert not torch.equal(agent.policy(obs, averaged=True), agent.policy(obs))
    restored = make_agent(ClippingConfig(), encoder=encoder, policy_average=rate)
    restored.load_state_dict(agent.state_dict())
    for a, b in zip(restored.actor_average.parameters(), agent.actor_average.parameters()):
        assert torch.equal(a, b)
    assert "actor_average" not in plain.state_dict()
    with pytest.raises(ValueError, match="policy_average"):
        plain.evaluation_policy(averaged=True)


def test_policy_average_starts_from_the_trained_weights_on_a_checkpoint_without_one():
    """Resuming a run saved without the average (or turning it on for a later evaluation): it starts as the
    trained weights."""
    old = make_agent(ClippingConfig())
    old.update(*random_batch(0))
    old.update(*random_batch(1))
    agent = make_agent(ClippingConfig(), policy_average=1e-3)
    agent.load_state_dict(old.state_dict())
    for a, b in zip(agent.actor_average.parameters(), old.actor.parameters()):
        assert torch.equal(a, b)
