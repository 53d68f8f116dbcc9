"""The backbone in int8: PyTorch's eager-mode static quantization, x86 backend.

Why this path (issue 13: SE-ResNet50 at 224 px at >= 2x its fp32 eager batch-1 rate on a CPU,
by a built-in PyTorch path, never one that traces the model in the serving process):
``torch.ao.quantization``'s eager mode swaps modules (Conv-BN-ReLU fused by name, then observed,
then replaced by their quantized kernels); it never traces a graph, so building the int8 module
in the app is as safe as building the fp32 one (fx tracing patches ``nn.Module.__call__``
process-wide, see ``fastpath._fold_batchnorm``; dynamo and TorchScript trace). The trunk is
torchvision's quantizable ResNet (``FloatFunctional`` for the residual adds), which keeps the
fp32 trunk's parameter names, so the trained weights load into it unchanged.

Only the trunk is quantized, between a ``QuantStub`` and a ``DeQuantStub``: the SE block, the
pooling and the heads stay fp32. They are a sliver of the FLOPs (two 1x1 convolutions on a
1x1 map, small linear layers), and the heads' small logit margins are where rounding would flip
a suggestion.

Loading does not calibrate: ``restore_backbone`` builds the same structure, fuses it, prepares it
and converts it without showing it any photo (each observer's placeholder scale is then
overwritten), and loads the int8 state dict (scales, zero points and int8 weights) written by the
offline step (``trainer.quantize``). ``torch.ao.quantization`` warns on import in 2.14 that it
is deprecated in favour of torchao; it is still shipped and works, and torchao is not a
dependency. The warnings are silenced around our calls only.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.ao import quantization as tq
from torchvision.models.quantization.resnet import QuantizableBasicBlock, QuantizableBottleneck, QuantizableResNet

from .colour import ColourHistogram
from .config import ModelConfig
from .model import _FEATURES, Backbone, SEBlock, embedding

ENGINE = "x86"  # PyTorch's default server-CPU backend (fbgemm and oneDNN kernels, chosen per shape)
SCHEME = "eager-static-int8"  # what a checkpoint's "quantization" says it is

_LAYOUT: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (QuantizableBasicBlock, [2, 2, 2, 2]),
    "resnet34": (QuantizableBasicBlock, [3, 4, 6, 3]),
    "resnet50": (QuantizableBottleneck, [3, 4, 6, 3]),
}
_DROPPED = ("avgpool", "fc", "quant", "dequant")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the deprecation and "observer saw no data" warnings of ``torch.ao.quantization``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        yield


def use_engine(engine: str) -> None:
    """Select ``engine`` for quantized kernels (a process-wide setting of PyTorch)."""
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(
            f"this PyTorch has no {engine!r} quantized engine (it has {torch.backends.quantized.supported_engines})"
        )
    if torch.backends.quantized.engine != engine:
        torch.backends.quantized.engine = engine


class QuantizedBackbone(nn.Module):
    """``Backbone`` with its trunk between a QuantStub and a DeQuantStub: (B, 3, S, S) -> (B, C).

    Built in fp32 with the fp32 backbone's parameter names under ``trunk`` and ``se``; ``fuse``,
    ``prepare`` and ``convert`` then turn the trunk into int8 in place. Inference only, on a CPU.
    """

    quantized = True  # ``fastpath.inference_backbone`` serves it as it is

    def __init__(self, arch: str, se_reduction: int = 16, colour_bins: int = 0) -> None:
        super().__init__()
        if arch not in _LAYOUT:
            raise ValueError(f"no int8 layout for {arch!r}; known: {sorted(_LAYOUT)}")
        block, layers = _LAYOUT[arch]
        net = QuantizableResNet(block, layers)  # type: ignore[arg-type]
        self.quant = tq.QuantStub()
        self.trunk = nn.Sequential(*[m for name, m in net.named_children() if name not in _DROPPED])
        self.dequant = tq.DeQuantStub()
        self.out_features = _FEATURES[arch]
        self.trunk_features = self.out_features  # as ``Backbone.trunk_features``
        self.se = SEBlock(self.out_features, se_reduction)
        self.colour = ColourHistogram(colour_bins) if colour_bins else None
        if self.colour is not None:
            self.out_features += self.colour.out_features

    def fuse(self) -> None:
        """Conv-BN(-ReLU) into one module each (the stem is trunk 0-2), as torchvision's
        ``QuantizableResNet.fuse_model`` does; the numbers do not change."""
        with _quiet():
            tq.fuse_modules(self.trunk, [["0", "1", "2"]], inplace=True)
            for module in self.trunk.modules():
                if isinstance(module, (QuantizableBasicBlock, QuantizableBottleneck)):
                    module.fuse_model(is_qat=False)

    def prepare(self, engine: str) -> None:
        """Observers on the trunk (per-channel weights, histogram activations: ``engine``'s default)."""
        use_engine(engine)
        with _quiet():
            self.qconfig = tq.get_default_qconfig(engine)
            self.se.qconfig = None  # stays fp32
            if self.colour is not None:
                self.colour.qconfig = None  # counts pixels of the fp32 input
            tq.prepare(self, inplace=True)

    def convert(self) -> None:
        with _quiet():
            tq.convert(self, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.dequant(self.trunk(self.quant(x)))  # (B, C, H/32, W/32), fp32 again
        f = self.se(f)  # (B, C, H/32, W/32)
        return embedding(f, x, self.colour)  # (B, C [+ bins**3])

    def fingerprint(self) -> str:
        """A hash of the int8 weights, scales and zero points (the embedding cache's key): its
        embeddings differ from those of the fp32 backbone it was made from."""
        digest = hashlib.sha256(b"int8")
        for key, value in sorted(self.state_dict().items()):
            digest.update(key.encode())
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu()
                if t.is_quantized:
                    digest.update(t.int_repr().contiguous().numpy().tobytes())
                    t = (
                        t.q_per_channel_scales()
                        if t.qscheme() == torch.per_channel_affine
                        else torch.tensor(t.q_scale())
                    )
                digest.update(t.to(torch.float64).contiguous().numpy().tobytes())
            else:
                digest.update(repr(value).encode())
        return digest.hexdigest()[:16]


def calibrated_backbone(
    backbone: Backbone, batches: Iterable[torch.Tensor], *, config: ModelConfig, engine: str = ENGINE
) -> QuantizedBackbone:
    """``backbone`` (fp32, of ``config``, left untouched) in int8, its activation ranges observed on
    ``batches`` of model inputs (B, 3, S, S): a few hundred of the training photos are enough."""
    q = QuantizedBackbone(config.arch, config.se_reduction, config.colour_bins)
    q.load_state_dict(backbone.state_dict())
    q.eval()
    q.fuse()
    q.prepare(engine)
    seen = 0
    with torch.no_grad():
        for x in batches:
            q(x)  # the observers record each activation's range
            seen += x.shape[0]
    if seen == 0:
        raise ValueError("no calibration photos: int8 activation ranges must be observed on real photos")
    q.convert()
    return q


def restore_backbone(config: ModelConfig, state: dict[str, torch.Tensor], *, engine: str) -> QuantizedBackbone:
    """The int8 backbone that ``calibrated_backbone`` made, from its state dict (no photos needed)."""
    q = QuantizedBackbone(config.arch, config.se_reduction, config.colour_bins).eval()
    q.fuse()
    q.prepare(engine)
    q.convert()  # placeholder scales, replaced by the stored ones below
    q.load_state_dict(state)
    return q
