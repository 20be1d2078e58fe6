"""The shipped seed-claims suites (benchmarks/seed_claims/) and their committed results.

Every suite validates, in its default budget and its ``full`` variant, against the built-in
plugins; and ``rnnbench verify`` on each committed results folder exits 0: every claim the suite
states holds there or is a declared known failure (and no known failure holds: its mark would be
stale). A re-run that changes a verdict (``tox -e
claims``), or an edit to a claim that the committed records contradict, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnbench.api import load_validated_suite
from rnnbench.claims import KNOWN_FAILURE_HOLDS, claims_exit_ok, evaluate_claims, read_claims
from rnnbench.cli import main
from rnnbench.plugin_manager import build_host
from rnnbench.results import ResultStore
from rnnbench.suite_variants import recorded_variant, variant_names
from rnnbench.suite_yaml import read_suite

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted((ROOT / "benchmarks" / "seed_claims").glob("*.yaml"))
RESULTS = ROOT / "results" / "seed_claims"


def test_the_seed_claims_are_shipped() -> None:
    names = {path.stem for path in SUITES}
    assert {"vanishing", "exploding", "memory", "copy_memory", "gru_cost", "forecast",
            "topologies"} <= names


@pytest.mark.parametrize("path", SUITES, ids=lambda path: path.stem)
def test_every_seed_suite_and_variant_validates_with_claims(path: Path) -> None:
    host = build_host()
    variants = [None, *variant_names(read_suite(path))]
    assert "full" in variants, f"{path.name} has no full variant"
    for variant in variants:
        suite = load_validated_suite(path, host, variant=variant)
        assert suite.claims, f"{path.name} states no claims"
        assert suite.output is not None
        if variant is None:
            assert suite.output == Path("results/seed_claims") / path.stem


@pytest.mark.parametrize("path", SUITES, ids=lambda path: path.stem)
def test_the_committed_results_verify(path: Path, capsys) -> None:
    folder = RESULTS / path.stem
    assert (folder / "results.jsonl").is_file(), f"no committed results for {path.name}"
    assert recorded_variant(folder) is None  # the default budget is what is committed
    results = evaluate_claims(read_claims(path), ResultStore(folder).records())
    failing = [(r.claim.id, r.verdict, r.measured) for r in results if not r.ok]
    assert claims_exit_ok(results), f"claims of {path.name} do not hold: {failing}"
    # a known_failure mark on a claim that holds in the shipped results would be stale
    stale = [r.claim.id for r in results if r.verdict == KNOWN_FAILURE_HOLDS]
    assert not stale, f"{path.name}: known_failure marks on claims that hold: {stale}"
    # the folder's own suite copy says the same, through the command a reviewer runs
    assert main(["verify", str(folder)]) == 0
    assert "claims hold" in capsys.readouterr().out
