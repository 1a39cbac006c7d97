"""Batched augmentation on tensors: the variety in how people draw, at almost no CPU cost.

One random affine per image (rotation, scale, shear, shift) plus a smooth elastic wobble (a random
4x4 displacement field upsampled over the image: the way a hand's stroke bends, Simard et al. 2003),
both in one grid_sample on the whole batch, and stroke thickness changed on a share of images by
max-pooling (thicker) or min-pooling (thinner), because brushes differ far more than MNIST's pens did.
"""

import math

import torch
import torch.nn.functional as F

ROTATE = 12  # degrees
SCALE = (0.85, 1.1)
SHEAR = 0.25
SHIFT = 0.12  # of the half-width: about 1.7 px
THICKER, THINNER = 0.2, 0.1  # share of images whose strokes are grown / thinned by one pixel


def augment(x: torch.Tensor, generator: torch.Generator, elastic: float) -> torch.Tensor:
    """elastic: the displacement field's std, of the half-width (train/train.py's ELASTIC; 0: none)."""
    n, device = x.shape[0], x.device

    def uniform(low, high):
        return torch.rand(n, device=device, generator=generator) * (high - low) + low

    angle = uniform(-ROTATE, ROTATE) * math.pi / 180
    scale = uniform(*SCALE)
    shear = uniform(-SHEAR, SHEAR)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin + shear * cos, uniform(-SHIFT, SHIFT)], 1),
            torch.stack([sin, cos + shear * sin, uniform(-SHIFT, SHIFT)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if elastic > 0:
        field = torch.randn(n, 2, 4, 4, device=device, generator=generator) * elastic
        grid = grid + F.interpolate(field, size=x.shape[2:], mode="bicubic", align_corners=True).permute(
            0, 2, 3, 1
        )
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")

    pick = torch.rand(n, device=device, generator=generator)
    thicker = F.max_pool2d(x, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-x, 3, stride=1, padding=1)
    x = torch.where((pick < THICKER).view(-1, 1, 1, 1), thicker, x)
    return torch.where(((pick >= THICKER) & (pick < THICKER + THINNER)).view(-1, 1, 1, 1), thinner, x)
