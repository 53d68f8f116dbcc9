"""CutMix within a category: a box of another photo of the same category, the loss split by area."""

from __future__ import annotations

import pytest
import torch

from trainer import TrainConfig
from trainer.preprocess import cutmix, same_category_partners


def test_partners_share_the_category_and_each_photo_lends_its_box_once() -> None:
    cats = torch.tensor([0, 1, 0, 2, 1, 0, 1, 0])
    for seed in range(20):
        partner = same_category_partners(cats, torch.Generator().manual_seed(seed))
        assert torch.equal(cats[partner], cats)  # the same heads score both photos
        assert sorted(partner.tolist()) == list(range(len(cats)))  # a permutation: every photo lends once
        assert partner[3] == 3  # alone in its category: its own partner
    draws = {tuple(same_category_partners(cats, torch.Generator().manual_seed(s)).tolist()) for s in range(20)}
    assert len(draws) > 5  # partners are drawn afresh, not fixed


def test_the_box_comes_from_the_partner_and_its_area_sets_the_weights() -> None:
    side = 40
    x = torch.stack([torch.full((3, side, side), float(i)) for i in range(4)])  # photo i is all i
    partner = torch.tensor([1, 0, 3, 2])
    boxes = 0
    for seed in range(30):
        mixed, own = cutmix(x, partner, torch.Generator().manual_seed(seed))
        assert torch.equal(x, torch.stack([torch.full((3, side, side), float(i)) for i in range(4)]))  # input kept
        for i in range(4):
            kept = (mixed[i] == i).float().mean().item()
            lent = (mixed[i] == partner[i]).float().mean().item()
            assert kept == pytest.approx(own, abs=1e-6)  # the loss weight is the photo's own share
            assert kept + lent == pytest.approx(1.0)  # every other pixel is the partner's
        boxes += own < 1.0
    assert boxes >= 25  # almost every draw pastes a box


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_0_1_is_refused(share) -> None:
    with pytest.raises(ValueError, match="cutmix"):
        TrainConfig(cutmix=share)
