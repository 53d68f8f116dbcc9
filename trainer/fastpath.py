"""The inference-only backbone used for suggestions on a CPU (and, on request, for embeddings).

Chosen by measurement on the project's 2-core AVX-512 CPU (no native bf16; see
``bench/RESULTS.md``, "Fast CPU inference: what was tried"): each BatchNorm folded into the
convolution before it (``torch.fx``), which removes a pass over every feature map, and the
weights and input in channels-last layout, which oneDNN's convolutions run without reordering.
TorchScript freezing, ``optimize_for_inference`` and bf16 autocast were measured too and were
slower or no better here, so they are not used.

The folded copy computes the same function as the trained backbone up to float rounding (about
1e-6); ``tests/trainer/test_fastpath.py`` checks that the top-1 suggestions agree.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

logger = logging.getLogger(__name__)


def inference_backbone(backbone: nn.Module, device: torch.device, *, fast: bool = True) -> nn.Module:
    """The module to run ``backbone`` with for inference on ``device``: (B, 3, S, S) -> (B, C).

    On a CPU with ``fast`` it is an eval-mode copy with BatchNorm folded into the convolutions, run
    channels-last; the trained module itself is left untouched (training and fingerprints keep using it). Elsewhere,
    or when the graph cannot be traced, it is ``backbone`` itself.
    """
    if not fast or device.type != "cpu":
        return backbone
    try:
        folded = fuse(copy.deepcopy(backbone).eval())
    except Exception as exc:  # a module fx cannot trace is still served, unfolded
        logger.warning("BatchNorm folding failed (%s); using the unfolded backbone", exc)
        return backbone
    folded.requires_grad_(False)
    return _ChannelsLast(folded.to(memory_format=torch.channels_last), getattr(backbone, "out_features", None))


class _ChannelsLast(nn.Module):
    def __init__(self, net: nn.Module, out_features: int | None) -> None:
        super().__init__()
        self.net = net
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))  # (B, C)
