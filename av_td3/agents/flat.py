"""A network's parameters, and their gradients, as views into one contiguous buffer each.

Why: at learn_to_drive's scale (~100k parameters in ~20 tensors, one CPU thread) the optimizer side of an
update is bound by per-tensor overhead, not arithmetic: Adam.step's Python loop over the parameters and
its per-parameter step counters, zero_grad, the soft target update. Over one buffer each is one kernel.

The module keeps its own ``nn.Parameter`` objects, names, shapes and memory layouts (each becomes a view
with the strides it had, channels-last included), so state_dicts, ``get_total_norm``, clipping and the
update-size measurements see the same tensors as before; every element goes through the same Adam and
lerp formulas (their vectorised and scalar loops may round the last bit differently).

Gradients stay views: ``zero_grad`` zeroes the buffer instead of setting ``.grad`` to None, and autograd
then accumulates into the existing ``.grad`` in place (a first-order backward does). ``check_grads``
verifies that, since an optimizer reading the buffer would otherwise step on stale zeros without a word.
"""

from __future__ import annotations

import torch
from torch import nn


class FlatParameters:
    """Pack ``module``'s parameters into ``self.param`` (an ``nn.Parameter`` for the optimizer) whose
    ``.grad`` holds all their gradients. Build it once the module is on its device."""

    def __init__(self, module: nn.Module):
        self.params = list(module.parameters())
        if not self.params:
            raise ValueError(f"{type(module).__name__} has no parameters to pack")
        kinds = {(p.dtype, p.device) for p in self.params}
        if len(kinds) != 1:
            raise ValueError(f"cannot pack parameters of several dtypes or devices: {sorted(map(str, kinds))}")
        self.param = nn.Parameter(self.params[0].new_empty(sum(p.numel() for p in self.params)))
        self.param.grad = torch.zeros_like(self.param)
        self._layout: list[tuple[int, torch.Size, tuple[int, ...]]] = []  # (offset, shape, stride) each
        offset = 0
        with torch.no_grad():
            for p in self.params:
                if not (p.is_contiguous() or p.is_contiguous(memory_format=torch.channels_last)):
                    raise ValueError(f"a parameter of shape {tuple(p.shape)} and strides {p.stride()} is "
                                     f"neither contiguous nor channels-last: it cannot be a buffer view")
                self._layout.append((offset, p.shape, p.stride()))
                view = self._view(self.param.data, len(self._layout) - 1)
                view.copy_(p.data)
                p.data = view
                p.grad = self._view(self.param.grad, len(self._layout) - 1)
                offset += p.numel()

    def _view(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        offset, shape, stride = self._layout[i]
        return flat.as_strided(shape, stride, offset)

    def zero_grad(self) -> None:
        self.param.grad.zero_()

    def check_grads(self) -> None:
        """Raise if a backward replaced a parameter's ``.grad`` instead of accumulating into the buffer
        (a second-order backward does): the optimizer would step on what the buffer held."""
        for i, p in enumerate(self.params):
            if p.grad is None or p.grad.data_ptr() != self._view(self.param.grad, i).data_ptr():
                raise RuntimeError("a backward replaced a parameter's .grad instead of accumulating into "
                                   "the packed gradient buffer (create_graph=True, or .grad set to None): "
                                   "the optimizer would step on stale gradients")
