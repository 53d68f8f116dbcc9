"""SE-ResNet50 at 224 px on a CPU: fp32 eager vs int8 (``python -m trainer quantize``), speed and agreement.

    python bench/quantized.py --json quantized.json     # about 5-10 min on the 2-core CPU
    python bench/quantized.py --smoke                   # SE-ResNet18 at 64 px, a few photos, for CI

The model is the GPU default of ``trainer.config`` (SE-ResNet50, 224 px) from a random-init trunk:
training it at 224 px on this CPU takes hours, so its BatchNorm statistics are calibrated on
``--bn-photos`` training photos (train-mode forward passes, cumulative averages) and its heads
are trained on the embeddings of ``--train-photos`` training photos (``retrain_heads``, the
heads-only retrain the app runs). Its suggestions are therefore weak, and agreement on such a
model is a weaker test than on a trained one: a random trunk's features differ by little between
photos, which makes them *more* sensitive to int8 rounding, but its heads may be less decisive.
The int8 checkpoint is calibrated on ``--calibration-photos`` other training photos.

Agreement: top-1 value of every (val.csv product, attribute of its category) with the category
given, as the app suggests for a seller's chosen category; plus the competition metric of both.
Speed: the model's forward (backbone + heads, no decode) through ``trainer.Predictor`` on photos
already prepared, median of ``--reps`` interleaved repetitions, at batch 1 and batched; fp32
eager is ``Predictor(fast=False)``, fp32 fast the default CPU path (BatchNorm folded,
channels-last), int8 the quantized checkpoint as served. Rates at 1 and at ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, add_common_args, device_name, emit, read_split, ready

from trainer import (
    Predictor,
    build_model,
    default_model_config,
    default_train_config,
    load_checkpoint,
    preprocess_for,
    retrain_heads,
    save_checkpoint,
)
from trainer.evaluation import score
from trainer.preprocess import open_image, prepare_image, to_model_input
from trainer.quantize import quantize_checkpoint


def calibrate_batchnorm(model: torch.nn.Module, photos: list[str], preprocess, batch: int = 16) -> None:
    """Running BatchNorm statistics of a random-init trunk from real photos (cumulative mean)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(photos), batch):
            raw = torch.stack([prepare_image(open_image(p), preprocess) for p in photos[i : i + batch]])
            model.backbone(to_model_input(raw, preprocess))  # (b, C)
    model.eval()


def given_model(tmp: Path, args: argparse.Namespace, train) -> tuple[Path, Path, dict]:
    """``--checkpoint``: a trained fp32 checkpoint (``python -m trainer train ...``), quantized here
    as an admin would (``python -m trainer quantize``), calibrated on training photos."""
    ckpt = load_checkpoint(args.checkpoint)
    t0 = time.perf_counter()
    int8 = tmp / "int8" / "model.pt"
    photos = [e.image_path for e in train[: args.calibration_photos]]
    quantize_checkpoint(args.checkpoint, int8, photos=photos)
    held_out = ckpt.metrics.get("score")
    setup = {
        "model": f"SE-{ckpt.model_config.arch} {ckpt.preprocess.image_size}px, trained: {args.checkpoint} "
        f"(trunk: {ckpt.backbone_source}; its held-out score {held_out})",
        "calibration_photos": args.calibration_photos,
        "quantize_s": round(time.perf_counter() - t0, 1),
    }
    return args.checkpoint, int8, setup


def build_models(tmp: Path, args: argparse.Namespace, taxonomy, train) -> tuple[Path, Path, dict]:
    if args.checkpoint is not None:
        return given_model(tmp, args, train)
    config = default_model_config("cuda", weights="none")  # the GPU default: SE-ResNet50, 224 px
    if args.smoke:
        config = replace(config, arch="resnet18", image_size=64)
    torch.manual_seed(0)
    model, source = build_model(config, taxonomy)
    preprocess = preprocess_for(config)
    t0 = time.perf_counter()
    n_bn, n_heads, n_cal = args.bn_photos, args.train_photos, args.calibration_photos
    calibrate_batchnorm(model, [e.image_path for e in train[:n_bn]], preprocess)
    init = tmp / "init" / "model.pt"
    save_checkpoint(init, model, preprocess=preprocess, train_config={}, metrics={}, backbone_source=source)
    heads_cfg = replace(default_train_config("cpu"), heads_epochs=args.heads_epochs)
    result = retrain_heads(
        train[:n_heads],
        taxonomy=taxonomy,
        base_checkpoint=init,
        out_dir=tmp / "fp32",
        cache_dir=tmp / "cache",
        config=heads_cfg,
        device="cpu",
    )
    t1 = time.perf_counter()
    int8 = tmp / "int8" / "model.pt"
    quantize_checkpoint(result.checkpoint_path, int8, photos=[e.image_path for e in train[n_heads : n_heads + n_cal]])
    t2 = time.perf_counter()
    setup = {
        "model": f"SE-{config.arch} {config.image_size}px, random-init trunk, BatchNorm calibrated on {n_bn} photos, "
        f"heads trained on {n_heads} photos' embeddings ({args.heads_epochs} epochs at most)",
        "calibration_photos": n_cal,
        "setup_s": round(t1 - t0, 1),
        "quantize_s": round(t2 - t1, 1),
    }
    return Path(result.checkpoint_path), int8, setup


def agreement(fp32: Predictor, int8: Predictor, val, taxonomy) -> dict:
    paths, cats, ids = [e.image_path for e in val], [e.category for e in val], [e.id for e in val]
    a = fp32.predict(paths, cats, top_k=1, ids=ids)
    b = int8.predict(paths, cats, top_k=1, ids=ids)
    pairs = [(pa.attributes[k].value, pb.attributes[k].value) for pa, pb in zip(a, b) for k in pa.attributes]
    same = sum(x == y for x, y in pairs)
    return {
        "val_products": len(val),
        "attribute_pairs": len(pairs),
        "top1_agree": same,
        "top1_agreement": round(same / max(1, len(pairs)), 4),
        "fp32_metric": round(score(val, {p.id: p.labels for p in a}, taxonomy).score, 4),
        "int8_metric": round(score(val, {p.id: p.labels for p in b}, taxonomy).score, 4),
    }


def rates(paths: dict[str, Predictor], raw: torch.Tensor, cats: list[str], reps: int, batch: int) -> dict:
    """Images per second (1 / median per-image time) of each path at batch 1 and at ``batch``."""
    ids = [f"p{i}" for i in range(len(cats))]
    times: dict[str, list[float]] = {}
    for p in paths.values():  # warm-up: oneDNN builds its kernels on the first call
        p.predict_prepared(raw[:1], cats[:1], ids=ids[:1])
        p.predict_prepared(raw[:batch], cats[:batch], ids=ids[:batch])
    for r in range(reps):  # interleaved, so a burst of load elsewhere hits every path alike
        for name, p in paths.items():
            i = r % len(cats)
            t = time.perf_counter()
            p.predict_prepared(raw[i : i + 1], cats[i : i + 1], ids=ids[i : i + 1])
            times.setdefault(f"{name} b1", []).append(time.perf_counter() - t)
            if r % 3 == 0:
                t = time.perf_counter()
                p.predict_prepared(raw[:batch], cats[:batch], ids=ids[:batch])
                times.setdefault(f"{name} b{batch}", []).append((time.perf_counter() - t) / batch)
    return {k: round(1.0 / statistics.median(v), 2) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a trained fp32 checkpoint to quantize and compare (default: build the random-trunk model)",
    )
    parser.add_argument("--bn-photos", type=int, default=96)
    parser.add_argument("--train-photos", type=int, default=600)
    parser.add_argument("--heads-epochs", type=int, default=40)
    parser.add_argument("--calibration-photos", type=int, default=128)
    parser.add_argument("--val", type=int, default=0, help="val.csv products to compare (0: all)")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    add_common_args(parser, "SE-ResNet18 at 64 px, a few photos")
    args = parser.parse_args(argv)
    if not ready(args, MYNTRA):
        return 2
    if args.smoke:
        args.bn_photos, args.train_photos, args.heads_epochs, args.calibration_photos = 16, 48, 3, 16
        args.val, args.reps, args.batch = 12, 2, 4
    taxonomy, train, val = read_split(MYNTRA)
    val = [e for e in val if e.image_path is not None][: args.val or None]
    with tempfile.TemporaryDirectory(prefix="quantized-bench-") as tmp:
        fp32_path, int8_path, setup = build_models(Path(tmp), args, taxonomy, train)
        eager = Predictor.load(fp32_path, device="cpu", fast=False, batch_size=args.batch)
        fast = Predictor.load(fp32_path, device="cpu", batch_size=args.batch)
        t = time.perf_counter()
        int8 = Predictor(load_checkpoint(int8_path), device="cpu", batch_size=args.batch)
        load_s = time.perf_counter() - t
        agree = agreement(eager, int8, val, taxonomy)
        sample = val[: max(args.batch, 4)]
        raw = torch.stack([eager.prepare(e.image_path) for e in sample])  # (n, 3, S, S)
        cats = [e.category for e in sample]
        paths = {"fp32 eager": eager, "fp32 fast": fast, "int8": int8}
        speed = {}
        for threads in sorted({1, args.threads}):
            torch.set_num_threads(threads)
            speed[f"{threads} threads"] = got = rates(paths, raw, cats, args.reps, args.batch)
            got["int8 b1 / fp32 eager b1"] = round(got["int8 b1"] / got["fp32 eager b1"], 2)
            got[f"int8 b{args.batch} / fp32 eager b1"] = round(got[f"int8 b{args.batch}"] / got["fp32 eager b1"], 2)
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = sorted({f for f in cpu.split() if f.startswith(("avx512_vnni", "amx", "avx512_bf16"))})
    emit(
        {
            "device": device_name(torch.device("cpu")),
            "cpu_flags": flags,
            "torch": torch.__version__,
            "engine": torch.backends.quantized.engine,
            **setup,
            "int8_load_s": round(load_s, 2),
            "agreement": agree,
            "images_per_s": speed,
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
