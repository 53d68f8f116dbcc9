"""The recipe follows where the trunk's weights came from: a pretrained trunk is fine-tuned (its
size, early stages frozen with their BatchNorm, a lower trunk rate, few epochs), a random one
trains from scratch, a trunk of ``python -m trainer pretrain`` takes the scratch schedule with
nothing frozen; the checkpoint says which. Offline: the "ImageNet" weights are a random
torchvision ResNet saved where torchvision's weights API looks for its download."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision

from trainer import (
    PretrainedWeightsUnavailable,
    TrainConfig,
    build_model,
    default_train_config,
    load_checkpoint,
    load_images,
    plan_run,
    preprocess_for,
    train_full,
)
from trainer.config import CATALOGUE_VOTE_BF16, finetune_config, recipe_for
from trainer.labels import encode_labels
from trainer.recipe import PhotoSurvey
from trainer.runtime import native_cpu_bf16
from trainer.train import make_loss, parameter_groups, train_one_epoch
from trainer.weights import torchvision_fetch as real_torchvision_fetch

from .conftest import write_catalogue_trunk

FROZEN = ("conv1", "bn1", "layer1", "layer2")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet18 state dict as a user's local weights file (random, not ImageNet: offline)."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("weights") / "resnet18-own.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture
def imagenet_cache(weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torchvision's real weights API, finding its ResNet18 file already in $TORCH_HOME's cache
    (so nothing is downloaded; a wrong file name would try the network and fall back to random)."""
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    target = tmp_path / "torch" / "hub" / "checkpoints" / Path(urlparse(url).path).name
    target.parent.mkdir(parents=True)
    target.write_bytes(weights_file.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("trainer.weights.torchvision_fetch", real_torchvision_fetch)
    return target


def test_imagenet_trunk_takes_the_pretrained_recipe(imagenet_cache: Path) -> None:
    plan = plan_run("cpu")  # the default: ImageNet weights for the CPU's SE-ResNet18
    assert plan.backbone_source == "imagenet" and plan.recipe == "pretrained"
    assert plan.model_config.arch == "resnet18" and plan.model_config.image_size == 224
    assert plan.config.recipe == "pretrained" and plan.config.trunk_lr_scale == 0.1
    assert plan.config.progressive_size == 0 and plan.config.epochs < default_train_config("cpu").epochs
    expected = torch.load(imagenet_cache, weights_only=True)
    assert all(torch.equal(plan.trunk_state[k], expected[k]) for k in expected)


def test_local_weights_file_takes_the_pretrained_recipe(weights_file: Path) -> None:
    plan = plan_run("cpu", weights=str(weights_file))
    assert plan.backbone_source == str(weights_file) and plan.recipe == "pretrained"
    assert plan.model_config.image_size == 224 and plan.config.recipe == "pretrained"
    gpu = plan_run("cuda", weights=str(weights_file), arch="resnet18")
    assert gpu.model_config.image_size == 224 and gpu.config.recipe == "pretrained"


def test_random_trunk_takes_the_scratch_recipe() -> None:
    plan = plan_run("cpu", weights="none")
    assert plan.backbone_source == "random" and plan.recipe == "scratch"
    assert plan.model_config.image_size == 112 and plan.config == default_train_config("cpu")
    assert plan.config.recipe == "scratch" and plan.config.trunk_lr_scale == 1.0
    # The CPU schedule follows the CPU's arithmetic: more epochs where it computes bf16 natively,
    # and there no neighbours' vote unless the slice chooses one (cross-validated).
    fp32, bf16 = default_train_config("cpu", bf16=False), default_train_config("cpu", bf16=True)
    assert (fp32.epochs, bf16.epochs) == (38, 90) and (fp32.neighbour_weight, bf16.neighbour_weight) == (0.15, 0.0)
    assert replace(bf16, epochs=38, neighbour_weight=0.15) == fp32
    assert plan.config.epochs == (90 if native_cpu_bf16() else 38)
    assert default_train_config("cuda", bf16=True).epochs == default_train_config("cuda", bf16=False).epochs == 30
    # Asked for ImageNet on an offline machine: random initialisation, so the scratch recipe too.
    with pytest.warns(PretrainedWeightsUnavailable):
        offline = plan_run("cpu")
    assert offline.backbone_source == "random" and offline.recipe == "scratch"
    assert offline.model_config.image_size == 112 and offline.config.recipe == "scratch"


@pytest.fixture(scope="module")
def catalogue_trunk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights file as ``python -m trainer pretrain`` writes it."""
    source = "pretrained: catalogue shop/catalogue.csv, columns articleType,baseColour, 6 epochs"
    path = tmp_path_factory.mktemp("catalogue") / "trunk.pt"
    return write_catalogue_trunk(path, source, seed=8, image_size=112, crop="pad")


def test_catalogue_trunk_takes_the_scratch_schedule_with_nothing_frozen(catalogue_trunk: Path, gen_taxonomy) -> None:
    portraits = PhotoSurvey(count=803, width=225, height=300)  # flixstock-dev's training photos
    plan = plan_run("cpu", weights=str(catalogue_trunk), photos=portraits)
    scratch = plan_run("cpu", weights="none", photos=portraits)
    assert plan.backbone_source.startswith("pretrained: catalogue shop/catalogue.csv")
    assert plan.backbone_source.endswith(f"weights file {catalogue_trunk}")
    assert plan.recipe == "catalogue" and plan.config.recipe == "catalogue"
    # The scratch recipe's schedule and rates, and its photo size fitted to the photos' shape.
    # The neighbours' vote: off at 38 epochs, 0.25 at the bf16 CPU's 76 (cross-validated; the
    # scratch recipe trains 90 there, which was not measured for a catalogue trunk).
    vote, epochs = (CATALOGUE_VOTE_BF16, 76) if native_cpu_bf16() else (0.0, 38)
    assert (
        plan.config == replace(scratch.config, recipe="catalogue", neighbour_weight=vote, epochs=epochs)
        and plan.config.trunk_lr_scale == 1.0
    )
    fp32, bf16 = (default_train_config("cpu", recipe="catalogue", bf16=b) for b in (False, True))
    assert (fp32.epochs, fp32.neighbour_weight) == (38, 0.0) and (bf16.epochs, bf16.neighbour_weight) == (76, 0.25)
    assert plan.model_config == replace(scratch.model_config, weights=str(catalogue_trunk), frozen_when_pretrained=())
    assert (plan.model_config.image_size, plan.config.progressive_size) == (144, 96) and plan.photo_note
    assert plan.trunk_state is not None
    model, _ = build_model(plan.model_config, gen_taxonomy, trunk=plan.trunk)
    assert all(p.requires_grad for p in model.backbone.parameters())
    model.train()
    assert all(m.training for m in model.backbone.modules())  # no BatchNorm kept in eval mode
    # A fine-tune of a model trained from it keeps that recipe (the app's warm full runs).
    assert recipe_for(plan.backbone_source) == "catalogue"
    assert finetune_config(default_train_config("cpu", recipe="catalogue")).recipe == "catalogue"
    gpu = plan_run("cuda", weights=str(catalogue_trunk))  # the file's arch, the GPU's scratch size
    assert gpu.recipe == "catalogue" and gpu.model_config.arch == "resnet18" and gpu.model_config.image_size == 224
    assert gpu.config == replace(default_train_config("cuda"), recipe="catalogue", neighbour_weight=0.0)


def test_configs_given_are_kept(weights_file: Path, tiny_model, tiny_train) -> None:
    plan = plan_run("cpu", config=tiny_train, model_config=replace(tiny_model, weights=str(weights_file)))
    assert plan.recipe == "pretrained" and plan.config is tiny_train and plan.model_config.image_size == 48


def _bn_state(model: torch.nn.Module, stage: str) -> dict[str, torch.Tensor]:
    state = model.backbone.trunk[model.backbone._trunk_names.index(stage)].state_dict()
    return {k: v.clone() for k, v in state.items() if "running" in k or "batches" in k}


def test_frozen_batchnorm_statistics_do_not_change_in_a_training_step(
    weights_file: Path, gen_data, gen_taxonomy, tiny_model
) -> None:
    torch.manual_seed(0)
    model_config = replace(tiny_model, weights=str(weights_file))
    model, source = build_model(model_config, gen_taxonomy)
    assert source == str(weights_file)
    model.train()  # must not switch the frozen stages back to training mode
    stages = dict(zip(model.backbone._trunk_names, model.backbone.trunk))
    assert not any(m.training for name in FROZEN for m in stages[name].modules())
    assert stages["layer3"].training and stages["layer4"].training
    before = {name: _bn_state(model, name) for name in (*FROZEN, "layer3")}
    frozen_weights = {k: v.clone() for k, v in model.backbone.trunk[4].state_dict().items()}  # layer1

    examples = gen_data["train"][:24]
    images = load_images(examples, preprocess_for(model_config))
    labels = encode_labels(images.examples, gen_taxonomy)
    config = replace(default_train_config("cpu", recipe="pretrained"), batch_size=8)
    groups = parameter_groups(model, config)
    assert [g["lr"] for g in groups] == [config.lr, pytest.approx(config.lr * 0.1)]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    train_one_epoch(
        model,
        make_loss(labels, gen_taxonomy, config),
        optimizer,
        None,
        images.images,
        labels,
        torch.arange(len(labels)),
        preprocess=preprocess_for(model_config),
        device=torch.device("cpu"),
        dtype=None,
        generator=torch.Generator().manual_seed(0),
        batch_size=config.batch_size,
        grad_clip=config.grad_clip,
    )
    after = {name: _bn_state(model, name) for name in (*FROZEN, "layer3")}
    for name in FROZEN:
        for key, value in before[name].items():
            assert torch.equal(after[name][key], value), f"{name}.{key} drifted in a training step"
    # The stage that trains does update its statistics (so the check above can fail).
    assert not torch.equal(after["layer3"]["0.bn1.running_mean"], before["layer3"]["0.bn1.running_mean"])
    assert all(torch.equal(v, model.backbone.trunk[4].state_dict()[k]) for k, v in frozen_weights.items())


def test_checkpoint_records_the_recipe(weights_file: Path, gen_data, gen_taxonomy, tiny_model, tmp_path) -> None:
    few = gen_data["train"][:40]
    pretrained = train_full(
        few,
        taxonomy=gen_taxonomy,
        out_dir=tmp_path / "pretrained",
        model_config=replace(tiny_model, weights=str(weights_file)),
        device="cpu",
    )  # no train config given: the pretrained recipe's
    ckpt = load_checkpoint(pretrained.checkpoint_path)
    assert ckpt.recipe == "pretrained" and ckpt.backbone_source == str(weights_file)
    assert ckpt.train_config["trunk_lr_scale"] == 0.1
    assert ckpt.train_config["epochs"] == default_train_config("cpu", recipe="pretrained").epochs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsUnavailable)
        scratch = train_full(
            few,
            taxonomy=gen_taxonomy,
            out_dir=tmp_path / "scratch",
            model_config=replace(tiny_model, weights="imagenet"),  # offline: random
            device="cpu",
        )
    ckpt = load_checkpoint(scratch.checkpoint_path)
    assert ckpt.recipe == "scratch" and ckpt.backbone_source == "random"


def test_the_default_recipes_keep_the_last_epoch_of_their_schedule() -> None:
    """Cross-validated as a fixed schedule: no early stop on the slice (``TrainConfig.keep_last``);
    a fine-tune keeps the slice's best of its whole schedule, as the loop benchmark measured."""
    for device in ("cpu", "cuda"):
        for recipe in ("scratch", "catalogue", "pretrained"):
            assert default_train_config(device, recipe=recipe).keep_last, (device, recipe)
    tuned = finetune_config(default_train_config("cpu"))
    assert not tuned.keep_last and tuned.patience > tuned.epochs
    assert not TrainConfig().keep_last  # a custom config stops early as configured
