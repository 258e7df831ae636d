"""The bad-input matrix: every subcommand fed bad configs, arguments, run directories, records and data.

Each case runs ``eznas`` in-process (`eznas.cli.main`) and must end with exit status 2, one line on
stderr (``eznas...: error: ...``) naming the problem, no exception, and no file of the case changed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import DATA_DIR, needs_data, published_expression
from eznas.cli import main
from eznas.config import Config

BEST = published_expression()
DEEP = "n_neg(" * 5000 + "log_params" + ")" * 5000


def _config(tmp: Path, text: str) -> str:
    path = tmp / "c.toml"
    path.write_text(text)
    return str(path)


def _run_dir(tmp: Path, **changes) -> str:
    """A run directory with a valid checkpoint, then ``changes`` applied to the checkpoint."""
    row = {"expr": "log_params", "infix": "log_params", "size": 1, "depth": 0, "fitness": 0.5,
           "taus": {"nb201:cifar10": 0.5}, "generation": 0}
    doc = {"version": 1, "config": Config().to_dict(), "next_generation": 1, "population": ["log_params"],
           "fitness": [0.5], "scored": {"log_params": row}, "hall_of_fame": [row], "pareto_front": [row],
           "history": [], "pools": {"nb201:cifar10": [1]}, "elapsed": 1.0}
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    out = tmp / "run"
    out.mkdir()
    (out / "checkpoint.json").write_text(json.dumps(doc))
    return str(out)


def _file(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _broken_images(tmp: Path) -> str:
    """A data directory whose CIFAR-10 archive is not an npz."""
    data = tmp / "data"
    (data / "nb201").mkdir(parents=True)
    shutil.copy(DATA_DIR / "nb201" / "nats_bench.csv", data / "nb201")
    (data / "images" / "cifar10").mkdir(parents=True)
    (data / "images" / "cifar10" / "cifar10.npz").write_bytes(b"PK\x03\x04 truncated")
    return str(data)


EVOLVE = ("evolve",)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # configs
    ("config missing", lambda t: [*EVOLVE, str(t / "none.toml"), "--out", str(t / "r")], "not found"),
    ("config not TOML", lambda t: [*EVOLVE, _config(t, "[run\nseed = 1"), "--out", str(t / "r")], "malformed TOML"),
    ("unknown section", lambda t: [*EVOLVE, _config(t, "[runn]\nseed = 1"), "--out", str(t / "r")], "unknown section"),
    ("unknown key", lambda t: [*EVOLVE, _config(t, "[run]\nsed = 1"), "--out", str(t / "r")], "unknown key 'sed'"),
    ("wrong type", lambda t: [*EVOLVE, _config(t, "[evolution]\npopulation = 'many'"), "--out", str(t / "r")],
     "wrong type"),
    ("timeout inf", lambda t: [*EVOLVE, _config(t, "[run]\ntimeout = inf"), "--out", str(t / "r")], "run.timeout"),
    ("features huge", lambda t: [*EVOLVE, _config(t, "[probe]\nfeatures = 100000"), "--out", str(t / "r")],
     "features = 100000"),
    ("hessian probes huge", lambda t: [*EVOLVE, _config(t, "[probe]\nhessian_probes = 100000000"), "--out",
                                        str(t / "r")], "hessian_probes"),
    ("pool huge", lambda t: [*EVOLVE, _config(t, "[tasks]\npool_size = 1000000000"), "--out", str(t / "r")],
     "use 2..100,000"),
    ("population huge", lambda t: [*EVOLVE, _config(t, "[evolution]\npopulation = 1000000000"), "--out",
                                    str(t / "r")], "evolution.population"),
    ("jobs huge in config", lambda t: [*EVOLVE, _config(t, "[run]\nn_jobs = 1000"), "--out", str(t / "r")],
     "run.n_jobs"),
    ("seed negative in config", lambda t: [*EVOLVE, _config(t, "[run]\nseed = -1"), "--out", str(t / "r")],
     "run.seed"),
    ("unknown task", lambda t: [*EVOLVE, _config(t, "[tasks]\nevolve = ['nb201:mnist']"), "--out", str(t / "r")],
     "unknown task"),
    ("unknown backend", lambda t: [*EVOLVE, _config(t, "[run]\nbackend = 'mpi'"), "--out", str(t / "r")],
     "run.backend"),
    ("depth over Koza", lambda t: [*EVOLVE, _config(t, "[evolution]\nmax_depth = 30"), "--out", str(t / "r")],
     "max_depth"),
    ("unknown statistic", lambda t: [*EVOLVE, _config(t, "[evolution]\nstatistics = ['-Hessian']"), "--out",
                                     str(t / "r")], "unknown statistic 'Hessian': use one of W, dW, H"),
    ("bad override", lambda t: [*EVOLVE, _config(t, ""), "--out", str(t / "r"), "--set", "generations"],
     "expected section.key=value"),
    ("seed_from missing", lambda t: [*EVOLVE, _config(t, f"[evolution]\nseed_from = ['{t / 'gone.json'}']"),
                                     "--out", str(t / "r")], "not found"),
    ("seed_from too deep", lambda t: [*EVOLVE, _config(t, "[evolution]\nseed_from = ['" + _file(
        t, "deep.json", json.dumps({"expression": DEEP, "config": {}, "fitness_history": []})) + "']"),
        "--out", str(t / "r")], "nested deeper"),
    ("resume without run", lambda t: [*EVOLVE, _config(t, ""), "--out", str(t), "--resume"], "holds no checkpoint"),
    ("run there already", lambda t: [*EVOLVE, _config(t, ""), "--out", _run_dir(t)], "already holds a run"),
    # numbers on the command line
    ("stats seed negative", lambda t: ["stats", "--task", "nb201:cifar10", "--seed", "-1"], "out of range"),
    ("evaluate seed float", lambda t: ["evaluate", "params", "--task", "nb201:cifar10", "--seed", "1e20"],
     "not an integer"),
    ("evaluate seed huge", lambda t: ["evaluate", "params", "--task", "nb201:cifar10", "--seed", str(10 ** 20)],
     "out of range"),
    ("inspect top negative", lambda t: ["inspect", str(t), "--top", "-2"], "out of range"),
    ("stats jobs huge", lambda t: ["stats", "--task", "nb201:cifar10", "--jobs", "1000"], "out of range"),
    ("search budget zero", lambda t: ["search", "--proxy", "params", "--task", "nb201:cifar10", "--budget", "0"],
     "out of range"),
    ("export rank negative", lambda t: ["export", _run_dir(t), "-o", str(t / "p.py"), "--rank", "-1"],
     "out of range"),
    ("evaluate n one", lambda t: ["evaluate", "params", "--task", "nb201:cifar10", "--n", "1"], "out of range"),
    ("evaluate timeout negative", lambda t: ["evaluate", "params", "--task", "nb201:cifar10", "--timeout", "-1"],
     "out of range"),
    ("search retries huge", lambda t: ["search", "--proxy", "params", "--task", "nb201:cifar10", "--retries", "101"],
     "out of range"),
    ("evolve timeout not a number", lambda t: [*EVOLVE, _config(t, ""), "--out", str(t / "r"), "--timeout", "soon"],
     "not a number of seconds"),
    # proxies
    ("unknown proxy", lambda t: ["evaluate", "snipp", "--task", "nb201:cifar10"], "unknown proxy 'snipp'"),
    ("proxy file missing", lambda t: ["evaluate", str(t / "gone.py"), "--task", "nb201:cifar10"], "not found"),
    ("proxy file broken", lambda t: ["evaluate", _file(t, "b.py", "def score(\n"), "--task", "nb201:cifar10"],
     "importing the proxy file failed"),
    ("proxy record foreign", lambda t: ["evaluate", _file(t, "r.json", '{"expr": 1}'), "--task", "nb201:cifar10"],
     "has no 'expression'"),
    ("proxy expression typed wrong", lambda t: ["evaluate", "agg_mean(A)", "--task", "nb201:cifar10"],
     "not a valid expression"),
    ("long expression, no data", lambda t: ["evaluate", BEST, "--task", "nb201:cifar10", "--data-dir",
                                            str(t / "nowhere")], "not found"),
    ("exclude-run damaged", lambda t: ["evaluate", "params", "--task", "nb201:cifar10", "--exclude-run",
                                       _file(t, "x.json", json.dumps({"expression": "log_params"}))], "is damaged"),
    # run directories and checkpoints
    ("not a run", lambda t: ["inspect", str(t)], "holds no eznas run"),
    ("checkpoint truncated", lambda t: ["inspect", _truncated_run(t)], "not valid JSON"),
    ("checkpoint without hall of fame", lambda t: ["export", _run_dir(t, hall_of_fame=None), "-o", str(t / "p.py")],
     "has no 'hall_of_fame'"),
    ("next_generation a string", lambda t: ["inspect", _run_dir(t, next_generation="3"), "--no-heldout"],
     "next_generation is a str"),
    ("checkpoint nested too deep", lambda t: ["inspect", _nested(t)], "nested too deeply"),
    ("population too deep", lambda t: ["inspect", _run_dir(t, population=[DEEP]), "--no-heldout"], "nested deeper"),
    ("unknown primitive", lambda t: ["inspect", _run_dir(t, population=["n_frobnicate(log_params)"]), "--no-heldout"],
     "checkpoint.json: unknown primitive"),
    ("checkpoint of another version", lambda t: ["inspect", _run_dir(t, version=99)], "not an eznas checkpoint"),
    ("export over the checkpoint", lambda t: ["export", _run_dir(t), "-o", str(t / "run" / "checkpoint.py")],
     "is a file of run"),
    ("export to a .json", lambda t: ["export", _run_dir(t), "-o", str(t / "p.json")], "ending in .py"),
    ("export rank missing", lambda t: ["export", _run_dir(t), "-o", str(t / "p.py"), "--rank", "5"],
     "does not exist"),
    ("export a record with --rank", lambda t: ["export", _file(t, "r.json", json.dumps(
        {"expression": "log_params", "config": {}, "fitness_history": []})), "--rank", "1", "-o", str(t / "p.py")],
     "drop --rank"),
    ("prune a record with --rank", lambda t: ["prune", _file(t, "r.json", json.dumps(
        {"expression": "log_params", "config": {}, "fitness_history": []})), "--rank", "1"], "drop --rank"),
    ("prune tolerance negative", lambda t: ["prune", _run_dir(t), "--tolerance", "-1"], "out of range"),
    ("prune tolerance not a number", lambda t: ["prune", _run_dir(t), "--tolerance", "nan"], "out of range"),
    ("prune over the checkpoint", lambda t: ["prune", _run_dir(t), "-o", str(t / "run" / "checkpoint.py")],
     "is a file of run"),
    ("prune to a .json", lambda t: ["prune", _run_dir(t), "-o", str(t / "p.json")], "ending in .py"),
    # data
    ("no data", lambda t: ["info", "nb201:cifar10", "--data-dir", str(t / "nowhere")], "not found"),
    ("index out of range", lambda t: ["info", "nb201:cifar10", "--index", "99999"], "out of range"),
    ("arch malformed", lambda t: ["info", "nb201:cifar10", "--arch", "|bogus~0|"], "bogus"),
    ("images not npz", lambda t: ["evaluate", "params", "--task", "nb201:cifar10", "--n", "4", "--data-dir",
                                  _broken_images(t), "--cache-dir", str(t / "cache")], "unreadable image archive"),
    ("mirror not http", lambda t: ["data", "fetch", "--data-dir", str(t / "d"), "--mirror", "ftp://example.org"],
     "not an http"),
]


def _truncated_run(tmp: Path) -> str:
    """A run directory whose checkpoint was cut short."""
    out = _run_dir(tmp)
    path = Path(out) / "checkpoint.json"
    path.write_text(path.read_text()[:200])
    return out


def _nested(tmp: Path) -> str:
    out = tmp / "run"
    out.mkdir()
    (out / "checkpoint.json").write_text("[" * 100_000 + "]" * 100_000)
    return str(out)


def _files(tmp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(tmp.rglob("*")) if p.is_file()}


@needs_data
@pytest.mark.parametrize("name, make, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch,
                                          name: str, make: Callable[[Path], list[str]], needle: str) -> None:
    monkeypatch.setenv("EZNAS_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("EZNAS_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.chdir(tmp_path)
    argv = make(tmp_path)
    before = _files(tmp_path)
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(err) == 1 and ": error: " in err[0] and needle in err[0], err
    assert _files(tmp_path) == before
