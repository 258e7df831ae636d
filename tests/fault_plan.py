"""Test support: run the real ``eznas`` CLI with faults injected into its worker jobs.

``python -c "import fault_plan; fault_plan.main()" ARGS`` (with this directory on PYTHONPATH)
replaces the three job functions, `eznas.pool._fill_one` (statistics of one network),
`eznas.evolve._evaluate_chunk` (fitness of a chunk of programs) and `eznas.evaluate.score_network`
(proxy scores of one network), by the wrappers below, then
runs ``eznas.cli.main(ARGS)``. Jobs refer to their function by module and name, so worker
processes import this module and run the wrappers too. The wrappers follow the JSON plan in
the file named by ``$EZNAS_FAULT_PLAN``: a list of rules

    {"job": "stats" | "fitness" | "score", "mode": "raise" | "kill", "times": N (-1: always),
     "skip": K, "match": "text"}

A rule applies to the calls of its job whose arch string (stats, score) or one of whose programs
(fitness) contains ``match`` (default: every call); it lets the first ``skip`` of them pass,
then faults the next ``times``: ``raise`` raises RuntimeError("injected fault"), ``kill``
sends SIGKILL to the worker's own process. Calls are counted across processes with files
created exclusively in the plan's directory. Nothing in eznas reads the plan.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import eznas.evaluate
import eznas.evolve
import eznas.pool

ENV = "EZNAS_FAULT_PLAN"
_fill_one, _evaluate_chunk, _score_network = eznas.pool._fill_one, eznas.evolve._evaluate_chunk, eznas.evaluate.score_network


def _claim(directory: Path, name: str) -> int:
    """The number of earlier claims of ``name`` (0, 1, 2, ...), counting this one, across processes."""
    n = 0
    while True:
        try:
            os.close(os.open(directory / f"{name}.{n}", os.O_CREAT | os.O_EXCL))
            return n
        except FileExistsError:
            n += 1


def _inject(job: str, texts: list[str]) -> None:
    """Raise or die here if a rule of the plan says this call faults."""
    path = Path(os.environ[ENV])
    for i, rule in enumerate(json.loads(path.read_text())):
        if rule["job"] != job or not any(rule.get("match", "") in t for t in texts):
            continue
        call = _claim(path.parent, f"rule{i}")
        times = rule.get("times", 1)
        if call < rule.get("skip", 0) or (times >= 0 and call >= rule.get("skip", 0) + times):
            continue
        if rule["mode"] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("injected fault")


def fill_one(task: str, arch: Any, *rest: Any) -> float:
    """`eznas.pool._fill_one`, faulted as the plan says."""
    _inject("stats", [str(arch)])
    return _fill_one(task, arch, *rest)


def evaluate_chunk(evaluator: Any, texts: list[str]) -> Any:
    """`eznas.evolve._evaluate_chunk`, faulted as the plan says."""
    _inject("fitness", texts)
    return _evaluate_chunk(evaluator, texts)


def score_network(task: Any, arch: Any, *rest: Any) -> Any:
    """`eznas.evaluate.score_network`, faulted as the plan says."""
    _inject("score", [str(arch)])
    return _score_network(task, arch, *rest)


def main() -> None:
    """Install the wrappers and run the CLI on ``sys.argv[1:]``."""
    eznas.pool._fill_one, eznas.evolve._evaluate_chunk = fill_one, evaluate_chunk
    eznas.evaluate.score_network = score_network
    from eznas.cli import main as cli_main

    sys.exit(cli_main(sys.argv[1:]))
