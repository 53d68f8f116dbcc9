"""The network: a ResNet trunk, one Squeeze-and-Excitation block on its output, pooled, then the heads.

"SE-ResNet" in this project means exactly that: a torchvision ResNet with ONE SE block after its
last stage, as the competition solution describes, not an SE-ResNet with SE in every residual
block (Hu et al.). The trunk is torchvision's unchanged, so ImageNet ResNet weights load into it.
"""

from __future__ import annotations

import hashlib
import logging

import torch
from torch import nn
from torchvision import models

from taxonomy import Taxonomy

from .colour import ColourHistogram
from .config import ModelConfig
from .heads import HeadBank, HeadOutputs
from .weights import Fetch, StateDict, load_trunk_weights

logger = logging.getLogger(__name__)

_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


class SEBlock(nn.Module):
    """Channel attention: squeeze by global pooling, excite through a bottleneck, rescale.

    Used once, on the trunk's last feature map (``Backbone``), not inside the residual blocks.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))  # (B, C, 1, 1)
        return x * s  # (B, C, H, W)


def embedding(features: torch.Tensor, x: torch.Tensor, colour: ColourHistogram | None) -> torch.Tensor:
    """The embedding of a backbone: its last (SE-rescaled) feature map (B, C, h, w) pooled, then,
    with ``colour``, the colour histogram of its input photos ``x`` (B, 3, S, S) after it."""
    pooled = features.mean(dim=(2, 3))  # (B, C)
    if colour is None:
        return pooled
    return torch.cat([pooled, colour(x)], dim=1)  # (B, C + bins**3)


class Backbone(nn.Module):
    """ResNet trunk, one SE block on its last feature map (the only one), global average pooling;
    with ``colour_bins``, the photo's colour histogram (``colour.py``) appended to the pooled features."""

    def __init__(self, arch: str, se_reduction: int = 16, colour_bins: int = 0) -> None:
        super().__init__()
        net = getattr(models, arch)(weights=None)
        self.trunk = nn.Sequential(*[m for name, m in net.named_children() if name not in ("avgpool", "fc")])
        self._trunk_names = [name for name, _ in net.named_children() if name not in ("avgpool", "fc")]
        self.out_features = _FEATURES[arch]
        # The pooled trunk features lead every embedding; similar-product search compares only
        # them (the colour histogram after them is the heads' and would swamp a cosine).
        self.trunk_features = self.out_features
        self.se = SEBlock(self.out_features, se_reduction)
        self.colour = ColourHistogram(colour_bins) if colour_bins else None
        if self.colour is not None:
            self.out_features += self.colour.out_features
        self.frozen: tuple[str, ...] = ()  # trunk stages that neither learn nor update BatchNorm

    def load_trunk(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchvision ResNet state dict (its ``fc`` is dropped) into the trunk."""
        index = {name: str(i) for i, name in enumerate(self._trunk_names)}
        mapped = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in index:
                mapped[f"{index[head]}.{rest}"] = value
        missing, unexpected = self.trunk.load_state_dict(mapped, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights do not fit the trunk: {len(missing)} missing keys (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        """The trunk's weights under torchvision's ResNet names (what ``load_trunk`` reads back)."""
        names = dict(enumerate(self._trunk_names))
        out = {}
        for key, value in self.trunk.state_dict().items():
            index, _, rest = key.partition(".")
            out[f"{names[int(index)]}.{rest}"] = value.detach().to("cpu").clone()
        return out

    def freeze(self, names: tuple[str, ...]) -> None:
        """Freeze the named trunk stages: no gradients, and their BatchNorm stays in eval mode.

        ``requires_grad_(False)`` alone would still let a BatchNorm in training mode normalise by
        each batch and pull its running statistics (the pretrained trunk's) towards this data set.
        """
        unknown = set(names) - set(self._trunk_names)
        if unknown:
            raise ValueError(f"no trunk stage named {sorted(unknown)}; the stages are {self._trunk_names}")
        self.frozen = tuple(n for n in self._trunk_names if n in names)
        for name, module in zip(self._trunk_names, self.trunk):
            if name in self.frozen:
                module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for name, module in zip(self._trunk_names, self.trunk):
            if name in self.frozen:
                module.eval()  # model.train() must not switch a frozen stage back
        return self

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The trunk's trainable parameters (not the SE block's): ``TrainConfig.trunk_lr_scale``."""
        return [p for p in self.trunk.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x)  # (B, C, H/32, W/32)
        f = self.se(f)  # (B, C, H/32, W/32)
        return embedding(f, x, self.colour)  # (B, C [+ bins**3])

    def fingerprint(self) -> str:
        """A hash of the weights: the embedding cache is keyed by it."""
        digest = hashlib.sha256()
        for key, value in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


class TaxonomyNet(nn.Module):
    def __init__(self, config: ModelConfig, taxonomy: Taxonomy) -> None:
        super().__init__()
        self.config = config
        self.taxonomy = taxonomy
        self.backbone = Backbone(config.arch, config.se_reduction, config.colour_bins)
        self.heads = HeadBank(
            taxonomy, in_features=self.backbone.out_features, config=config, vote_features=self.backbone.trunk_features
        )

    def forward(self, x: torch.Tensor, categories: torch.Tensor | None = None) -> HeadOutputs:
        """Images (B, 3, S, S) and known category indices (B,) or None to use the predicted ones."""
        return self.heads(self.backbone(x), categories)


def build_model(
    config: ModelConfig,
    taxonomy: Taxonomy,
    *,
    fetch: Fetch | None = None,
    trunk: tuple[StateDict | None, str] | None = None,
) -> tuple[TaxonomyNet, str]:
    """A fresh model and where its trunk weights came from ("imagenet", a path, or "random").

    ``trunk`` is what ``load_trunk_weights`` already returned for ``config`` (the recipe is chosen
    from its source before the model is built); without it the weights are loaded here.
    """
    model = TaxonomyNet(config, taxonomy)
    state, source = trunk if trunk is not None else load_trunk_weights(config.arch, config.weights, fetch=fetch)
    if state is not None:
        model.backbone.load_trunk(state)
        model.backbone.freeze(config.frozen_when_pretrained)
    logger.info("built %s (trunk weights: %s) with %d heads", config.arch, source, len(model.heads.attribute_heads))
    return model, source
