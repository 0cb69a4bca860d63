"""Packed parameters (agents/flat.py): the module keeps its parameters, values and layouts; gradients land
in the buffer."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from av_td3.agents.flat import FlatParameters
from av_td3.agents.networks import Critic, NatureCNN


def small_critic() -> Critic:
    torch.manual_seed(0)
    encoder = NatureCNN((3, 12, 12), [4, 8], [4, 3], [2, 1], 16)  # its convs are channels-last
    return Critic(encoder, 16, 5, 2, [8, 8], n_critics=2)


def loss_of(net: Critic, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (6, 3, 12, 12), generator=g, dtype=torch.uint8)
    q1, q2 = net(net.encoder(image), torch.randn(6, 5, generator=g), torch.rand(6, 2, generator=g))
    return (q1 ** 2).mean() + (q2 - 1).pow(2).mean()


def test_packing_keeps_parameters_values_and_layouts():
    net = small_critic()
    before = {n: (p, p.detach().clone(), p.stride()) for n, p in net.named_parameters()}
    flat = FlatParameters(net)
    assert flat.param.numel() == sum(p.numel() for p in net.parameters())
    for name, p in net.named_parameters():
        obj, value, stride = before[name]
        assert p is obj and torch.equal(p, value) and p.stride() == stride, name
    conv = net.encoder.convs[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.stride()[1] == 1
    # Parameters are views: writing the buffer writes them, and the other way round.
    with torch.no_grad():
        flat.param.add_(1.0)
    assert torch.equal(conv, before["encoder.convs.0.weight"][1] + 1.0)


def test_gradients_accumulate_into_the_buffer_and_match_unpacked():
    net, ref = small_critic(), small_critic()
    flat = FlatParameters(net)
    for seed in (1, 2):  # twice: zero_grad must clear the first backward's gradients
        flat.zero_grad()
        loss_of(net, seed).backward()
        flat.check_grads()
        ref.zero_grad(set_to_none=True)
        loss_of(ref, seed).backward()
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)


def test_a_replaced_gradient_is_caught():
    net = small_critic()
    flat = FlatParameters(net)
    flat.zero_grad()
    loss_of(net, 1).backward()
    next(net.parameters()).grad = torch.zeros_like(next(net.parameters()))  # no longer a buffer view
    with pytest.raises(RuntimeError, match="stale gradients"):
        flat.check_grads()


def test_mixed_dtypes_are_refused():
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3).double())
    with pytest.raises(ValueError, match="several dtypes"):
        FlatParameters(net)
