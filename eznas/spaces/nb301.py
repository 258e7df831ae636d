"""NAS-Bench-301 (DARTS space): parse a NASLib key and build the CIFAR-10 network.

A NASLib key (``../shared/data/naslib/PROVENANCE.md``) is the string of a pair of 8-tuples,
the normal then the reduction cell, each entry ``(input state, op code)`` with op codes
indexing `OPS`. Entries ``2k`` and ``2k+1`` feed intermediate node ``k`` (state ``k + 2``);
states 0 and 1 are the two previous cells' outputs. `genotype` turns a key into the DARTS
genotype of an NDS ``net`` dict, and the network is built by the NDS cell code
(`eznas.spaces.nds_cells`): the DARTS evaluation network as NB301 trained it, with 32 initial
channels, 8 cells (reductions at cells 2 and 5), the CIFAR stem (a 3x3 conv to 96 channels
and BatchNorm), the four intermediate nodes concatenated, and no auxiliary head (a training
device only). Weights keep torch's default initialisation, as in the DARTS code.

Parameter count rule: the ``params`` of every entry of the NASLib sample equal ours with the
BatchNorms *inside the cell ops* (sep/dil convs, and the factorized reduce of a stride-2
``skip_connect``) built without learnable scale and shift, while the stem and preprocessing
BatchNorms keep theirs. That is how NASLib builds its NB301 graph (``affine=False`` in
``NasBench301SearchSpace._set_ops``, ``naslib/search_spaces/nasbench301/graph.py``), on which the
sample's ``params`` and proxy values were computed. With affine op BatchNorms every count is
higher by exactly 2 x channels per such BatchNorm. At initialisation (scale 1, shift 0) both
compute the same function, so this choice changes the parameter count and nothing else.
NASLib also appends a parameter-free BatchNorm to its pooling ops; the DARTS evaluation
network has none, and neither has ours.
"""

from __future__ import annotations

import ast

from eznas.errors import EznasError
from eznas.spaces.nds_cells import NetworkCell, build_cell_network

OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
       "dil_conv_3x3", "dil_conv_5x5")
WIDTH = 32
DEPTH = 8
NODES = 4  # intermediate nodes per cell, two input edges each
CONCAT = [2, 3, 4, 5]  # every intermediate node feeds the cell output

_FORM = (f"expected the string of a pair of {2 * NODES}-tuples (normal, reduction cell) of "
         f"(input state, op code) pairs; entries 2k and 2k+1 feed node k from two distinct "
         f"states in 0..k+1, op codes index {list(OPS)}")


def _invalid(key: object, reason: str) -> EznasError:
    """The one-line error for a malformed key."""
    return EznasError(f"invalid NB301 arch {key!r}: {reason}; {_FORM}")


def genotype(key: str) -> dict:
    """Parse a NASLib NB301 key into the DARTS genotype the NDS cell builder takes.

    Parameters
    ----------
    key : e.g. ``"[[(0, 4), (1, 3), ...], [(0, 3), (1, 3), ...]]"``.

    Returns
    -------
    dict
        ``{"normal": [[op, state], ...], "normal_concat": [2, 3, 4, 5], "reduce": ...,
        "reduce_concat": [2, 3, 4, 5]}`` with 8 ``[op, state]`` pairs per cell.

    Raises
    ------
    EznasError
        If ``key`` is not of that form.
    """
    if not isinstance(key, str):
        raise _invalid(key, f"an NB301 arch must be a string, got {type(key).__name__}")
    try:
        cells = ast.literal_eval(key.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise _invalid(key, "not a list or tuple literal") from None
    if not isinstance(cells, (list, tuple)) or len(cells) != 2:
        raise _invalid(key, "need exactly two cells")
    out: dict = {}
    for kind, cell in zip(("normal", "reduce"), cells):
        if not isinstance(cell, (list, tuple)) or len(cell) != 2 * NODES:
            raise _invalid(key, f"the {kind} cell needs {2 * NODES} entries")
        pairs = []
        for k, entry in enumerate(cell):
            if (not isinstance(entry, (list, tuple)) or len(entry) != 2
                    or any(type(v) is not int for v in entry)):
                raise _invalid(key, f"{kind} entry {k} must be an (input state, op code) pair "
                                    f"of integers, got {entry!r}")
            state, code = entry
            if not 0 <= state <= 1 + k // 2:
                raise _invalid(key, f"{kind} entry {k} reads state {state}, but node {k // 2} "
                                    f"can only read states 0..{1 + k // 2}")
            if not 0 <= code < len(OPS):
                raise _invalid(key, f"{kind} entry {k} has op code {code}, not in 0..{len(OPS) - 1}")
            pairs.append([OPS[code], state])
        for node in range(NODES):
            if pairs[2 * node][1] == pairs[2 * node + 1][1]:
                raise _invalid(key, f"{kind} node {node} reads state {pairs[2 * node][1]} twice")
        out[kind], out[f"{kind}_concat"] = pairs, list(CONCAT)
    return out


def build(key: str, num_classes: int = 10) -> NetworkCell:
    """Build the NAS-Bench-301 network of a NASLib key.

    Parameters
    ----------
    key : the NASLib key string (see `genotype`).
    num_classes : classifier width (10 in the benchmark).

    Returns
    -------
    NetworkCell
        ``forward(x)`` maps [N, 3, 32, 32] to logits [N, num_classes]; created on the current
        default device from the global torch RNG.

    Raises
    ------
    EznasError
        If ``key`` is malformed or ``num_classes`` is not a positive integer.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise EznasError(f"NB301 num_classes must be a positive integer, got {num_classes!r}")
    net = {"genotype": genotype(key), "width": WIDTH, "depth": DEPTH}
    return build_cell_network(net, imagenet=False, num_classes=num_classes,
                              where=f"NB301 arch {key!r}", op_affine=False)
