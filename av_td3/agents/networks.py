"""SPEC's networks: a NatureCNN encoder per network, an actor MLP with tanh, twin critic heads.

Images arrive as uint8 (batch, frames, H, W); the encoder scales them to [-1, 1] once, on the learner
side, so the replay buffer stays uint8 (the reference stored float32 pairs at ~226 KB per transition).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def mlp(sizes: Sequence[int], out_act: nn.Module | None = None, layer_norm: bool = False) -> nn.Sequential:
    """Linear layers with ReLUs between them; ``layer_norm`` puts a LayerNorm before every ReLU."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            if layer_norm:
                layers.append(nn.LayerNorm(sizes[i + 1]))
            layers.append(nn.ReLU())
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """conv 32@8x8/4, 64@4x4/2, 64@3x3/1, flatten, linear -> feature_dim, ReLU (widths configurable)."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], kernels: Sequence[int],
                 strides: Sequence[int], feature_dim: int, precision: str = "float32"):
        super().__init__()
        # bfloat16: the convolutions and the linear layer run under autocast (parameters, their
        # gradients and the returned features stay float32); ~1.5x faster updates on CPUs with native bf16
        # (AVX512-BF16, AMX), at bf16's ~3 significant digits.
        self.compute_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]
        c_in = image_shape[0]
        convs: list[nn.Module] = []
        for c, k, s in zip(channels, kernels, strides):
            convs += [nn.Conv2d(c_in, c, k, s), nn.ReLU(inplace=True)]  # no padding: see forward()
            c_in = c
        # The last ReLU goes after Flatten (elementwise, so the same function): flattening channels-last
        # maps copies into a contiguous tensor, and a ReLU there has its backward read two tensors of the
        # same layout instead of a strided mix. In-place ReLUs allocate nothing; a convolution's backward
        # never reads its own output. Both save ~3-4% of an update on CPU; parameter names are unchanged.
        # forward() applies these layers itself (the weights follow the input's layout); the Sequential
        # names the parameters (convs.0.weight, ...) and finds the flattened size below.
        self.convs = nn.Sequential(*convs[:-1], nn.Flatten(), nn.ReLU(inplace=True))
        with torch.no_grad():
            try:
                n_flat = self.convs(torch.zeros(1, *image_shape)).shape[1]
            except RuntimeError as e:
                raise ValueError(
                    f"image {tuple(image_shape[1:])} is too small for the CNN (kernels {list(kernels)}, "
                    f"strides {list(strides)}): use a larger env.image_height/width or smaller "
                    f"agent.cnn_kernels") from e
        self.linear = nn.Sequential(nn.Linear(n_flat, feature_dim), nn.ReLU(inplace=True))
        self.feature_dim = feature_dim
        # Channels-last convolutions: oneDNN's backward is 1.3-4x faster on CPU in this layout (and
        # tensor-core friendly on GPU). The layout changes speed, never values.
        self.convs.to(memory_format=torch.channels_last)

    def extra_repr(self) -> str:
        # What print(model) shows: forward() runs these layers, but not as the Sequential would.
        return ("forward: pixels scaled to [-1, 1] inside convs.0 (its weights / 127.5, bias - sum of weights), "
                "each conv in the input's memory layout, the last ReLU after Flatten")

    def pixels(self, image_u8: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
        """uint8 (B, F, H, W) -> floats (the compute dtype: 0..255 are exact in bfloat16 too), unscaled:
        what ``forward`` takes. The update converts each batch once for every encoder that reads it.

        Channels-last for the encoders that train: oneDNN's conv1 weight gradient is 4x faster in it.
        Plain NCHW for no-grad forwards (the targets on next_obs): the conversion is a straight pass
        (~1 ms for 256x4x84x84, against ~3.6 ms for the transposing one) and the forward needs no
        flatten copy, so a no-grad encode is ~10% faster on CPU. Values are the same either way."""
        # Convert, then transpose the floats: a straight conversion is cheap, and PyTorch's float
        # transpose is faster than its converting one (~150 against ~250 us at 64x4x36x36, one thread).
        x = image_u8.to(self.compute_dtype, memory_format=torch.contiguous_format)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image``: uint8 (B, F, H, W), or ``pixels()`` of it in either layout. Returns float32."""
        x = self.pixels(image) if image.dtype == torch.uint8 else image
        if self.compute_dtype == torch.float32:
            return self._features(x)
        with torch.autocast(x.device.type, dtype=self.compute_dtype):
            return self._features(x).float()

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        # The weights follow the input's layout (a no-op for the stored channels-last one); a mixed pair
        # would make oneDNN convert the whole activation instead of the small weight.
        fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
               else torch.contiguous_format)
        convs = [m for m in self.convs if isinstance(m, nn.Conv2d)]
        for i, conv in enumerate(convs):
            w, b = conv.weight.contiguous(memory_format=fmt), conv.bias
            if i == 0:
                # Pixels are scaled to [-1, 1] inside the first convolution: conv(x / 127.5 - 1; W, b) =
                # conv(x; W / 127.5, b - sum(W)) without padding, which saves two passes over the batch.
                w, b = w * (1.0 / 127.5), b - w.sum((1, 2, 3))
            x = F.conv2d(x, w, b, conv.stride)
            if i < len(convs) - 1:
                x = F.relu(x, inplace=True)
        # The last ReLU after flattening: see __init__.
        return self.linear(F.relu(x.flatten(1), inplace=True))


class Actor(nn.Module):
    """features(image) ++ vector -> MLP -> tanh action. ``encoder`` is None when the features come from
    the critic's encoder (the ``shared`` option); they are then passed in, detached."""

    def __init__(self, encoder: NatureCNN | None, feature_dim: int, vector_size: int, action_dim: int,
                 hidden: Sequence[int], layer_norm: bool = False):
        super().__init__()
        self.encoder = encoder
        self.mlp = mlp([feature_dim + vector_size, *hidden, action_dim], layer_norm=layer_norm)

    def forward(self, features: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pre_tanh(features, vector))

    def pre_tanh(self, features: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """The MLP's output before the tanh: where a saturated actor shows (|x| >> 1)."""
        return self.mlp(torch.cat([features, vector], dim=1))


class Critic(nn.Module):
    """One encoder feeding ``n_critics`` Q heads (SB3's layout with share_features_extractor=False), and
    with ``aux_outputs`` a linear head from the features to that many auxiliary targets."""

    def __init__(self, encoder: NatureCNN | None, feature_dim: int, vector_size: int, action_dim: int,
                 hidden: Sequence[int], n_critics: int, layer_norm: bool = False, aux_outputs: int = 0):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleList(
            mlp([feature_dim + vector_size + action_dim, *hidden, 1], layer_norm=layer_norm)
            for _ in range(n_critics))
        self.aux_head = nn.Linear(feature_dim, aux_outputs) if aux_outputs else None

    def forward(self, features: torch.Tensor, vector: torch.Tensor, action: torch.Tensor
                ) -> list[torch.Tensor]:
        x = torch.cat([features, vector, action], dim=1)
        return [head(x).squeeze(1) for head in self.heads]

    def q1(self, features: torch.Tensor, vector: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The first head alone, (B, 1): what TD3's actor maximises."""
        return self.heads[0](torch.cat([features, vector, action], dim=1))


def parameter_groups(net: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Split a network's parameters into ``cnn`` (its encoder, if it owns one) and ``mlp`` (the rest):
    the parts whose gradient norms are measured, clipped and logged separately."""
    encoder = getattr(net, "encoder", None)
    cnn = list(encoder.parameters()) if encoder is not None else []
    cnn_ids = {id(p) for p in cnn}
    return {"cnn": cnn, "mlp": [p for p in net.parameters() if id(p) not in cnn_ids]}


def random_shift(image: torch.Tensor, pad: int, generator: torch.Generator | None = None,
                 horizontal: bool = True) -> torch.Tensor:
    """DrQ's augmentation: each image of the batch padded by ``pad`` pixels (edges replicated) and
    cropped back to its size at a random integer offset in [0, 2 pad] (a shift of up to +-pad pixels).
    ``horizontal=False`` shifts rows only (the same draws, the columns kept in place).
    Works on (B, C, H, W) of any dtype in either memory layout; the layout of the input is kept.

    Replicate padding is index clamping, so the crop is one gather through clamped flat indices: no
    padded copy, and on the uint8 batch (before the float conversion) it moves a quarter of the bytes.
    ~9x faster than pad + two gathers on float at 64x3x36x36; the same values and the same draws."""
    b, c, h, w = image.shape
    dx, dy = torch.randint(0, 2 * pad + 1, (2, b), device=image.device, generator=generator)
    if not horizontal:
        dx = torch.full_like(dx, pad)
    rows = (dy[:, None] - pad + torch.arange(h, device=image.device)).clamp_(0, h - 1)  # (B, H)
    cols = (dx[:, None] - pad + torch.arange(w, device=image.device)).clamp_(0, w - 1)  # (B, W)
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    out = image.reshape(b, c, h * w).gather(2, flat).view(b, c, h, w)
    fmt = torch.channels_last if image.is_contiguous(memory_format=torch.channels_last) and c > 1 \
        else torch.contiguous_format
    return out.contiguous(memory_format=fmt)
