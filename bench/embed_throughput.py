"""Bulk embedding throughput (import, cache filling) against the naive batch-1 fp32 loop.

    python bench/embed_throughput.py            # 320 myntra-dev photos
    python bench/embed_throughput.py --smoke    # 16 photos, for CI

Two references, both one photo at a time (decode, then an fp32 eager forward):
- the issue's: torchvision's ``resnet50`` at 224 px (the same naive reference as the suggestion
  latency benchmark);
- our own: the device's default backbone at batch 1 (the stricter, same-model comparison).
Against them, three ways to embed the same photos with the device's default model (SE-ResNet18
at 112 px on a CPU, SE-ResNet50 at 224 px on a GPU; random-init trunk, nothing downloaded):
- batched: ``trainer.embed_examples`` with ``fast=False`` and one decode thread, then with the
  fast backbone and one decode thread;
- project default: ``trainer.embed_examples`` as the app's retrain calls it (two decode threads
  overlapping the forward; fp32 eager backbone, since the fast one did not pay off here).
They run in rounds over slices of the photos, each way on each slice in turn, so a noisy machine
affects them alike; no cache is used (every photo is embedded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, add_common_args, device_name, emit, pick_device, ready, sync

from taxonomy import taxonomy_from_competition
from trainer import (
    Preprocess,
    build_model,
    default_model_config,
    embed_examples,
    open_image,
    prepare_image,
    read_dataset,
    to_model_input,
)

ISSUE_REF = "issue's reference: torchvision resnet50 224 px, batch 1, fp32 eager"
OWN_REF = "our backbone, batch 1, fp32 eager"


def naive(backbone, examples, preprocess: Preprocess, device: torch.device) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for ex in examples:
            x = prepare_image(open_image(ex.image_path), preprocess).unsqueeze(0).to(device)  # (1, 3, S, S)
            out.append(backbone(to_model_input(x, preprocess)).cpu())  # (1, C)
    sync(device)
    return torch.cat(out)  # (n, C)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=320)
    parser.add_argument("--round", type=int, default=160, help="photos per interleaved round")
    add_common_args(parser, "16 photos")
    args = parser.parse_args(argv)
    if not ready(args, MYNTRA):
        return 2
    device = pick_device()
    n, per_round = (16, 8) if args.smoke else (args.photos, args.round)
    taxonomy = taxonomy_from_competition(MYNTRA / "category_attributes.parquet", MYNTRA / "train.csv")
    examples, _ = read_dataset(MYNTRA, taxonomy)
    examples = examples[:n]
    config = default_model_config(device.type, weights="none")
    torch.manual_seed(0)
    model, _ = build_model(config, taxonomy)
    backbone = model.backbone.eval().to(device)
    preprocess = Preprocess(config.image_size)

    def batched(chunk, **kw) -> torch.Tensor:
        vectors = embed_examples(
            backbone, chunk, preprocess=preprocess, cache_dir=None, fingerprint="bench", device=device, **kw
        ).vectors  # (n, C)
        sync(device)
        return vectors

    reference = torchvision.models.resnet50(weights=None).eval().to(device)
    ref_preprocess = Preprocess(224)
    ways = {
        ISSUE_REF: lambda chunk: naive(reference, chunk, ref_preprocess, device),
        OWN_REF: lambda chunk: naive(backbone, chunk, preprocess, device),
        "batched 64, fp32 eager, 1 decode thread": lambda chunk: batched(chunk, fast=False, decode_workers=1),
        "batched 64, fast backbone, 1 decode thread": lambda chunk: batched(chunk, decode_workers=1),
        "project default (embed_examples)": lambda chunk: batched(chunk),
    }
    for way in ways.values():  # warm-up
        way(examples[:2])
    seconds = dict.fromkeys(ways, 0.0)
    vectors: dict[str, list[torch.Tensor]] = {k: [] for k in ways}
    for start in range(0, n, per_round):
        chunk = examples[start : start + per_round]
        for name, way in ways.items():
            t0 = time.perf_counter()
            vectors[name].append(way(chunk))
            seconds[name] += time.perf_counter() - t0
    own_vec = torch.cat(vectors[OWN_REF])
    rows = {
        name: {
            "seconds": round(s, 2),
            "images_per_s": round(n / s, 1),
            "speedup_vs_issue_reference": round(seconds[ISSUE_REF] / s, 2),
            "speedup_vs_own_batch1": round(seconds[OWN_REF] / s, 2),
            "max_abs_diff_vs_own_batch1": (
                float((torch.cat(vectors[name]) - own_vec).abs().max()) if name != ISSUE_REF else None
            ),
        }
        for name, s in seconds.items()
    }
    numbers = {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": args.threads,
        "model": f"se-{config.arch} {config.image_size}px",
        "photos": n,
        "ways": rows,
    }
    emit(numbers, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
