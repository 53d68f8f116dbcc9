"""Progressive resizing: early epochs train on smaller photos, the rest (and evaluation) at full size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer import Preprocess, TrainConfig, augment, to_model_input
from trainer.preprocess import Augment
from trainer.train import epoch_size

STILL = Augment(flip=0.0, degrees=0.0, scale=(1.0, 1.0), translate=0.0, brightness=0.0, contrast=0.0)


def _striped(n: int = 2, side: int = 48) -> torch.Tensor:
    """uint8 (n, 3, side, side): black and white horizontal stripes, 4 pixels each."""
    rows = ((torch.arange(side) // 4) % 2 * 255).to(torch.uint8)  # (side,)
    return rows.view(1, 1, side, 1).expand(n, 3, side, side).contiguous()


def test_a_smaller_side_is_the_same_photo_averaged_down() -> None:
    images, pre = _striped(), Preprocess(48)
    small = augment(images, pre, torch.Generator().manual_seed(0), STILL, size=24)
    assert small.shape == (2, 3, 24, 24)
    expected = F.interpolate(to_model_input(images, pre), size=(24, 24), mode="area")  # (2, 3, 24, 24)
    assert torch.allclose(small, expected, atol=1e-4)
    # 2x2 averaging keeps 4-pixel stripes as 2-pixel stripes: still black and white, not grey.
    column = small[0, 0, :, 12]
    assert column.max() - column.min() > 3.0  # normalised units: white minus black is about 4.4


@pytest.mark.parametrize("size", [48, 80])
def test_a_side_at_or_above_the_photos_changes_nothing(size) -> None:
    """A model smaller than the progressive size (e.g. 64 px with the default 80) trains at its own size."""
    images, pre = _striped(), Preprocess(48)
    a = augment(images, pre, torch.Generator().manual_seed(1))
    b = augment(images, pre, torch.Generator().manual_seed(1), size=size)
    assert torch.equal(a, b)


def test_schedule_of_sides() -> None:
    config = TrainConfig(epochs=10, progressive_size=64, progressive_fraction=0.4)
    assert [epoch_size(config, e) for e in range(10)] == [64] * 4 + [None] * 6
    assert all(epoch_size(TrainConfig(epochs=10), e) is None for e in range(10))


@pytest.mark.parametrize("kwargs", [{"progressive_size": 8}, {"progressive_fraction": 1.5}])
def test_bad_settings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="progressive"):
        TrainConfig(**kwargs)
