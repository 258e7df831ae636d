"""`Layers`: the layout of a pool, telling aggregators which network owns each layer."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layers:
    """Which network each of the L layers of a pool belongs to.

    Attributes
    ----------
    seg : torch.Tensor
        int64 [L], network index of each layer, non-decreasing, in [0, n_nets).
    n_nets : int
        Number of networks B.
    depth : torch.Tensor
        float32 [L], relative position of each layer in its network, in [0, 1].
    """

    seg: torch.Tensor
    n_nets: int
    depth: torch.Tensor

    def __post_init__(self) -> None:
        """Reject layouts whose shapes or dtypes the aggregators cannot use."""
        if self.seg.dim() != 1 or self.seg.dtype != torch.long:
            raise ValueError(
                f"Layers.seg must be 1-D int64, got {self.seg.dtype} {tuple(self.seg.shape)}"
            )
        if self.depth.shape != self.seg.shape:
            raise ValueError(
                f"Layers.depth has shape {tuple(self.depth.shape)}, seg has {tuple(self.seg.shape)}"
            )
        if self.n_nets < 1:
            raise ValueError(f"Layers.n_nets must be >= 1, got {self.n_nets}")

    @classmethod
    def from_sizes(cls, sizes: list[int]) -> "Layers":
        """Layout of networks of `sizes[b]` layers; depth = i / (n - 1), 0 for a one-layer net."""
        counts = torch.as_tensor(list(sizes), dtype=torch.long)
        seg = torch.repeat_interleave(torch.arange(len(counts)), counts)
        first = torch.cumsum(counts, 0) - counts
        position = torch.arange(len(seg)) - first[seg]
        depth = position / (counts[seg] - 1).clamp_min(1)
        return cls(seg, len(counts), depth.to(torch.float32))
