"""The inference-only backbone used for suggestions on a CPU (and, on request, for embeddings).

Chosen by measurement on the project's 2-core AVX-512 CPU (no native bf16; see
``bench/RESULTS.md``, "Fast CPU inference: what was tried"): each BatchNorm folded into the
convolution before it (by hand, see ``_fold_batchnorm``), which removes a pass over every feature map, and the
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
from torch.nn.utils.fusion import fuse_conv_bn_eval

logger = logging.getLogger(__name__)


def inference_backbone(backbone: nn.Module, device: torch.device, *, fast: bool = True) -> nn.Module:
    """The module to run ``backbone`` with for inference on ``device``: (B, 3, S, S) -> (B, C).

    On a CPU with ``fast`` it is an eval-mode copy with BatchNorm folded into the convolutions, run
    channels-last; the trained module itself is left untouched (training and fingerprints keep using it). Elsewhere,
    or when the graph cannot be traced, it is ``backbone`` itself.
    """
    if not fast or device.type != "cpu" or getattr(backbone, "quantized", False):
        return backbone  # an int8 backbone (``trainer.int8``) is its own fast path
    folded = copy.deepcopy(backbone).eval()
    if not _fold_batchnorm(folded):
        logger.warning("no BatchNorm to fold in %s; serving it unfolded, channels-last", type(backbone).__name__)
    folded.requires_grad_(False)
    return _ChannelsLast(folded.to(memory_format=torch.channels_last), getattr(backbone, "out_features", None))


def _fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d among its siblings into that conv.

    In torchvision's ResNets each convolution's BatchNorm is registered right after it (the stem,
    every block, every downsample), so registration order finds the pairs. This is done by hand
    rather than with ``torch.fx``: fx tracing patches ``nn.Module.__call__`` process-wide while it
    runs, which breaks forward passes of other threads (the app loads a model while serving).
    """
    folded = 0
    previous: tuple[str, nn.Module] | None = None
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d) and previous is not None and isinstance(previous[1], nn.Conv2d):
            setattr(module, previous[0], fuse_conv_bn_eval(previous[1], child))
            setattr(module, name, nn.Identity())
            folded += 1
            previous = None
            continue
        folded += _fold_batchnorm(child)
        previous = (name, child)
    return folded


class _ChannelsLast(nn.Module):
    def __init__(self, net: nn.Module, out_features: int | None) -> None:
        super().__init__()
        self.net = net
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))  # (B, C)
