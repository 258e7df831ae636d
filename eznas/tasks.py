"""Task identifiers: ``"nb201:cifar10"``, ``"nds:DARTS_in"``, ``"nb101:cifar10"`` -> what a task means.

A task is a (search space, benchmark file/dataset) pair. This module only parses names;
ground truth lives in `benchmarks`, networks in `spaces`, images in `inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass

from eznas import user_spaces
from eznas.errors import EznasError

NB201_DATASETS = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
NASLIB_SPACES = ("nb101", "nb301")  # NAS-Bench-101 / -301 samples of NAS-Bench-Suite-Zero
NASLIB_DATASETS = ("cifar10",)
NDS_IMAGENET_RESOLUTION = 64  # NDS ImageNet networks see CIFAR images resized to 64x64


@dataclass(frozen=True)
class Task:
    """A parsed task id.

    Attributes
    ----------
    name : the canonical id, e.g. ``"nb201:cifar100"``.
    space : ``"nb201"``, ``"nds"``, ``"nb101"`` or ``"nb301"``.
    key : the dataset name (NB201, NB101, NB301) or the NDS file stem (``"DARTS_in"``).
    num_classes : classifier width of the networks.
    resolution : input image side in pixels.
    images : which shared image set feeds the networks (``"cifar10"`` or ``"cifar100"``).
    """

    name: str
    space: str
    key: str
    num_classes: int
    resolution: int
    images: str
    user: user_spaces.UserSpace | None = None  # the declaration of a ``user:NAME`` space (travels to workers)

    @property
    def imagenet_layout(self) -> bool:
        """True for NDS ImageNet sweeps (``*_in``): stride-8 stem, 1000 classes."""
        return self.space == "nds" and self.key.endswith("_in")


def parse_task(task: str | Task) -> Task:
    """Parse a task id; raise `EznasError` naming the valid forms if it is unknown."""
    if isinstance(task, Task):
        return task
    space, sep, key = str(task).partition(":")
    if not sep or not key:
        raise EznasError(
            f"unknown task {task!r}: expected 'nb201:<dataset>', 'nds:<file stem>', "
            f"'nb101:cifar10' or 'nb301:cifar10', e.g. 'nb201:cifar10' or 'nds:DARTS_in'"
        )
    if space == "nb201":
        if key not in NB201_DATASETS:
            raise EznasError(
                f"unknown task {task!r}: NB201 datasets are {', '.join(NB201_DATASETS)}"
            )
        resolution = 16 if key == "ImageNet16-120" else 32
        images = "cifar10" if key == "cifar10" else "cifar100"
        return Task(task, "nb201", key, NB201_DATASETS[key], resolution, images)
    if space == "nds":
        if "/" in key or key.startswith("."):
            raise EznasError(f"unknown task {task!r}: the NDS part is a file stem like 'DARTS_in'")
        if key.endswith("_in"):
            return Task(task, "nds", key, 1000, NDS_IMAGENET_RESOLUTION, "cifar10")
        return Task(task, "nds", key, 10, 32, "cifar10")
    if space in NASLIB_SPACES:
        if key not in NASLIB_DATASETS:
            raise EznasError(f"unknown task {task!r}: the {space.upper()} sample has only "
                             f"{', '.join(NASLIB_DATASETS)} (use '{space}:cifar10')")
        return Task(task, space, key, 10, 32, "cifar10")
    if space == "user":
        declared = user_spaces.lookup(key)
        if declared is None:
            raise EznasError(f"unknown task {task!r}: no space {key!r} is declared; declare it in a [spaces.{key}] "
                             "table of the run config, or pass --spaces FILE (see eznas/user_spaces.py)")
        return Task(task, "user", key, declared.classes, declared.resolution, declared.images, declared)
    raise EznasError(
        f"unknown task {task!r}: the space must be 'nb201', 'nds', 'nb101', 'nb301' or 'user' "
        f"(e.g. 'nb201:cifar10', or 'user:NAME' for a space declared in a [spaces.NAME] table)"
    )


ANYNET_PREFIXES = ("ResNeXt", "ResNet", "Vanilla")  # NDS sweeps of AnyNet networks (the others are cell spaces)


def family(task: str | Task) -> str:
    """The search-space family of a task, the unit of transfer: ``nb201``, ``nds-cell`` (DARTS, ENAS,
    Amoeba, NASNet, PNAS sweeps), ``nds-anynet`` (ResNet, ResNeXt, Vanilla sweeps), or the space name
    for other spaces (``user:NAME`` for each user space). Tasks of one family share their design, so a proxy evolved on one of them
    has not been tested on a new space when it is scored on another."""
    t = parse_task(task)
    if t.space == "nds":
        return "nds-anynet" if t.key.startswith(ANYNET_PREFIXES) else "nds-cell"
    return t.name if t.space == "user" else t.space
