"""NAS-Bench-101 networks: exact parameter counts for every entry of the NASLib sample, cell
semantics (pruning, channel splitting, input-only cells), key validation, seeded initialisation,
and equality with the PyPI port ``nasbench-pytorch`` 1.3.1 where it is installed.

The sample is looked up as eznas looks it up (``$EZNAS_DATA_DIR``, ``./data``,
``../shared/data``); the data-driven tests are skipped without it.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from eznas import benchmarks, inputs
from eznas.cli import main
from eznas.errors import EznasError
from eznas.spaces import build_network, count_params, nb101

TASK = "nb101:cifar10"


def key_of(matrix: list[list[int]], codes: list[int]) -> str:
    """The NASLib key of a 7x7 matrix and 7 op codes."""
    return str(tuple(v for row in matrix for v in row) + tuple(codes))


def _matrix(edges: list[tuple[int, int]]) -> list[list[int]]:
    m = [[0] * 7 for _ in range(7)]
    for i, j in edges:
        m[i][j] = 1
    return m


CONV3, CONV1, POOL = 4, 3, 2
# input -> 1 -> 2 -> output, input -> output; vertices 3, 4, 5 unused (op codes still valid).
CHAIN = key_of(_matrix([(0, 1), (1, 2), (2, 6), (0, 6)]), [0, CONV3, CONV1, POOL, POOL, POOL, 1])
# The same cell with dangling vertices: 3 and 5 have no way out, 4 has no way in.
DANGLING = key_of(_matrix([(0, 1), (1, 2), (2, 6), (0, 6), (1, 3), (4, 6), (2, 5)]),
                  [0, CONV3, CONV1, CONV3, CONV3, CONV1, 1])
INPUT_ONLY = key_of(_matrix([(0, 6)]), [0, CONV3, CONV3, CONV3, CONV3, CONV3, 1])
# Three vertices feed the output (128 = 43 + 43 + 42), and 1 (43 ch.) also feeds 3 (42 ch.).
SPLIT = key_of(_matrix([(0, 1), (0, 2), (0, 3), (1, 3), (1, 6), (2, 6), (3, 6)]),
               [0, CONV3, CONV1, CONV3, POOL, POOL, 1])


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the batches are tiny, and spare threads only spin on busy CI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def records(data_dir) -> list[dict]:
    """The 500 records of the sample, in file order."""
    return benchmarks.load_task(TASK, data_dir)


@pytest.fixture
def fast_meta_init(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Skip torch's default initialisers (slow on meta tensors, irrelevant to counts) and pause
    the cyclic GC while thousands of modules are built."""
    for cls in (nn.Conv2d, nn.Linear, nn.BatchNorm2d):
        monkeypatch.setattr(cls, "reset_parameters", lambda self: None)
    gc.disable()
    yield
    gc.enable()
    gc.collect()


def test_ops_are_the_naslib_codes() -> None:
    assert nb101.OPS == ("input", "output", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu")


@pytest.mark.slow
def test_param_counts_match_every_entry(records: list[dict], data_dir, fast_meta_init: None) -> None:
    raw = json.loads((data_dir / benchmarks.NASLIB_FILES["nb101"]).read_text())["nasbench101"]["cifar10"]
    assert [r["arch"] for r in records] == list(raw) and len(records) == 500
    mismatches = []
    for r, entry in zip(records, raw.values()):
        n = count_params(build_network(TASK, r["arch"], device="meta"))
        if n != round(entry["params"] * 1e6):
            mismatches.append((r["index"], n, entry["params"]))
    assert not mismatches, f"{len(mismatches)}/500 wrong (index, ours, file): {mismatches[:5]}"


def test_dangling_vertices_are_pruned() -> None:
    matrix, ops = nb101.prune(*nb101.parse_key(DANGLING), DANGLING)
    assert ops == ("input", "conv3x3-bn-relu", "conv1x1-bn-relu", "output")
    assert matrix == ((0, 1, 0, 1), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 0))
    with torch.device("meta"):
        pruned, chain = nb101.build(DANGLING), nb101.build(CHAIN)
    assert [tuple(t.shape) for t in pruned.state_dict().values()] == \
           [tuple(t.shape) for t in chain.state_dict().values()]
    # Unpruned, the convs of vertices 3, 4 and 5 would sit in every cell.
    assert count_params(pruned) == count_params(chain)


@pytest.mark.parametrize("edges", [
    [(0, 1), (1, 2), (3, 6)],  # the output is fed, but not from the input
    [(0, 1), (1, 2)],  # nothing feeds the output
    [],
])
def test_output_not_connected_to_input_is_an_error(edges: list[tuple[int, int]]) -> None:
    key = key_of(_matrix(edges), [0, CONV3, CONV3, CONV3, CONV3, CONV3, 1])
    with pytest.raises(EznasError, match="no path leads from the cell input") as err:
        nb101.build(key)
    assert repr(key) in str(err.value) and "\n" not in str(err.value)


def test_input_only_cell_is_one_projection_per_cell() -> None:
    with torch.device("meta"):
        net = nb101.build(INPUT_ONLY)
    stem = 27 * 128 + 2 * 128
    cells = sum(c_in * c_out + 2 * c_out for c_in, c_out in
                [(128, 128)] * 3 + [(128, 256)] + [(256, 256)] * 2 + [(256, 512)] + [(512, 512)] * 2)
    assert count_params(net) == stem + cells + 512 * 10 + 10 == 882_570
    x = torch.randn(2, 128, 8, 8)
    cell = nb101.Cell(*nb101.prune(*nb101.parse_key(INPUT_ONLY), INPUT_ONLY), 128, 64).eval()
    assert torch.equal(cell(x), cell.projections["1"](x))


def test_output_channels_are_split_and_truncated() -> None:
    matrix, ops = nb101.prune(*nb101.parse_key(SPLIT), SPLIT)
    assert nb101.vertex_channels(128, 128, matrix) == [128, 43, 43, 42, 128]
    assert nb101.vertex_channels(128, 256, matrix) == [128, 86, 85, 85, 256]
    # A vertex that feeds only other vertices takes the largest of their channel counts.
    chain = ((0, 1, 0, 0, 0), (0, 0, 1, 1, 0), (0, 0, 0, 0, 1), (0, 0, 0, 0, 1), (0, 0, 0, 0, 0))
    assert nb101.vertex_channels(16, 9, chain) == [16, 5, 5, 4, 9]
    cell = nb101.Cell(matrix, ops, 128, 128)
    convs = [m for m in cell.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (43, 43, 3), (43, 43, 1), (42, 42, 3),  # the vertex ops
        (128, 43, 1), (128, 43, 1), (128, 42, 1),  # the input projections
    ]
    x = torch.randn(2, 128, 8, 8)
    out = cell(x)  # vertex 3 adds the first 42 of vertex 1's 43 channels
    assert out.shape == (2, 128, 8, 8)
    states = [x, cell.ops[0](cell.projections["1"](x)), cell.ops[1](cell.projections["2"](x))]
    states.append(cell.ops[2](states[1][:, :42] + cell.projections["3"](x)))
    torch.testing.assert_close(out, torch.cat(states[1:], dim=1))


@pytest.mark.parametrize("bad, match", [
    (None, "must be a string"),
    (42, "must be a string"),
    ("", "not a tuple literal"),
    ("(0, 1", "not a tuple literal"),
    ("__import__('os').getcwd()", "not a tuple literal"),
    (CHAIN[:-4] + ")", "56 integers"),
    (CHAIN[:-1] + ", 1)", "56 integers"),
    ("[" + CHAIN[1:-1] + "]", "56 integers"),
    (CHAIN.replace("0", "0.0", 1), "56 integers"),
    (CHAIN.replace("(0, 1,", "(True, 1,", 1), "56 integers"),
    (key_of([[0, 2] + [0] * 5] + [[0] * 7] * 6, [0, 4, 4, 4, 4, 4, 1]), r"entry \(0, 1\) is 2"),
    (key_of(_matrix([(0, 6), (3, 2)]), [0, 4, 4, 4, 4, 4, 1]), r"entry \(3, 2\) is 1"),
    (key_of(_matrix([(0, 6), (4, 4)]), [0, 4, 4, 4, 4, 4, 1]), r"entry \(4, 4\) is 1"),
    (key_of(_matrix([(0, 6)]), [1, 4, 4, 4, 4, 4, 0]), "start with 0"),
    (key_of(_matrix([(0, 6)]), [0, 4, 4, 0, 4, 4, 1]), "inner op codes"),
    (key_of(_matrix([(0, 6)]), [0, 4, 5, 4, 4, 4, 1]), "inner op codes"),
])
def test_malformed_keys_are_clear_errors(bad: object, match: str) -> None:
    with pytest.raises(EznasError, match=match) as err:
        nb101.build(bad)  # type: ignore[arg-type]
    message = str(err.value)
    assert message.startswith(f"invalid NB101 arch {bad!r}") and "\n" not in message


@pytest.mark.parametrize("value", [0, -1, 10.0, True])
def test_bad_num_classes(value: object) -> None:
    with pytest.raises(EznasError, match="num_classes"):
        nb101.build(CHAIN, num_classes=value)  # type: ignore[arg-type]


def test_forward_on_real_images(records: list[dict], data_dir) -> None:
    x, y = inputs.batch(TASK, 4, 0, data_dir=data_dir)
    assert x.shape == (4, 3, 32, 32) and int(y.max()) < 10
    by_size = sorted(records, key=lambda r: r["params"])
    for r in (by_size[0], by_size[len(by_size) // 2], by_size[-1]):
        net = build_network(TASK, r["arch"], seed=1)
        logits = net(x)
        assert logits.shape == (4, 10) and torch.isfinite(logits).all(), r["index"]
    nn.functional.cross_entropy(logits, y).backward()  # the largest network
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_seeded_initialisation_follows_tf() -> None:
    rng = torch.get_rng_state()
    a, b, c = (build_network(TASK, SPLIT, seed=s).state_dict() for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), rng)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if a[k].dim() > 1]
    assert all(not torch.equal(a[k], c[k]) for k in weights)
    net = build_network(TASK, SPLIT, seed=3)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            bound = 2 * math.sqrt(1 / fan_in) / 0.87962566103423978
            assert m.weight.abs().max() <= bound * (1 + 1e-6)
        elif isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all()
            assert (m.eps, m.momentum) == (1e-5, pytest.approx(0.003))
    fc = net.classifier
    assert fc.weight.abs().max() <= math.sqrt(6 / (fc.in_features + fc.out_features))
    assert (fc.bias == 0).all()


def test_meta_device_forward() -> None:
    net = build_network(TASK, SPLIT, device="meta")
    assert all(p.is_meta for p in net.parameters())
    assert net(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


def test_info_command(data_dir, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", TASK, "--index", "3", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nb101:cifar10 #3: accuracy 88.58 %, 882570 parameters")
    assert main(["info", TASK, "--data-dir", str(data_dir)]) == 0
    assert "500 architectures from naslib/zc_nasbench101.json" in capsys.readouterr().out


# --- cross-check against the PyPI port (test-only dependency, installed with --no-deps) ---------


def _reference(key: str, device: str = "cpu") -> nn.Module:
    """``nasbench-pytorch``'s network of ``key`` (it prunes the same way)."""
    model = pytest.importorskip("nasbench_pytorch.model", reason="nasbench-pytorch (test-only) is not installed")
    matrix, ops = nb101.parse_key(key)
    spec = model.ModelSpec(np.array(matrix), list(ops))  # on the CPU: it reads the matrix back
    with torch.device(device):
        return model.Network(spec)


def _reference_state(net: nn.Module) -> list[torch.Tensor]:
    """Its state_dict without the unused ``Placeholder``/``dev_param`` tensors and without the
    ``last_inop`` alias (the same module as the last input projection, listed twice)."""
    return [t for k, t in net.state_dict().items()
            if not (k.endswith((".a", ".dev_param")) or ".last_inop." in k)]


def test_param_counts_equal_nasbench_pytorch_but_placeholders(records: list[dict], fast_meta_init: None) -> None:
    """Ours = theirs - 9 * (2 + vertices the input does not feed); same tensors otherwise."""
    for r in records[::10] + [{"arch": k} for k in (CHAIN, DANGLING, INPUT_ONLY, SPLIT)]:
        with torch.device("meta"):
            ours = nb101.build(r["arch"])
        ref = _reference(r["arch"], "meta")
        matrix, _ = nb101.prune(*nb101.parse_key(r["arch"]), r["arch"])
        unfed = sum(1 for v in range(1, len(matrix)) if not matrix[0][v])
        assert count_params(ref) - count_params(ours) == 9 * (2 + unfed), r["arch"]
        assert [tuple(t.shape) for t in ours.state_dict().values()] == \
               [tuple(t.shape) for t in _reference_state(ref)], r["arch"]


def test_outputs_equal_nasbench_pytorch_with_copied_weights(records: list[dict]) -> None:
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    for r in records[:4] + [{"arch": k} for k in (INPUT_ONLY, SPLIT)]:
        ref = _reference(r["arch"])
        with torch.no_grad():  # random BN statistics, scales and shifts, so that they matter
            for t in _reference_state(ref):
                if t.is_floating_point() and t.dim() == 1:
                    t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
        ours = nb101.build(r["arch"])
        ours.load_state_dict(dict(zip(ours.state_dict(), _reference_state(ref), strict=True)))
        for mode in ("eval", "train"):
            getattr(ours, mode)()
            getattr(ref, mode)()
            with torch.no_grad():
                torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5, msg=r["arch"])
