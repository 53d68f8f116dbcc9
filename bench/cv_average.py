"""Weight averaging over the last epochs, measured by ``bench/cv.py``'s cross-validation.

    python bench/cv_average.py --data ../shared/data/myntra-dev --colour-bins 0 --val-fraction 0 --flip \\
        --epochs 76 --out /tmp/cv-avg-myntra
    python bench/cv_average.py --smoke        # 2 tiny folds of 1 epoch: the mean of the last one

Every fold trains exactly as ``bench/cv.py`` trains it (same arguments, same folds; its summary
is cv.py's, the last epoch). While it trains, the model of each of the last epochs (read from
the run's own resume state, ``last.pt``) is added into running means over the last ``N`` epochs
for every ``N`` of ``WINDOWS``, saved beside the fold as ``avg<N>.pt``. Afterwards each mean is
scored on its fold as the app would serve it: the checkpoint's taus, the vote re-remembered from
the averaged trunk, and the BatchNorm statistics either averaged with the weights ("mean") or
measured again on the training part's photos ("refit", one pass of augmented photos at the
model's size, as in SWA). Pooled over the folds like cv.py; val.csv is never read.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
from pathlib import Path

import cv
import torch

from taxonomy import LabeledExample
from trainer import load_checkpoint, load_images, read_dataset
from trainer.config import TrainConfig
from trainer.evaluation import score
from trainer.labels import encode_labels
from trainer.model import TaxonomyNet
from trainer.preprocess import Preprocess, augment
from trainer.train import trunk_embeddings

WINDOWS = (1, 3, 8, 15, 25)  # 1: the last epoch alone, which must score as cv.py does
BN_MODES = ("mean", "refit")


def averaging_train_full(real):
    """``train_full`` that keeps running means of the last epochs' weights (``avg<N>.pt``)."""

    def wrapped(examples, *, out_dir, config, progress=None, **kwargs):
        out_dir = Path(out_dir)
        sums: dict[int, dict[str, torch.Tensor]] = {}
        counts: dict[int, int] = {}

        def on_epoch(fraction: float, message: str) -> None:
            if progress is not None:
                progress(fraction, message)
            found = re.match(r"epoch (\d+)/(\d+):", message)
            if found is None:
                return
            epoch = int(found.group(1))  # 1-based, the epoch just finished
            due = [n for n in WINDOWS if epoch > config.epochs - n]
            if not due:
                return
            state = torch.load(out_dir / "last.pt", map_location="cpu", weights_only=True)["model"]
            for n in due:
                acc = sums.setdefault(n, {k: torch.zeros_like(v, dtype=torch.float64) for k, v in state.items()})
                for k, v in state.items():
                    acc[k] += v.double()
                counts[n] = counts.get(n, 0) + 1

        result = real(examples, out_dir=out_dir, config=config, progress=on_epoch, **kwargs)
        ref = torch.load(out_dir / "last.pt", map_location="cpu", weights_only=True)["model"] if sums else {}
        for n, acc in sums.items():
            if counts[n] != n:
                logging.warning("window %d: %d epochs seen (a resumed fold); not saved", n, counts[n])
                continue
            mean = {k: (v / n).to(ref[k].dtype) for k, v in acc.items()}
            torch.save({"epochs": n, "model": mean}, out_dir / f"avg{n}.pt")
        return result

    return wrapped


def load_average(model: TaxonomyNet, state: dict[str, torch.Tensor]) -> None:
    """The averaged parameters and BatchNorm statistics into ``model`` (its heads' memory, taus
    and counts stay the checkpoint's)."""
    own = model.state_dict()
    keep = {k for k, _ in model.named_parameters()}
    keep |= {k for k in own if k.endswith(("running_mean", "running_var"))}
    model.load_state_dict({k: state[k] if k in keep else v for k, v in own.items()})


@torch.no_grad()
def refit_batchnorm(model: TaxonomyNet, images: torch.Tensor, preprocess: Preprocess, seed: int) -> None:
    """BatchNorm's running statistics measured again: one pass of augmented training photos."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative mean over the pass
    model.train()
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(images.shape[0], generator=g)
    for start in range(0, len(order), 64):
        idx = order[start : start + 64]
        if idx.numel() < 2:
            continue
        x = augment(images.index_select(0, idx), preprocess, g).contiguous(memory_format=torch.channels_last)
        model.backbone(x)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def rescore(out: Path, data: Path, folds_k: int, seed: int, flip: bool, limit: int | None = None) -> dict:
    """Every saved mean scored on its fold; ``limit``: the first photos only, as cv.py's smoke run."""
    taxonomy = cv.taxonomy_of(data)
    examples, _ = read_dataset(data, taxonomy)
    examples = examples[:limit]
    folds = cv.folds_of(examples, folds_k, seed)
    device = torch.device("cpu")
    preds: dict[str, dict[str, dict[str, str]]] = {}  # "avg<N> bn-<mode> <choice>" -> id -> values
    fold_scores: dict[str, list[float]] = {}  # the same keys -> the score of each fold
    tested: list[LabeledExample] = []
    for i in range(folds_k):
        fold_dir = out / f"fold{i}"
        train = [e for j, f in enumerate(folds) if j != i for e in f]
        ckpt = load_checkpoint(fold_dir / "model.pt")
        test_set = load_images(folds[i], ckpt.preprocess)
        train_set = load_images(train, ckpt.preprocess)
        tested += test_set.examples
        balancing = TrainConfig.from_dict(ckpt.train_config).balancing
        train_labels = encode_labels(train_set.examples, taxonomy)
        for n in WINDOWS:
            path = fold_dir / f"avg{n}.pt"
            if not path.is_file():
                continue
            for mode in BN_MODES:
                model = ckpt.build_model("cpu")
                load_average(model, torch.load(path, map_location="cpu", weights_only=True)["model"])
                model.to(memory_format=torch.channels_last)
                if mode == "refit":
                    refit_batchnorm(model, train_set.images, ckpt.preprocess, seed)
                model.eval()
                weight = float(model.heads.neighbour_weight)
                vectors = trunk_embeddings(model, train_set.images, ckpt.preprocess, device)
                model.heads.set_memory(vectors, train_labels)
                model.heads.set_neighbour_weight(weight, balance=balancing)
                rows = cv.rows_by_choice(model, test_set.examples, test_set.images, ckpt.preprocess, (), flip, device)
                for choice, by_id in rows.items():
                    key = f"avg{n} bn-{mode} {choice}"
                    preds.setdefault(key, {}).update(by_id)
                    fold_score = score(test_set.examples, by_id, taxonomy).score
                    logging.info("fold %d %s: %.4f", i, key, fold_score)
                    fold_scores.setdefault(key, []).append(round(fold_score, 4))
    return {  # pooled over every fold, for the means that every fold has
        key: {"pooled": round(score(tested, by_id, taxonomy).score, 4), "folds": fold_scores[key]}
        for key, by_id in preds.items()
        if len(by_id) == len(tested)
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = cv.argparse.ArgumentParser(add_help=False)
    args.add_argument("--out", type=Path)
    args.add_argument("--data", type=Path, default=cv.MYNTRA)
    args.add_argument("--folds", type=int, default=3)
    args.add_argument("--seed", type=int, default=0)
    args.add_argument("--flip", action="store_true")
    args.add_argument("--smoke", action="store_true")
    known, _ = args.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="cv-average-") as scratch:
        if known.out is None:  # the folds must outlive cv.main for the rescoring: a folder of ours
            known.out = Path(scratch) / "cv"
            argv += ["--out", str(known.out)]
        cv.train_full = averaging_train_full(cv.train_full)
        code = cv.main(argv)
        if code:
            return code
        limit, folds = (160, 2) if known.smoke else (None, known.folds)  # cv.py's smoke run
        summary = rescore(known.out, known.data, folds, known.seed, known.flip, limit)
        (known.out / "average.json").write_text(json.dumps(summary, indent=1) + "\n")
    for key, value in sorted(summary.items()):
        print(f"{key:45s} {value['pooled']:.4f}  folds {value['folds']}")
    return 0 if summary else 1


if __name__ == "__main__":
    raise SystemExit(main())
