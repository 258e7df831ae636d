"""Export contract: the standalone file imports only torch/math/stdlib, embeds only the probe
measures its program reads, leaves the net untouched (a pending backward included), and its
score equals the engine's score for the same program, net and batch."""

from __future__ import annotations

import ast
import importlib.util
import random
import re
import sys
from pathlib import Path

import pytest
import torch

import primitives
from eznas import benchmarks, gp as programs, inputs
from eznas import probe as probe_module
from eznas.export import export_source
from eznas.fitness import Evaluator
from eznas.probe import ProbeSettings, probe
from eznas.spaces import build_network
from eznas.statsbatch import stack

from conftest import needs_data

pytestmark = needs_data

SETTINGS = ProbeSettings(features=32, weight_rows=16, weight_cols=16, max_layers=10)
PROGRAMS = [
    "logdet_sum(gram_add(gram_abs(corr(A)), gram_abs(corr(G))))",  # RCor
    "n_add(agg_mean(l_mul(log_snip, depth)), n_half)",
    "n_sub(agg_depth_mean(w_mean_abs(w_mul(H, W))), log_params)",
    "n_mul(agg_sum(logdet(gram_sign(a_znorm(A)))), n_log_abs(log_grad_norm))",
    "n_div_safe(agg_max(eig_ratio(gram_linear(a_div_safe(G, A)))), agg_std(w_frob(w_sqrt_abs(dW))))",
    "n_max(log_snip_total, n_add(log_flops, agg_min(l_sigmoid(trace(gram_mul(corr(A), corr(G)))))))",
]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> list:
    rng = random.Random(5)
    exprs = list(PROGRAMS)
    while len(exprs) < len(PROGRAMS) + 4:  # plus random programs of the engine's own generator
        exprs.append(str(programs.generate(programs.ROOT_TYPE, 2, 5, "grow", rng)))
    root = tmp_path_factory.mktemp("export")
    modules = []
    for i, e in enumerate(exprs):
        path = root / f"proxy_{i}.py"
        path.write_text(export_source(e, SETTINGS, {"test": True}))
        modules.append((e, _load(path), path))
    return modules


def _networks() -> list[tuple[str, torch.nn.Module]]:
    from xautodl.models import get_cell_based_tiny_net
    from xautodl.models.cell_searchs.genotypes import Structure

    nets = []
    for r in benchmarks.sample("nb201:cifar10", 4, 11):
        nets.append(("nb201:cifar10", build_network("nb201:cifar10", r["arch"], seed=1)))
    for r in benchmarks.sample("nb201:cifar100", 3, 12):  # xautodl's own networks return (features, logits)
        torch.manual_seed(2)
        cfg = {"name": "infer.tiny", "C": 16, "N": 5, "genotype": Structure.str2structure(r["arch"]), "num_classes": 100}
        nets.append(("nb201:cifar100", get_cell_based_tiny_net(cfg)))
    for task in ("nds:DARTS_in", "nds:ResNeXt-A_in", "nds:PNAS_in"):
        for r in benchmarks.sample(task, 1, 13):
            nets.append((task, build_network(task, r["arch"], seed=3)))
    return nets


def test_exported_files_import_only_torch_math_and_stdlib(exported):
    allowed = set(sys.stdlib_module_names) | {"torch"}
    for expr, _, path in exported:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"
        assert programs.infix(programs.parse(expr)) in path.read_text()


@pytest.mark.slow
def test_exported_score_equals_engine_score_on_10_networks(exported):
    torch.set_num_threads(1)
    nets = _networks()
    assert len(nets) == 10
    for task, net in nets:
        x, y = inputs.batch(task, 16, 0)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        engine = Evaluator(stack([probe(net, x, y, SETTINGS)], [0.0], [task], [0]))
        for expr, module, _ in exported:
            want = float(engine.scores(programs.parse(expr))[0])
            got = module.score(net, x, y)
            assert got == pytest.approx(want, rel=1e-4, abs=1e-6), (task, expr)
        after = net.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert all(p.grad is None for p in net.parameters())


def test_the_file_embeds_only_the_measures_its_program_reads() -> None:
    measures = {m.__name__: m for m in probe_module.MEASURES}
    for name, measure in measures.items():
        stat = sorted(measure.provides & _NET_TERMINALS)[:1] or sorted(measure.provides)[:1]
        expr = _expression_reading(stat[0])
        text = export_source(expr, SETTINGS)
        assert f"class {name}(" in text, (name, expr)
        assert not [other for other in measures if other != name and f"class {other}(" in text], (name, expr)
    size_only = export_source("n_add(log_params, log_flops)", SETTINGS)
    assert "_hutchinson" not in size_only and "MEASURES = ()" in size_only


def test_the_file_calls_primitives_by_their_function_names_and_holds_no_engine_only_code() -> None:
    """No registry-name aliases and no `primitives.Layers` dataclass: the program calls ``div_safe``, the
    aggregators get a namespace; the one-line constants stand together; statistics are read in place."""
    text = export_source("n_mul(n_div_safe(logdet_sum(KS), log_flops), n_sub(log_params, log_flops))", SETTINGS)
    assert "n_div_safe" not in text.split("EXPRESSION = ")[0] and "class Layers" not in text
    assert "import dataclass" not in text
    assert re.search(r"^BIG = \S+\nEPS = \S+\nRIDGE = ", text, re.MULTILINE)
    body = text[text.index("def _program"):text.index("def score")]
    assert "= div_safe(v0, t['log_flops'])" in body and "= logdet_sum(t['KS'], layers)" in body
    assert "layers = SimpleNamespace(seg=" in text
    ast.parse(text)


def test_the_exported_score_leaves_a_pending_backward_and_hooks_alone(exported) -> None:
    net = build_network("nb201:cifar10", benchmarks.sample("nb201:cifar10", 1, 3)[0]["arch"], seed=0)
    x, y = inputs.batch("nb201:cifar10", 8, 0)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    fired = []
    for m in net.modules():
        m.register_forward_hook(lambda *a: fired.append(1))
    _, module, _ = exported[0]
    module.score(net, x, y)
    assert fired == []
    loss.backward()


_NET_TERMINALS = {"naswot", "rcor", "log_grad_norm", "log_snip_total", "log_chan_rank_sum"}


def _expression_reading(stat: str) -> str:
    """A small program whose only statistic (besides depth) is ``stat``."""
    kind = next(t.type for t in primitives.TERMINALS if t.name == stat)
    return {primitives.WMat: f"agg_mean(w_frob({stat}))", primitives.AMat: f"agg_mean(a_frob({stat}))",
            primitives.Gram: f"agg_mean(trace({stat}))", primitives.LScalar: f"agg_mean({stat})",
            primitives.NScalar: f"n_neg({stat})"}[kind]


def test_re_exporting_the_published_proxy_with_its_formula_keeps_its_code_and_score() -> None:
    """The simplified formula heads the docstring, the program follows it, and the code after the docstring
    is the published file's own, character for character: the score cannot change."""
    import json

    from conftest import REPO
    from eznas.simplify import simplify

    published = REPO / "results" / "proxies" / "eznas_best.py"
    record = json.loads(published.with_suffix(".json").read_text())
    formula = simplify(record["expression"])
    text = export_source(record["expression"], ProbeSettings(**record["config"]["probe"]), {}, formula)
    head = text[:text.index('"""', 3)]
    evolved = programs.infix(programs.parse(record["expression"]))
    assert head.index(f"    score = {formula.text}\n") < head.index(evolved)
    assert "by exact identities" in head
    old = published.read_text()
    assert text[text.index('"""', 3):] == old[old.index('"""', 3):]


@pytest.mark.parametrize("name", ["eznas_best", "eznas_lean"])
def test_a_record_re_exports_to_the_published_code_and_record(tmp_path: Path, name: str) -> None:
    """``eznas export RECORD.json``: a published proxy again from its record alone, the same code after the
    docstring and the same record (less the formula, which --raw leaves out)."""
    import json

    from conftest import REPO
    from eznas.export import export_run

    published = REPO / "results" / "proxies" / f"{name}.py"
    target, record, infix = export_run(published.with_suffix(".json"), None, tmp_path / "again.py", formulas=False)
    old, new = published.read_text(), target.read_text()
    assert new[new.index('"""', 3):] == old[old.index('"""', 3):]
    original = json.loads(published.with_suffix(".json").read_text())
    original.pop("formula", None)
    assert json.loads(record.read_text()) == original
    assert infix == programs.infix(programs.parse(original["expression"]))


def test_the_lean_proxy_is_a_pruning_of_eznas_best_v6() -> None:
    """results/proxies/eznas_lean: pruned from eznas_best_v6, the published proxy before it (`eznas prune`), at
    most 25 nodes, reading a subset of its statistics, so that its file embeds fewer of the probe's measures."""
    import json

    from conftest import REPO, published_expression

    record = json.loads((REPO / "results" / "proxies" / "eznas_lean.json").read_text())
    assert record["pruned_from"]["expression"] == published_expression("eznas_best_v6")
    lean, best = programs.parse(record["expression"]), programs.parse(published_expression("eznas_best_v6"))
    assert len(lean) == record["size"] <= 25 < len(best)
    assert programs.statistics_of(lean) < programs.statistics_of(best)
    files = [REPO / "results" / "proxies" / f"{n}.py" for n in ("eznas_lean", "eznas_best_v6")]
    assert len(files[0].read_text().splitlines()) < len(files[1].read_text().splitlines())
