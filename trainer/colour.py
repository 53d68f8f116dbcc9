"""The colours in the middle of the photo: a fixed RGB histogram beside the learned features.

Colour is a catalogue label (myntra-dev's ``color`` has 43 values, most of them rare), and it is
a pixel statistic: no filter has to be learned to count how much of the product is "navy" or
"maroon". A network trained from scratch on a shop's first two thousand photos learns colour
names from few examples per rare value; the histogram gives its heads the answer's raw material
directly. It counts the middle half of the photo (the product sits in the middle of a catalogue
photo, padded or not; the background and the edges of a padded portrait do not), one bin per
cube of the RGB space, each share square-rooted (Hellinger: small shares of a second colour still
count) and standardised per bin by a BatchNorm that learns with the heads.

Measured on myntra-dev's train.csv before it was built (3 folds by category, a linear classifier
per category on the histogram alone, nothing else): colour scored 0.388 out of fold with 6 bins
per channel over the middle of the photo, 0.322 over the whole photo, while the CPU default's
network scored 0.378 on the same folds. Then inside the network (``bench/cv.py --colour-bins 6
--val-fraction 0 --flip``, the schedule's own cross-validation protocol), fold 0 scored 0.5749 at
the default's tau against 0.5748 without it on the same machine, and colour itself 0.387 against
0.405: no gain, so it is **off by default** (``ModelConfig.colour_bins = 0``) and kept as an option to try on a
shop's own photos (``python -m trainer train --colour-bins 6``, ``bench/cv.py --colour-bins``).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import check_colour_bins
from .preprocess import IMAGENET_MEAN, IMAGENET_STD


class ColourHistogram(nn.Module):
    """Normalised model input (B, 3, S, S) -> standardised colour shares (B, bins**3).

    No weights but the BatchNorm's; the photo's pixels are recovered from the model input by
    undoing ``preprocess.to_model_input``'s normalisation (ImageNet's mean and std, the only one
    a checkpoint of this project uses).
    """

    def __init__(self, bins: int) -> None:
        super().__init__()
        check_colour_bins(bins)
        if not bins:
            raise ValueError("a ColourHistogram needs at least 2 bins per channel; colour_bins 0 means none is built")
        self.bins = bins
        self.out_features = bins**3
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.norm = nn.BatchNorm1d(self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        middle = x[:, :, h // 4 : h - h // 4, w // 4 : w - w // 4].float()  # (B, 3, h/2, w/2)
        rgb = (middle * self.std + self.mean).clamp(0.0, 1.0)  # (B, 3, h/2, w/2) in [0, 1]
        level = (rgb * self.bins).long().clamp_(max=self.bins - 1)  # (B, 3, h/2, w/2)
        code = ((level[:, 0] * self.bins + level[:, 1]) * self.bins + level[:, 2]).flatten(1)  # (B, P)
        counts = torch.zeros(b, self.out_features, device=x.device)
        counts.scatter_add_(1, code, torch.ones_like(code, dtype=counts.dtype))  # (B, bins**3)
        shares = counts / code.shape[1]  # (B, bins**3), each row sums to 1
        return self.norm(shares.sqrt())  # (B, bins**3)
