"""Property tests: the logged norms are exactly what torch.nn.utils.clip_grad_norm_ sees."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from av_td3.agents.networks import NatureCNN, parameter_groups
from av_td3.config.clipping import NetClipConfig
from av_td3.gradients import GradientClipper, GuardedStep


class TinyNet(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.encoder = NatureCNN((2, 12, 12), [3, 4], [4, 3], [2, 1], 5)
        self.head = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def random_grads(net: nn.Module, seed: int, scale: float, drop: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    for i, p in enumerate(net.parameters()):
        if drop and i % 3 == 1:
            p.grad = None  # parameters without gradients are skipped, as PyTorch does
        else:
            p.grad = torch.randn(p.shape, generator=g) * scale * (1 + i)


norm_types = st.sampled_from([1.0, 2.0, 3.0, math.inf])
settings.register_profile("fast", max_examples=40, deadline=None)
settings.load_profile("fast")


@given(seed=st.integers(0, 10_000), scale=st.floats(1e-4, 1e3), norm_type=norm_types,
       max_norm=st.floats(1e-3, 1e3), drop=st.booleans(), hidden=st.integers(1, 8))
def test_before_equals_clip_grad_norm_and_after_bounded(seed, scale, norm_type, max_norm, drop, hidden):
    net = TinyNet(hidden)
    random_grads(net, seed, scale, drop)
    reference = copy.deepcopy(net)  # deepcopy does not copy .grad
    for p, q in zip(net.parameters(), reference.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    expected_total = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm, norm_type)

    cfg = NetClipConfig(mode="norm", max_norm=max_norm, norm_type=norm_type)
    stats = GradientClipper(parameter_groups(net), cfg)()

    assert torch.allclose(stats["before"], expected_total, rtol=1e-5, atol=0)
    assert stats["after"] <= max_norm * (1 + 1e-6)
    # The clipped gradients are PyTorch's, element for element.
    for p, q in zip(net.parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-12)
    clipped = expected_total > max_norm
    assert bool(stats["clipped"]) == bool(clipped) or math.isclose(float(expected_total), max_norm, rel_tol=1e-5)
    if not clipped:
        assert stats["after"] == stats["before"]


@given(seed=st.integers(0, 10_000), scale=st.floats(1e-4, 1e3), norm_type=norm_types, drop=st.booleans())
def test_parts_combine_to_the_whole(seed, scale, norm_type, drop):
    net = TinyNet(4)
    random_grads(net, seed, scale, drop)
    stats = GradientClipper(parameter_groups(net), NetClipConfig(norm_type=norm_type))()
    parts = torch.stack([stats["before_cnn"], stats["before_mlp"]])
    if math.isinf(norm_type):
        combined = parts.max()
    else:
        combined = (parts ** norm_type).sum() ** (1 / norm_type)
    torch.testing.assert_close(combined, stats["before"], rtol=1e-5, atol=0)
    # Each part equals get_total_norm over that part's gradients alone.
    for part, params in parameter_groups(net).items():
        grads = [p.grad for p in params if p.grad is not None]
        expected = torch.nn.utils.get_total_norm(grads, norm_type) if grads else torch.tensor(0.0)
        torch.testing.assert_close(stats[f"before_{part}"], expected, rtol=1e-6, atol=0)
    # Mode none: AFTER is BEFORE, nothing clipped.
    assert stats["after"] == stats["before"] and stats["clipped"] == 0


@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e2), clip_value=st.floats(1e-3, 10.0))
def test_value_clipping_bounds_every_element(seed, scale, clip_value):
    net = TinyNet(4)
    random_grads(net, seed, scale, drop=False)
    exceeded = any(bool((p.grad.abs() > clip_value).any()) for p in net.parameters())
    stats = GradientClipper(parameter_groups(net), NetClipConfig(mode="value", clip_value=clip_value))()
    for p in net.parameters():
        assert p.grad.abs().max() <= clip_value
    assert stats["after"] <= stats["before"]
    assert bool(stats["clipped"]) == exceeded


@given(seed=st.integers(0, 10_000), scale=st.floats(1e-2, 1e2), cnn=st.floats(1e-2, 10.0),
       mlp=st.floats(1e-2, 10.0), whole=st.one_of(st.none(), st.floats(1e-2, 10.0)))
def test_per_part_limits(seed, scale, cnn, mlp, whole):
    net = TinyNet(4)
    random_grads(net, seed, scale, drop=False)
    cfg = NetClipConfig(mode="norm", max_norm=whole, cnn_max_norm=cnn, mlp_max_norm=mlp)
    stats = GradientClipper(parameter_groups(net), cfg)()
    assert stats["after_cnn"] <= cfg.limit("cnn") * (1 + 1e-5)
    assert stats["after_mlp"] <= cfg.limit("mlp") * (1 + 1e-5)
    if whole is not None:
        assert stats["after"] <= whole * (1 + 1e-5)


def test_nonfinite_gradient_skips_the_step_and_counts():
    net = TinyNet(4)
    opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=True)
    step = GuardedStep(parameter_groups(net), NetClipConfig(), opt)
    before = [p.detach().clone() for p in net.parameters()]
    random_grads(net, 0, 1.0, drop=False)
    next(net.parameters()).grad[0] = float("nan")
    stats = step(torch.tensor(1.0))
    assert not bool(stats["finite"])
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p.detach(), b)  # no optimizer step
    assert not opt.state or all(float(s["step"]) == 0 for s in opt.state.values())
    # A finite step afterwards trains normally; the run length resets, the total stays.
    random_grads(net, 1, 1.0, drop=False)
    assert bool(step(torch.tensor(1.0))["finite"])
    assert any(not torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before))
    h = step.health()
    assert h["nonfinite_total"] == 1 and h["nonfinite_max_run"] == 1
    step.reset_interval()
    assert step.health()["nonfinite_max_run"] == 0


def test_alerts_use_before_norm_and_record_the_peak():
    net = TinyNet(4)
    opt = torch.optim.Adam(net.parameters(), lr=0.0, fused=True)
    cfg = NetClipConfig(mode="norm", max_norm=1.0, alert_cnn_warning=1.5, alert_cnn_critical=1e9)
    step = GuardedStep(parameter_groups(net), cfg, opt)
    random_grads(net, 0, 100.0, drop=False)
    stats = step(torch.tensor(0.0))
    h = step.health()
    assert stats["after"] <= 1.0 + 1e-6  # clipped, yet the alert fired on the raw (BEFORE) norm
    assert h["alert_warning_count"] == 1 and h["alert_critical_count"] == 0
    torch.testing.assert_close(h["alert_warning_peak"], stats["before_cnn"])


@pytest.mark.parametrize("bad", [dict(mode="norm"), dict(mode="none", max_norm=1.0),
                                 dict(mode="value"), dict(mode="clip"), dict(mode="norm", max_norm=-1.0)])
def test_impossible_clipping_configs_name_the_key(bad):
    from av_td3.config import ClippingConfig, ConfigError

    with pytest.raises(ConfigError, match="clipping.actor"):
        ClippingConfig(actor=NetClipConfig(**bad))


def test_update_ratio_equals_the_ratio_from_two_state_dicts():
    """What the agent logs as debug/<net>[_<part>]_update_ratio, against the parameters read around one
    real TD3 update: ||theta_after - theta_before|| / ||theta_before||, whole and per part."""
    from test_td3 import make_agent, random_batch

    from av_td3.config import ClippingConfig

    agent = make_agent(ClippingConfig(), policy_delay=1)
    agent.update(*random_batch(0))  # Adam's first step is sign-like; measure a later one
    nets = {"actor": agent.actor, "critic": agent.critic}
    before = {n: {k: v.clone() for k, v in net.state_dict().items()} for n, net in nets.items()}
    m = agent.update(*random_batch(1))
    for name, net in nets.items():
        after = net.state_dict()
        groups = {"cnn": [k for k in after if k.startswith("encoder.")]}
        groups["mlp"] = [k for k in after if k not in groups["cnn"]]
        sq = {}
        for part, keys in groups.items():
            move = sum(float((after[k] - before[name][k]).pow(2).sum()) for k in keys)
            size = sum(float(before[name][k].pow(2).sum()) for k in keys)
            sq[part] = (move, size)
            assert float(m[f"{name}_update_ratio_{part}"]) == pytest.approx(math.sqrt(move / size), rel=1e-4)
        whole = math.sqrt(sum(v[0] for v in sq.values()) / sum(v[1] for v in sq.values()))
        assert float(m[f"{name}_update_ratio"]) == pytest.approx(whole, rel=1e-4)
        assert 1e-6 < whole < 1e-1


def test_update_ratio_is_measured_every_measure_every_steps():
    net = TinyNet(4)
    opt = torch.optim.Adam(net.parameters(), lr=0.01, fused=True)
    step = GuardedStep(parameter_groups(net), NetClipConfig(), opt, measure_every=3)
    seen = []
    for i in range(6):
        random_grads(net, i, 1.0, drop=False)
        seen.append("update_ratio" in step(torch.tensor(1.0)))
    assert seen == [False, False, True, False, False, True]


def test_run_logger_declares_one_custom_scalars_chart_set_per_network(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2

    from av_td3 import tags
    from av_td3.logger import RunLogger

    logger = RunLogger(tmp_path)
    logger.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    layouts = [v for e in EventFileLoader(str(path)).Load() for v in e.summary.value
               if v.metadata.plugin_data.plugin_name == "custom_scalars"]
    assert len(layouts) == 1
    layout = layout_pb2.Layout()
    layout.ParseFromString(layouts[0].tensor.string_val[0])
    assert [cat.title for cat in layout.category] == list(tags.NETWORKS)
    for net, cat in zip(tags.NETWORKS, layout.category):
        charts = {c.title: list(c.multiline.tag) for c in cat.chart}
        assert len(charts) == 3 and all(title.startswith(net) for title in charts)
        norms = next(t for title, t in charts.items() if "gradient norm" in title)
        assert norms == [tags.grad_norm(net, "BEFORE"), tags.grad_norm(net, "AFTER"), tags.clip_limit(net)]
        assert tags.update_ratio(net, "cnn") in sum(charts.values(), [])
