"""The fast CPU inference path suggests what the plain fp32 eager path suggests."""

from __future__ import annotations

import torch

from trainer import Predictor, load_checkpoint
from trainer.fastpath import inference_backbone


def test_fast_path_gives_the_same_top1_values(trained, gen_data) -> None:
    photos = [e.image_path for e in gen_data["test"]]
    fast = Predictor.load(trained.checkpoint_path, device="cpu")  # the default
    plain = Predictor.load(trained.checkpoint_path, device="cpu", fast=False)
    assert fast._backbone is not fast.model.backbone and plain._backbone is plain.model.backbone
    for a, b in zip(fast.predict(photos), plain.predict(photos), strict=True):
        assert a.category == b.category
        assert {k: v.value for k, v in a.attributes.items()} == {k: v.value for k, v in b.attributes.items()}
        for k, v in a.attributes.items():
            assert abs(v.probability - b.attributes[k].probability) < 1e-3


def test_folding_leaves_the_trained_backbone_alone(trained) -> None:
    model = load_checkpoint(trained.checkpoint_path).build_model("cpu")
    before = model.backbone.fingerprint()
    folded = inference_backbone(model.backbone, torch.device("cpu"))
    x = torch.rand(3, 3, 48, 48)  # (B, 3, S, S)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model.backbone(x), rtol=1e-4, atol=1e-4)
    assert model.backbone.fingerprint() == before
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert inference_backbone(model.backbone, torch.device("cpu"), fast=False) is model.backbone
