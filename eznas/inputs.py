"""Input minibatches for the probe: real images (or Gaussian noise), normalised per dataset.

NB201 CIFAR-10/100 networks see 32x32 images of their own dataset; ImageNet16-120 networks
see CIFAR-100 images resized to 16x16 (ImageNet16-120 images are not available here); NDS
ImageNet networks see CIFAR-10 images resized to 64x64 (`tasks.NDS_IMAGENET_RESOLUTION`).
"""

from __future__ import annotations

import functools
import os
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

from eznas import datadir
from eznas.errors import EznasError
from eznas.tasks import Task, parse_task

IMAGE_FILES = {"cifar10": "images/cifar10/cifar10.npz", "cifar100": "images/cifar100/cifar100.npz"}
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
KINDS = ("real", "noise")


def batch(
    task: str | Task, n: int = 64, seed: int = 0, kind: str = "real",
    data_dir: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(inputs [n,3,r,r] float32, targets [n] int64)`` for ``task``.

    ``kind="real"`` draws ``n`` distinct images with ``seed`` from the task's image set and
    normalises them with that dataset's mean/std; ``kind="noise"`` (or a user space declared with
    ``images = "noise"``) gives standard Gaussian inputs with uniformly drawn labels. The same arguments give bit-identical tensors.
    """
    t = parse_task(task)
    if kind not in KINDS:
        raise EznasError(f"unknown input kind {kind!r}: use one of {', '.join(KINDS)}")
    if n <= 0:
        raise EznasError(f"batch size must be positive, got {n}")
    gen = torch.Generator().manual_seed(seed)
    if kind == "noise" or t.images == "noise":
        x = torch.randn(n, 3, t.resolution, t.resolution, generator=gen)
        y = torch.randint(0, t.num_classes, (n,), generator=gen)
        return x, y
    images, labels = _load_images(str(datadir.find(IMAGE_FILES[t.images], data_dir).resolve()))
    if n > len(images):
        raise EznasError(f"batch size {n} exceeds the {len(images)} images in {IMAGE_FILES[t.images]}")
    idx = torch.randperm(len(images), generator=gen)[:n].numpy()
    x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float().div_(255.0)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD[t.images])
    x = (x - mean) / std
    if t.resolution != x.shape[-1]:
        x = F.interpolate(x, size=(t.resolution, t.resolution), mode="bilinear", align_corners=False, antialias=True)
    y = torch.from_numpy(labels[idx]).long() % t.num_classes
    return x.contiguous(), y


@functools.lru_cache(maxsize=2)
def _load_images(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as d:
            images, labels = d["images"], d["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise EznasError(f"{path}: unreadable image archive ({reason}); restore the .npz with 'images' and 'labels' "
                         "(eznas data fetch --only images)") from None
    if (images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or labels.ndim != 1
            or len(images) != len(labels) or not np.issubdtype(labels.dtype, np.integer)):
        raise EznasError(f"{path}: expected images uint8 [N,32,32,3] and labels [N], got {images.shape} and {labels.shape}")
    return images, labels
