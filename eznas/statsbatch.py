"""A batch of networks' statistics, stacked so that one primitive call covers every layer of
every network: per-layer tensors concatenated on dim 0, a segment index (layer -> network),
per-network scalars as [B] tensors, and the accuracy and task of each network."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

import primitives
from eznas.probe import NetworkStats


@dataclass
class StatsBatch:
    """Statistics of B networks with L layers in total.

    Attributes
    ----------
    layers : per-layer terminals, each [L, ...] (W, dW, H, A, G and per-layer scalars).
    net : per-network terminals, each [B].
    seg : [L] network index of each layer (non-decreasing).
    accuracy : [B] true accuracy (%) of each network.
    task : [B] task id of each network.
    index : [B] benchmark index of each network.
    """

    layers: dict[str, torch.Tensor]
    net: dict[str, torch.Tensor]
    seg: torch.Tensor
    accuracy: np.ndarray
    task: np.ndarray
    index: np.ndarray

    @property
    def n_nets(self) -> int:
        """Number of networks B."""
        return len(self.accuracy)

    def context(self) -> primitives.Layers:
        """The `primitives.Layers` context that aggregators need."""
        return primitives.Layers(seg=self.seg, n_nets=self.n_nets, depth=self.layers["depth"])

    def digest(self) -> str:
        """A hex digest of the batch's content (every tensor's dtype, shape and bytes, and the
        networks' accuracy, task and index): equal digests, equal batches."""
        h = hashlib.sha256()
        tensors = {f"layers.{k}": v for k, v in self.layers.items()} | {f"net.{k}": v for k, v in self.net.items()}
        for name, value in sorted(tensors.items()) + [("seg", self.seg)]:
            array = value.contiguous().numpy()
            h.update(f"{name} {array.dtype} {array.shape};".encode())
            h.update(memoryview(array).cast("B"))
        h.update(np.ascontiguousarray(self.accuracy, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.index, dtype=np.int64).tobytes())
        h.update("\0".join(map(str, self.task)).encode())
        return h.hexdigest()

    def to(self, device: str | torch.device) -> StatsBatch:
        """The batch with its tensors on ``device`` (itself when they are there already)."""
        if self.seg.device == torch.device(device):
            return self
        return StatsBatch(layers={k: v.to(device) for k, v in self.layers.items()},
                          net={k: v.to(device) for k, v in self.net.items()}, seg=self.seg.to(device),
                          accuracy=self.accuracy, task=self.task, index=self.index)

    def select(self, nets: Sequence[int] | np.ndarray) -> StatsBatch:
        """The sub-batch of the given network positions, in that order."""
        nets = torch.as_tensor(np.asarray(nets, dtype=np.int64))
        starts = torch.zeros(self.n_nets + 1, dtype=torch.long)
        starts[1:] = torch.bincount(self.seg, minlength=self.n_nets).cumsum(0)
        counts = starts[nets + 1] - starts[nets]
        rows = torch.cat([torch.arange(starts[n], starts[n + 1]) for n in nets.tolist()]) if len(nets) else torch.zeros(0, dtype=torch.long)
        seg = torch.repeat_interleave(torch.arange(len(nets)), counts)
        pick = nets.numpy()
        return StatsBatch(
            layers={k: v.index_select(0, rows) for k, v in self.layers.items()},
            net={k: v.index_select(0, nets) for k, v in self.net.items()},
            seg=seg, accuracy=self.accuracy[pick], task=self.task[pick], index=self.index[pick],
        )


def stack(stats: Sequence[NetworkStats], accuracy: Sequence[float], task: Sequence[str], index: Sequence[int]) -> StatsBatch:
    """Stack single-network statistics into one `StatsBatch`."""
    keys = sorted(set.intersection(*(set(s.layers) for s in stats)))
    net_keys = sorted(set.intersection(*(set(s.net) for s in stats)))
    counts = torch.tensor([len(s.layers["depth"]) for s in stats])
    return StatsBatch(
        layers={k: torch.cat([s.layers[k] for s in stats]) for k in keys},
        net={k: torch.tensor([float(s.net[k]) for s in stats], dtype=torch.float32) for k in net_keys},
        seg=torch.repeat_interleave(torch.arange(len(stats)), counts),
        accuracy=np.asarray(accuracy, dtype=np.float64),
        task=np.asarray(task, dtype=object),
        index=np.asarray(index, dtype=np.int64),
    )


def concat(batches: Sequence[StatsBatch]) -> StatsBatch:
    """Concatenate batches (e.g. one per task) into one."""
    offsets = np.cumsum([0] + [b.n_nets for b in batches[:-1]])
    keys = sorted(set.intersection(*(set(b.layers) for b in batches)))
    net_keys = sorted(set.intersection(*(set(b.net) for b in batches)))
    return StatsBatch(
        layers={k: torch.cat([b.layers[k] for b in batches]) for k in keys},
        net={k: torch.cat([b.net[k] for b in batches]) for k in net_keys},
        seg=torch.cat([b.seg + int(o) for b, o in zip(batches, offsets)]),
        accuracy=np.concatenate([b.accuracy for b in batches]),
        task=np.concatenate([b.task for b in batches]),
        index=np.concatenate([b.index for b in batches]),
    )
