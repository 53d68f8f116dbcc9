"""An int8 checkpoint (``python -m trainer quantize``) suggests what its fp32 model suggests, and
the predictor serves it like any checkpoint; a damaged or foreign file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer import CheckpointError, Predictor, load_checkpoint, retrain_heads
from trainer.cli import main
from trainer.int8 import SCHEME, QuantizedBackbone
from trainer.quantize import calibration_photos, quantize_checkpoint

# Share of (photo, attribute) top-1 values, and of categories, on which the int8 model must agree
# with its fp32 model on the 60 generated test photos. The issue asks >= 99% for SE-ResNet50 on
# myntra-dev (bench/quantized.py measures it); a tiny ResNet18 at 48 px, trained for seconds, has
# small logit margins, so the test asks a little less.
AGREEMENT = 0.95


@pytest.fixture(scope="module")
def int8_path(trained, gen_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model-int8.pt"
    photos = [e.image_path for e in gen_data["train"][:64]]
    quantize_checkpoint(trained.checkpoint_path, out, photos=photos)
    return out


def _top1(predictions) -> list[tuple[str, str, str]]:
    return [(p.id, a, v.value) for p in predictions for a, v in sorted(p.attributes.items())]


def test_int8_checkpoint_says_so_and_loads_in_the_predictor(trained, int8_path) -> None:
    ckpt = load_checkpoint(int8_path)
    fp32 = load_checkpoint(trained.checkpoint_path)
    assert ckpt.is_int8 and not fp32.is_int8
    assert ckpt.quantization == {
        "scheme": SCHEME,
        "engine": "x86",
        "calibration_photos": 64,
        "source_version": fp32.version_id,
    }
    assert ckpt.parent_version == fp32.version_id and ckpt.version_id != fp32.version_id
    assert ckpt.backbone_fingerprint != fp32.backbone_fingerprint  # other embeddings: another cache
    assert ckpt.state_dict["backbone.trunk.0.weight"].dtype == torch.qint8
    predictor = Predictor.load(int8_path, device="cpu")
    assert isinstance(predictor._backbone, QuantizedBackbone)
    assert predictor.version_id == ckpt.version_id


def test_int8_top1_agrees_with_fp32(trained, int8_path, gen_data) -> None:
    photos = [e.image_path for e in gen_data["test"]]
    fp32 = Predictor.load(trained.checkpoint_path, device="cpu", fast=False).predict(photos)
    int8 = Predictor.load(int8_path, device="cpu").predict(photos)
    a, b = _top1(fp32), _top1(int8)
    assert len(a) == len(b) >= 2 * len(photos)
    assert sum(x == y for x, y in zip(a, b)) / len(a) >= AGREEMENT
    assert sum(x.category == y.category for x, y in zip(fp32, int8)) / len(photos) >= AGREEMENT
    # the model did learn something, so agreement is not that of two constant models
    assert len({v for _, attr, v in a if attr == "color"}) >= 3


def test_damaged_and_foreign_files_are_refused(int8_path, trained, tmp_path) -> None:
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(int8_path.read_bytes()[: int8_path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        Predictor.load(damaged, device="cpu")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": load_checkpoint(int8_path).state_dict}, foreign)
    with pytest.raises(CheckpointError, match="is not a visual-taxonomy-checkpoint"):
        Predictor.load(foreign, device="cpu")
    raw = torch.load(int8_path, weights_only=True)
    raw["quantization"] = {**raw["quantization"], "scheme": "fx-int4"}
    other = tmp_path / "other-scheme.pt"
    torch.save(raw, other)
    with pytest.raises(CheckpointError, match="unknown scheme 'fx-int4'"):
        Predictor.load(other, device="cpu")
    with pytest.raises(CheckpointError, match="int8 already"):
        quantize_checkpoint(int8_path, tmp_path / "twice.pt", photos=[])
    with pytest.raises(CheckpointError, match="no calibration photos"):
        quantize_checkpoint(trained.checkpoint_path, tmp_path / "none.pt", photos=[])


def test_quantize_command(trained, gen_data, tmp_path, capsys) -> None:
    photos = Path(gen_data["train"][0].image_path).parent
    out = tmp_path / "q.pt"
    args = ["quantize", str(trained.checkpoint_path), "--out", str(out), "--calibration-dir", str(photos)]
    assert main([*args, "--calibration-photos", "32"]) == 0
    assert "calibrated on 32 photos" in capsys.readouterr().out
    assert load_checkpoint(out).quantization["calibration_photos"] == 32
    assert calibration_photos(photos, limit=32) == calibration_photos(photos, limit=32)  # the same photos again
    assert (
        main(["quantize", str(trained.checkpoint_path), "--out", str(out), "--calibration-dir", str(tmp_path / "x")])
        == 2
    )
    assert "calibration folder not found" in capsys.readouterr().err


def test_heads_retrain_on_an_int8_base_stays_int8(int8_path, gen_data, gen_taxonomy, tiny_train, tmp_path) -> None:
    result = retrain_heads(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        base_checkpoint=int8_path,
        out_dir=tmp_path / "heads",
        cache_dir=tmp_path / "cache",
        config=tiny_train,
        device="cpu",
    )
    ckpt = load_checkpoint(result.checkpoint_path)
    assert ckpt.is_int8 and ckpt.parent_version == load_checkpoint(int8_path).version_id
    assert len(Predictor(ckpt, device="cpu").predict([gen_data["test"][0].image_path])[0].attributes) == 2
