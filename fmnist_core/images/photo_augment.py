"""Photo-like augmentation of whole training batches (TrainConfig.photo_augment).

A photo, once preprocessed (inference.to_model_input), still differs from a Fashion-MNIST
image: lower or uneven contrast, another tone curve, a softer focus, sensor noise, a
little rotation or zoom left by the crop, a shadow or a fold that hides part of the item.
`photo_augment` draws each of these per image, scaled by one strength in [0, 1], with
batched tensor ops on the batch's own device (one affine_grid/grid_sample, one grouped
convolution for the blur), so it costs a few percent of a training step.

All random numbers come from the run's CPU generator, then move to the batch's device:
the same seed gives the same batch on any device, and a resumed run continues exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fmnist_core.images.data import IMAGE_SIZE, MEAN, STD

# The largest change of each kind, at strength 1. Chosen so that strength 1 still leaves a
# recognisable item (checked by eye on a grid of training images; README "Photos").
MAX_CONTRAST_DROP = 0.5  # the item's brightness may be scaled down to 50%
MAX_LIFT = 0.15  # a grey background instead of black, as left by uneven light
MAX_GAMMA = 0.6  # tone curve u**g with g in [e**-0.6, e**0.6] (about 0.55 to 1.8)
MAX_GRADIENT = 0.15  # a linear light gradient across the frame, at most this much at a corner
MAX_BLUR_SIGMA = 1.0  # pixels of the 28x28 frame
MAX_NOISE = 0.08  # standard deviation of Gaussian noise, in [0, 1] units
MAX_ROTATION = 12.0  # degrees
MAX_ZOOM = 0.12  # the item scaled by up to +-12%
MAX_SHIFT = 2.0  # pixels
ERASE_PROBABILITY = 0.5  # at strength 1, half the images lose a rectangle
ERASE_AREA = (0.02, 0.15)  # of the frame
BLUR_RADIUS = 3  # kernel 7x7 covers 3 sigma at the largest sigma


def _uniform(n: int, generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def photo_augment(x: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Photo-like changes to a normalised batch (B, 1, 28, 28); same shape, dtype and
    device, still in the normalised range of [0, 1] images. strength 0 returns x."""
    if strength <= 0:
        return x
    n, device, dtype = x.shape[0], x.device, x.dtype
    s = float(strength)
    # Every draw first, in a fixed order, on the CPU generator.
    angle = _uniform(n, generator, -MAX_ROTATION * s, MAX_ROTATION * s) * (math.pi / 180)
    zoom = 1 + _uniform(n, generator, -MAX_ZOOM * s, MAX_ZOOM * s)
    shift = _uniform(2 * n, generator, -MAX_SHIFT * s, MAX_SHIFT * s).view(n, 2) * (2 / IMAGE_SIZE)
    contrast = 1 - _uniform(n, generator, 0, MAX_CONTRAST_DROP * s)
    lift = _uniform(n, generator, 0, MAX_LIFT * s)
    gamma = torch.exp(_uniform(n, generator, -MAX_GAMMA * s, MAX_GAMMA * s))
    gradient = _uniform(2 * n, generator, -MAX_GRADIENT * s, MAX_GRADIENT * s).view(n, 2)
    sigma = _uniform(n, generator, 0, MAX_BLUR_SIGMA * s)
    noise_std = _uniform(n, generator, 0, MAX_NOISE * s)
    # Uniform noise of unit variance: as good as Gaussian at this size, and faster to draw.
    noise = (torch.rand(n, 1, IMAGE_SIZE, IMAGE_SIZE, generator=generator) - 0.5) * math.sqrt(12)
    erase = torch.rand(n, generator=generator) < ERASE_PROBABILITY * s
    area = _uniform(n, generator, *ERASE_AREA)
    aspect = torch.exp(_uniform(n, generator, -math.log(3), math.log(3)))
    corner = torch.rand(n, 2, generator=generator)
    draws = [t.to(device=device, dtype=dtype) for t in (angle, zoom, shift, contrast, lift, gamma, gradient, sigma, noise_std, noise, area, aspect, corner)]
    angle, zoom, shift, contrast, lift, gamma, gradient, sigma, noise_std, noise, area, aspect, corner = draws
    erase = erase.to(device)

    u = (x * STD + MEAN).clamp(0, 1)  # (B, 1, 28, 28) in [0, 1], black background = 0
    u = _affine(u, angle, zoom, shift)
    u = torch.exp(torch.log(u.clamp_min(1e-6)) * gamma.view(n, 1, 1, 1)) * contrast.view(n, 1, 1, 1)  # u**gamma, faster
    u = _blur(u, sigma)
    ramp = torch.linspace(-1, 1, IMAGE_SIZE, device=device, dtype=dtype)
    gx, gy = gradient[:, 0].view(n, 1, 1, 1), gradient[:, 1].view(n, 1, 1, 1)
    # 0 at the darkest corner, |gx| + |gy| at the brightest: light only ever adds.
    light = (gx.abs() + gy.abs() + gx * ramp.view(1, 1, 1, -1) + gy * ramp.view(1, 1, -1, 1)) / 2
    u = lift.view(n, 1, 1, 1) + (1 - lift.view(n, 1, 1, 1)) * u + light
    u = u + noise_std.view(n, 1, 1, 1) * noise
    u = _erase(u, erase, area, aspect, corner)
    return (u.clamp(0, 1) - MEAN) / STD


def _affine(u: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate, zoom and shift each image about its centre, bilinear; what comes in from
    outside is black."""
    n = u.shape[0]
    cos, sin = (torch.cos(angle) / zoom).view(n, 1, 1), (torch.sin(angle) / zoom).view(n, 1, 1)
    # affine_grid's sampling positions, built by broadcasting: its batched matmul costs more
    # than the sampling itself on a CPU.
    pos = (torch.arange(IMAGE_SIZE, device=u.device, dtype=u.dtype) * 2 + 1) / IMAGE_SIZE - 1  # pixel centres in [-1, 1]
    px, py = pos.view(1, 1, -1), pos.view(1, -1, 1)
    gx = cos * px - sin * py + shift[:, 0].view(n, 1, 1)  # (B, 28, 28)
    gy = sin * px + cos * py + shift[:, 1].view(n, 1, 1)
    return F.grid_sample(u, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="zeros", align_corners=False)


def _blur(u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of its own sigma per image: one grouped convolution for the batch."""
    n = u.shape[0]
    offsets = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, device=u.device, dtype=u.dtype)  # (K,)
    weights = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.clamp_min(1e-3).view(-1, 1)) ** 2)  # (B, K)
    weights = weights / weights.sum(1, keepdim=True)
    kernel = (weights.view(n, -1, 1) * weights.view(n, 1, -1)).unsqueeze(1)  # (B, 1, K, K)
    blurred = F.conv2d(u.view(1, n, IMAGE_SIZE, IMAGE_SIZE), kernel, padding=BLUR_RADIUS, groups=n)
    return blurred.view(n, 1, IMAGE_SIZE, IMAGE_SIZE)


def _erase(u: torch.Tensor, erase: torch.Tensor, area: torch.Tensor, aspect: torch.Tensor, corner: torch.Tensor) -> torch.Tensor:
    """Random erasing: a rectangle of `area` (share of the frame) set to the image's
    darkest value, for the images where `erase` is true (a shadow or a fold, not a hole)."""
    n = u.shape[0]
    h = (torch.sqrt(area * aspect) * IMAGE_SIZE).clamp(1, IMAGE_SIZE)
    w = (torch.sqrt(area / aspect) * IMAGE_SIZE).clamp(1, IMAGE_SIZE)
    top, left = corner[:, 0] * (IMAGE_SIZE - h), corner[:, 1] * (IMAGE_SIZE - w)
    pos = torch.arange(IMAGE_SIZE, device=u.device, dtype=u.dtype)
    rows = (pos.view(1, -1) >= top.view(-1, 1)) & (pos.view(1, -1) < (top + h).view(-1, 1))  # (B, 28)
    cols = (pos.view(1, -1) >= left.view(-1, 1)) & (pos.view(1, -1) < (left + w).view(-1, 1))
    mask = (rows.view(n, 1, -1, 1) & cols.view(n, 1, 1, -1)) & erase.view(n, 1, 1, 1)
    darkest = u.amin(dim=(2, 3), keepdim=True)
    return torch.where(mask, darkest, u)
