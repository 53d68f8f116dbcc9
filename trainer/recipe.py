"""Which recipe a run takes: decided by where its trunk's weights actually came from.

"imagenet" is only a wish: on an offline machine ``load_trunk_weights`` falls back to random
initialisation, and a randomly initialised trunk needs the from-scratch recipe (112 px, many
epochs), not the fine-tuning one. So the trunk is loaded first, once, and the configs that were
not given are the defaults of the recipe its source calls for (``config.recipe_for``).

The scratch recipe's photo size was chosen on square photos. Given a survey of the run's own
training photos (``survey_photos``: their median size, read from the headers), a fully default
run fits it to their shape (``fit_to_photos``): padded portrait photos train larger, so that the
garment keeps the scale a square photo gets, as long as the photos have the pixels and the
recipe's compute budget allows it. The choice and its reason are the plan's ``photo_note``. The
catalogue recipe (a trunk of ``python -m trainer pretrain``) trains on the scratch recipe's
schedule, so its size is fitted the same way.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from PIL import Image

from .config import Arch, ModelConfig, Recipe, TrainConfig, default_model_config, default_train_config, recipe_for
from .weights import Fetch, StateDict, load_trunk_weights, recorded_trunk


@dataclass(frozen=True)
class RunPlan:
    config: TrainConfig
    model_config: ModelConfig
    trunk_state: StateDict | None = field(repr=False)  # None: random initialisation
    backbone_source: str  # "imagenet", the weights file's path, or "random"
    photo_note: str = ""  # how the photos' shape set the size (``fit_to_photos``); "" if not asked

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
    photos: PhotoSurvey | None = None,
) -> RunPlan:
    """Load the trunk's weights, then fill in what was not given from its recipe's defaults.

    ``weights`` and ``arch`` choose the trunk when ``model_config`` is not given (default: the
    device's architecture and "imagenet"); a given config is used as it is. ``trunk`` is an
    earlier plan's ``trunk`` for the same weights (they are then not loaded again). ``photos``
    (``survey_photos`` of the training photos) fits the scratch recipe's size to their shape
    (``fit_to_photos``) when neither config is given.
    """
    given_model = model_config is not None
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
    note = ""
    if photos is not None and recipe in ("scratch", "catalogue") and config is None and not given_model:
        config = default_train_config(device, recipe=recipe)
        model_config, config, note = fit_to_photos(model_config, config, photos)
    return RunPlan(
        config=config or default_train_config(device, recipe=recipe),
        model_config=model_config,
        trunk_state=state,
        backbone_source=source,
        photo_note=note,
    )


# The scratch recipe's CPU schedule was cross-validated on myntra-dev: 1,799 square 224x224 photos
# seen at 112 px (the first half of the epochs at 80). That schedule on that many photos is the
# recipe's compute budget (about 15 minutes on the project's 2-core dev box).
BUDGET_PHOTOS = 1_800
PHOTO_SCALE_MAX = 1.5  # a 2:3 portrait at most; longer strips are rare and would cost too much
SIZE_STEP = 16  # model sizes are multiples of this (the trunk halves a side five times)
SURVEY_SAMPLE = 200


@dataclass(frozen=True)
class PhotoSurvey:
    """What a run's training photos look like, read from their headers before any is decoded."""

    count: int  # training photos
    width: int  # the median upright width of the sample
    height: int

    @property
    def aspect(self) -> float:
        """Longer side over shorter side (1 for square photos)."""
        return max(self.width, self.height) / max(1, min(self.width, self.height))


def _upright_size(path: str) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:
            width, height = image.size
            # EXIF orientations 5-8 turn the photo a quarter: decoded upright, its sides swap.
            if image.getexif().get(0x0112) in (5, 6, 7, 8):
                width, height = height, width
            return width, height
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def survey_photos(paths: Iterable[str | None], *, sample: int = SURVEY_SAMPLE, seed: int = 0) -> PhotoSurvey | None:
    """The median size of up to ``sample`` of the photos (chosen at random, fixed ``seed``), read
    from their headers; None when none can be read."""
    present = [p for p in paths if p]
    picked = random.Random(seed).sample(present, min(sample, len(present)))
    sizes = [s for s in (_upright_size(p) for p in picked) if s is not None]
    if not sizes:
        return None
    return PhotoSurvey(
        count=len(present),
        width=int(statistics.median_low(w for w, _ in sizes)),
        height=int(statistics.median_low(h for _, h in sizes)),
    )


def fit_to_photos(
    model_config: ModelConfig, config: TrainConfig, survey: PhotoSurvey
) -> tuple[ModelConfig, TrainConfig, str]:
    """The scratch recipe's photo size for photos that are not square, with why.

    "pad" fits a photo's longer side into the model's square, so a 3:4 portrait (flixstock's
    225x300) shows its garment at 3/4 of the scale a square photo gets: the neck and the sleeve
    hem that detail attributes are about shrink. The recipe's sizes (and its progressive size)
    grow by the photos' aspect ratio so that their shorter side gets the pixels a square photo
    gets, as far as (a) the photos have those pixels, (b) ``PHOTO_SCALE_MAX``, and (c) the
    recipe's compute budget allows: ``count * scale**2`` may not pass ``BUDGET_PHOTOS``. So a
    small set of portrait photos trains at a larger size in about the time the recipe takes on
    the set it was chosen on; square photos, or a set too big for the budget, keep the recipe.
    Other crop policies (they already fill the square) are left alone.
    """
    size = model_config.image_size
    if model_config.crop != "pad" or survey.aspect < 1.05:
        return model_config, config, f"photos {survey.width}x{survey.height}: {size} px (the recipe's)"
    native = max(survey.width, survey.height) / size  # not more pixels than the photos have
    budget = math.sqrt(BUDGET_PHOTOS / max(1, survey.count))
    scale = min(survey.aspect, PHOTO_SCALE_MAX, native, budget)
    new_size = max(size, SIZE_STEP * math.floor(size * scale / SIZE_STEP))
    if new_size == size:
        limit = "the photos' own size" if native <= budget else f"the compute budget ({survey.count} photos)"
        return model_config, config, f"photos {survey.width}x{survey.height}: {size} px (kept: {limit})"
    progressive = config.progressive_size
    if progressive:
        progressive = min(new_size, max(progressive, SIZE_STEP * round(progressive * new_size / size / SIZE_STEP)))
    why = (
        f"photos {survey.width}x{survey.height} (median of the sample, {survey.count} photos): "
        f"{new_size} px instead of {size}"
        + (f", first epochs at {progressive} instead of {config.progressive_size}" if progressive else "")
        + " so that the padded photo's garment keeps a square photo's scale"
    )
    return replace(model_config, image_size=new_size), replace(config, progressive_size=progressive), why
