"""The network built from the taxonomy: head sizes, complex heads, routing, freezing, imports."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from trainer import ModelConfig, SEBlock, TaxonomyNet, build_model

ROOT = Path(__file__).resolve().parents[2]


def test_heads_follow_the_taxonomy(gen_taxonomy, tiny_model) -> None:
    model = TaxonomyNet(tiny_model, gen_taxonomy).eval()
    out = model(torch.rand(3, 3, 48, 48), torch.tensor([0, 1, 0]))
    assert out.category_logits.shape == (3, 2)
    sizes = {(h.category, h.position): h.logits.shape for h in out.attributes}
    assert sizes == {(0, 0): (2, 4), (0, 1): (2, 2), (1, 0): (1, 4), (1, 1): (1, 2)}
    # color has 4 values > complex_threshold 3: the deeper head; pattern the simple one
    color = model.heads.attribute_heads[model.heads.head_index[0][0]]
    pattern = model.heads.attribute_heads[model.heads.head_index[0][1]]
    assert len([m for m in color if isinstance(m, torch.nn.Linear)]) == 3
    assert len([m for m in pattern if isinstance(m, torch.nn.Linear)]) == 2
    named = TaxonomyNet(replace(tiny_model, complex_threshold=99, complex_attributes=("tee/pattern",)), gen_taxonomy)
    assert len([m for m in named.heads.attribute_heads[1] if isinstance(m, torch.nn.Linear)]) == 3


def test_unknown_category_routes_by_prediction(gen_taxonomy, tiny_model) -> None:
    model = TaxonomyNet(tiny_model, gen_taxonomy).eval()
    with torch.no_grad():
        out = model(torch.rand(4, 3, 48, 48))
    assert torch.equal(out.routing, out.category_logits.argmax(1))


def test_se_block_keeps_shape_and_rescales() -> None:
    block = SEBlock(64, reduction=16)
    x = torch.rand(2, 64, 3, 3)
    y = block(x)
    assert y.shape == x.shape
    assert torch.all(y <= x + 1e-6)  # a sigmoid gate only scales down


def test_resnet50_default_has_the_issue_shape(gen_taxonomy) -> None:
    model = TaxonomyNet(ModelConfig(weights="none"), gen_taxonomy)
    assert model.backbone.out_features == 2048
    assert model.backbone.se.fc1.out_channels == 2048 // 16
    assert model.heads.attribute_heads[1][0].in_features == 2048


def test_pretrained_trunk_freezes_layers_1_and_2(gen_taxonomy, tiny_model, tmp_path) -> None:
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    model, source = build_model(replace(tiny_model, weights=str(path)), gen_taxonomy)
    assert source == str(path)
    trainable = {n.split(".")[1] for n, p in model.backbone.named_parameters() if p.requires_grad and "trunk" in n}
    assert trainable == {"6", "7"}  # layer3 and layer4
    scratch, source = build_model(tiny_model, gen_taxonomy)
    assert source == "random" and all(p.requires_grad for p in scratch.parameters())


def test_import_is_quiet_and_one_way() -> None:
    code = (
        "import sys, trainer, trainer.__main__\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('db', 'app')]\n"
        "assert not bad, bad\n"
        "import torch; assert not torch.cuda.is_initialized()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "Warning" not in done.stderr


@pytest.mark.parametrize("bad", [{"arch": "vgg"}, {"image_size": 8}, {"dropout": 1.5}])
def test_model_config_refuses_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**bad)
