"""What the neighbours' vote costs a suggestion: ``Predictor.predict`` of one photo with the vote on
and off, interleaved photo by photo in one process, for memories of several sizes.

    python bench/vote_cost.py            # the CPU default (SE-ResNet18, 112 px), memories of 1,799 and 20,000 products
    python bench/vote_cost.py --smoke    # 2 photos, a memory of 50, for CI

The model is the CPU default, randomly initialised (as in ``suggest_latency.py``: nothing is
downloaded); the memory holds the embeddings of myntra-dev train.csv photos, repeated with a
little noise up to the size asked for (the largest a checkpoint keeps is
``TrainConfig.neighbour_memory``, 20,000), with their labels. Cost is all it measures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, add_common_args, device_name, emit, pick_device, ready, work_dir
from suggest_latency import make_checkpoint

from taxonomy import decode_image, read_image_bytes, taxonomy_from_competition
from trainer import Predictor, TrainConfig, load_checkpoint, load_images, read_dataset, save_checkpoint, to_model_input
from trainer.labels import EncodedLabels, encode_labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MYNTRA)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument(
        "--sizes", default=f"1799,{TrainConfig().neighbour_memory}", help="memory sizes, comma-separated"
    )
    add_common_args(parser, "2 photos, a memory of 50")
    args = parser.parse_args(argv)
    if not ready(args, args.data):
        return 2
    sizes = [50] if args.smoke else [int(s) for s in args.sizes.split(",")]
    n_photos = 2 if args.smoke else args.photos
    device = pick_device()
    taxonomy = taxonomy_from_competition(args.data / "category_attributes.parquet", args.data / "train.csv")
    examples, _ = read_dataset(args.data, taxonomy)
    examples = [e for e in examples if e.image_path is not None]
    out = work_dir(None, "vote-cost-")
    base = out / "base.pt"
    make_checkpoint(base, "cpu", None, taxonomy, examples[:64], device)
    ckpt = load_checkpoint(base)
    model = ckpt.build_model(device)
    known = examples[: min(len(examples), max(sizes))]
    with torch.inference_mode():
        images = load_images(known, ckpt.preprocess).images
        vectors = torch.cat(
            [
                model.backbone(to_model_input(images[i : i + 64].to(device), ckpt.preprocess)).cpu()
                for i in range(0, len(images), 64)
            ]
        )  # (n, C)
    labels = encode_labels(known, taxonomy)
    photos = [e.image_path for e in examples[-n_photos:]]
    generator = torch.Generator().manual_seed(0)
    results = []
    for size in sizes:
        repeat = torch.arange(size) % len(known)  # (size,)
        noisy = vectors[repeat] + 0.01 * vectors.std() * torch.randn(size, vectors.shape[1], generator=generator)
        model.cpu().heads.set_memory(noisy, EncodedLabels(labels.categories[repeat], labels.targets[repeat]))
        paths = {}
        for weight in (0.0, TrainConfig().neighbour_weight):
            model.heads.set_neighbour_weight(weight, balance=1.0)
            paths[weight] = out / f"m{size}-{weight}.pt"
            save_checkpoint(paths[weight], model, preprocess=ckpt.preprocess, train_config={}, metrics={})
        predictors = {w: Predictor.load(p, device=device) for w, p in paths.items()}
        times: dict[float, list[float]] = {w: [] for w in predictors}
        for path in photos:
            data = read_image_bytes(path)
            image, _ = decode_image(data, max_bytes=len(data))
            for w, predictor in predictors.items():
                t0 = time.perf_counter()
                predictor.predict([image], [None], top_k=3)
                times[w].append(time.perf_counter() - t0)
        off, on = (statistics.median(times[w]) * 1000 for w in predictors)
        checkpoint_mb = paths[TrainConfig().neighbour_weight].stat().st_size / 2**20
        results.append(
            {
                "memory": size,
                "p50_ms_vote_off": round(off, 2),
                "p50_ms_vote_on": round(on, 2),
                "added_ms": round(on - off, 2),
                "checkpoint_mb": round(checkpoint_mb, 1),
            }
        )
    emit({"machine": device_name(device), "photos": n_photos, "results": results}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
