"""The model zoo: timm architectures with their published ImageNet top-1, for scoring proxies on
networks from outside any NAS search space.

`ZOO` lists the models (timm name, family, the published tag and top-1); `build` makes one,
untrained, at a small input size; `score_zoo` scores every model with several proxies and times
one forward+backward of each (`eznas.tables.zoo` renders the tables). timm is a test-only
dependency: `import_timm` returns None without it. timm imports torchvision at import time (for its data transforms and a frozen
batch-norm class its model definitions never build); where torchvision cannot be imported (its
PyPI wheel is a CUDA build that fails to load beside the CPU torch), `import_timm` first
installs an inert stand-in module: every torchvision name is a placeholder class that raises
ImportError when it is used.

The accuracies are those of timm's own results table, ``results/results-imagenet.csv`` of
huggingface/pytorch-image-models at commit 0173a139a2c66db3a41ebfe1d8ac4fb02483642e (top-1 on
the ImageNet-1k validation set, at each model's own evaluation resolution), for weights trained
on ImageNet-1k only.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import math
import platform
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eznas.evaluate import Evaluation

RESULTS_SOURCE = ("huggingface/pytorch-image-models, results/results-imagenet.csv at commit "
                  "0173a139a2c66db3a41ebfe1d8ac4fb02483642e")


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry.

    Attributes
    ----------
    name : timm model name (``timm.create_model`` builds it).
    family : the architecture family, for the within-family taus.
    tag : the pretrained tag whose accuracy is quoted (the weights are never loaded).
    top1 : published ImageNet-1k top-1 (%) of ``name.tag``.
    """

    name: str
    family: str
    tag: str
    top1: float


ZOO: tuple[ZooModel, ...] = (
    ZooModel("resnet18", "ResNet", "tv_in1k", 69.760),
    ZooModel("resnet50", "ResNet", "tv_in1k", 76.130),
    ZooModel("resnet101", "ResNet", "tv_in1k", 77.376),
    ZooModel("resnext50_32x4d", "ResNet", "tv_in1k", 77.618),
    ZooModel("wide_resnet50_2", "ResNet", "tv_in1k", 78.480),
    ZooModel("convnext_atto", "ConvNeXt", "d2_in1k", 77.008),
    ZooModel("convnext_femto", "ConvNeXt", "d1_in1k", 78.716),
    ZooModel("convnext_pico", "ConvNeXt", "d1_in1k", 80.414),
    ZooModel("convnext_nano", "ConvNeXt", "d1h_in1k", 81.482),
    ZooModel("efficientnet_b0", "EfficientNet", "ra_in1k", 77.694),
    ZooModel("efficientnet_b1", "EfficientNet", "ft_in1k", 78.800),
    ZooModel("efficientnet_b2", "EfficientNet", "ra_in1k", 80.610),
    ZooModel("mobilenetv3_small_075", "MobileNetV3", "lamb_in1k", 65.234),
    ZooModel("mobilenetv3_small_100", "MobileNetV3", "lamb_in1k", 67.656),
    ZooModel("mobilenetv3_large_100", "MobileNetV3", "ra_in1k", 75.766),
    ZooModel("regnetx_002", "RegNet", "pycls_in1k", 68.746),
    ZooModel("regnetx_004", "RegNet", "pycls_in1k", 72.398),
    ZooModel("regnety_004", "RegNet", "pycls_in1k", 74.028),
    ZooModel("regnety_008", "RegNet", "pycls_in1k", 76.302),
    ZooModel("regnety_016", "RegNet", "pycls_in1k", 77.862),
    ZooModel("deit_tiny_patch16_224", "ViT", "fb_in1k", 72.172),
    ZooModel("deit_small_patch16_224", "ViT", "fb_in1k", 79.844),
    ZooModel("deit_base_patch16_224", "ViT", "fb_in1k", 81.992),
    ZooModel("vit_base_patch32_224", "ViT", "augreg_in1k", 74.894),
    ZooModel("swin_tiny_patch4_window7_224", "Swin", "ms_in1k", 81.376),
    ZooModel("resmlp_12_224", "MLP", "fb_in1k", 76.648),
    ZooModel("resmlp_24_224", "MLP", "fb_in1k", 79.374),
    ZooModel("gmixer_24_224", "MLP", "ra3_in1k", 78.026),
    ZooModel("levit_128s", "LeViT", "fb_dist_in1k", 76.526),
    ZooModel("levit_128", "LeViT", "fb_dist_in1k", 78.490),
    ZooModel("levit_192", "LeViT", "fb_dist_in1k", 79.838),
    ZooModel("mobilevit_xxs", "MobileViT", "cvnets_in1k", 68.932),
    ZooModel("mobilevit_xs", "MobileViT", "cvnets_in1k", 74.636),
    ZooModel("mobilevit_s", "MobileViT", "cvnets_in1k", 78.312),
)

# models whose input size is fixed at construction (the rest take any size)
_SIZED = ("deit_", "vit_", "swin_", "resmlp_", "gmixer_", "mixer_", "levit_")


class _Placeholder(type):
    """A stand-in for a torchvision name: its attributes are placeholders too; calling one raises."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(f"{cls.__name__}.{name}", (), {})

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(f"torchvision.{cls.__name__} is a stand-in (torchvision cannot be imported here); "
                          f"install a torchvision build that matches torch to use it")


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``torchvision`` and its submodules as empty packages whose names are placeholders."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []
        module.__getattr__ = _placeholder


def _placeholder(name: str) -> _Placeholder:
    """A stand-in module's attribute ``name`` (dunder names are absent)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return _Placeholder(name, (), {})


def import_timm() -> types.ModuleType | None:
    """The ``timm`` module, or None when it is not installed (see the module docstring)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a build that does not load beside this torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        if not any(isinstance(f, _StandIn) for f in sys.meta_path):
            sys.meta_path.insert(0, _StandIn())
    try:
        import timm
    except ImportError:
        return None
    return timm


def build(name: str, resolution: int, classes: int = 1000) -> nn.Module:
    """An untrained timm model ``name`` for ``resolution`` px inputs and ``classes`` outputs."""
    timm = import_timm()
    if timm is None:
        raise ImportError("the model zoo needs timm: pip install --no-deps timm")
    kwargs: dict[str, Any] = {"num_classes": classes}
    if name.startswith(_SIZED):
        kwargs["img_size"] = resolution
    if name.startswith("swin_"):
        kwargs["window_size"] = max(2, min(7, resolution // 32))
    return timm.create_model(name, pretrained=False, **kwargs)


def forward_backward(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """The cost yardstick: one training-mode forward and backward, gradients of all parameters."""
    net.train()
    loss = F.cross_entropy(net(x), y)
    torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad], allow_unused=True)


def _best_seconds(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """The last result of ``repeats`` calls and the best wall-clock seconds of one."""
    best, value = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


@dataclass(frozen=True)
class ZooRun:
    """What `score_zoo` measured.

    Attributes
    ----------
    models : the zoo models, in order.
    evaluations : one `Evaluation` per proxy over the models (index = position in ``models``).
    fwd_bwd : [M] best seconds of one forward+backward per model.
    params, macs : [M] parameter count and multiply-accumulates per sample of each model.
    """

    models: tuple[ZooModel, ...]
    evaluations: tuple[Evaluation, ...]
    fwd_bwd: np.ndarray
    params: np.ndarray
    macs: np.ndarray


def score_zoo(scorers: Mapping[str, Callable[..., Any]], x: torch.Tensor, y: torch.Tensor,
              models: Sequence[ZooModel] = ZOO, classes: int = 1000, repeats: int = 2,
              log: Callable[[str], None] = print) -> ZooRun:
    """Score every model (seeded, untrained) with every proxy on the batch ``(x, y)``.

    ``scorers`` maps a label to ``f(net, x, y)`` returning a float or, for a set-level baseline
    (one with ``score_set``), a dict of components combined over the whole zoo. A proxy that
    raises or returns a non-finite value scores NaN on that model. The first proxy (whose cost
    the report gives) and the forward+backward are timed as the best of ``repeats`` calls, the
    others by one call.
    """
    from eznas import proxies

    count_macs = proxies.get("flops")
    values: dict[str, list[Any]] = {label: [] for label in scorers}
    seconds: dict[str, list[float]] = {label: [] for label in scorers}
    errors: dict[str, dict[str, str]] = {label: {} for label in scorers}
    fwd_bwd, params, flops = [], [], []
    for model in models:
        torch.manual_seed(0)
        net = build(model.name, x.shape[-1], classes)
        params.append(sum(p.numel() for p in net.parameters()))
        flops.append(count_macs(net, x, y))
        fwd_bwd.append(_best_seconds(lambda: forward_backward(net, x, y), repeats)[1])
        for position, (label, scorer) in enumerate(scorers.items()):
            try:
                value, spent = _best_seconds(lambda: scorer(net, x, y), 1 if position else repeats)
            except Exception as e:  # a proxy failing on one model is recorded, not fatal
                value, spent = math.nan, math.nan
                errors[label].setdefault(type(e).__name__, f"{model.name}: {type(e).__name__}: {' '.join(str(e).split())}")
            values[label].append(value)
            seconds[label].append(spent)
        log(f"  {model.name:30s} fwd+bwd {fwd_bwd[-1]:6.3f} s  " + "  ".join(
            f"{label} {seconds[label][-1]:.3f} s" for label in list(scorers)[:1]))
    accuracy = np.array([m.top1 for m in models])
    evaluations = []
    for label, scorer in scorers.items():
        raw = values[label]
        if hasattr(scorer, "score_set") and any(isinstance(v, dict) for v in raw):
            known = [i for i, v in enumerate(raw) if isinstance(v, dict)]
            combined = scorer.score_set([raw[i] for i in known])
            raw = [math.nan] * len(raw)
            for i, v in zip(known, combined):
                raw[i] = v
        scores = np.array([float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else math.nan
                           for v in raw])
        evaluations.append(Evaluation(label, "zoo", 0, len(x), np.arange(len(models)), accuracy, scores,
                                      np.array(seconds[label]), tuple(errors[label].values())[:3]))
    return ZooRun(tuple(models), tuple(evaluations), np.array(fwd_bwd), np.array(params, dtype=float),
                  np.array(flops, dtype=float))


def families(models: Sequence[ZooModel], least: int = 3) -> list[str]:
    """The families with at least ``least`` models, in zoo order."""
    names = [m.family for m in models]
    return [f for f in dict.fromkeys(names) if names.count(f) >= least]


def machine() -> str:
    """One line: platform, Python, torch and timm versions."""
    timm = import_timm()
    return (f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
            f"timm {getattr(timm, '__version__', 'absent')}")
