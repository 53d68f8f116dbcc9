"""Which recipe a run takes: decided by where its trunk's weights actually came from.

"imagenet" is only a wish: on an offline machine ``load_trunk_weights`` falls back to random
initialisation, and a randomly initialised trunk needs the from-scratch recipe (112 px, many
epochs), not the fine-tuning one. So the trunk is loaded first, once, and the configs that were
not given are the defaults of the recipe its source calls for (``config.recipe_for``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .config import Arch, ModelConfig, Recipe, TrainConfig, default_model_config, default_train_config, recipe_for
from .weights import Fetch, StateDict, load_trunk_weights, recorded_trunk


@dataclass(frozen=True)
class RunPlan:
    config: TrainConfig
    model_config: ModelConfig
    trunk_state: StateDict | None = field(repr=False)  # None: random initialisation
    backbone_source: str  # "imagenet", the weights file's path, or "random"

    @property
    def recipe(self) -> Recipe:
        """The recipe the trunk's source calls for (``config.recipe`` says what the config is)."""
        return recipe_for(self.backbone_source)

    @property
    def trunk(self) -> tuple[StateDict | None, str]:
        """What ``model.build_model(..., trunk=...)`` takes."""
        return self.trunk_state, self.backbone_source


def plan_run(
    device: str,
    *,
    config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    weights: str | None = None,
    arch: Arch | None = None,
    trunk: tuple[StateDict | None, str] | None = None,
    fetch: Fetch | None = None,
) -> RunPlan:
    """Load the trunk's weights, then fill in what was not given from its recipe's defaults.

    ``weights`` and ``arch`` choose the trunk when ``model_config`` is not given (default: the
    device's architecture and "imagenet"); a given config is used as it is. ``trunk`` is an
    earlier plan's ``trunk`` for the same weights (they are then not loaded again).
    """
    wanted = model_config or default_model_config(device, weights=weights or "imagenet")
    # A trunk pretrained by ``python -m trainer pretrain`` brings its architecture and photo size.
    recorded = recorded_trunk(wanted.weights) if model_config is None else {}
    if model_config is None and (arch or recorded.get("arch")):
        wanted = replace(wanted, arch=arch or recorded["arch"])
    state, source = trunk if trunk is not None else load_trunk_weights(wanted.arch, wanted.weights, fetch=fetch)
    recipe = recipe_for(source)
    if model_config is None:
        model_config = replace(default_model_config(device, weights=wanted.weights, recipe=recipe), arch=wanted.arch)
        if recipe == "pretrained" and "image_size" in recorded:  # the size the trunk was trained at
            model_config = replace(model_config, image_size=int(recorded["image_size"]))
    return RunPlan(
        config=config or default_train_config(device, recipe=recipe),
        model_config=model_config,
        trunk_state=state,
        backbone_source=source,
    )
