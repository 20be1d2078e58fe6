"""rnnbench compare: matching runs by id, exact and tolerant modes, timing left out, exit codes.

The results folders are real: tiny suites run through the CLI. Tests that need a changed number
edit a copy of a folder, never the runs themselves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from rnnbench.cli import main, make_console, print_comparison
from rnnbench.compare import (
    MISSING,
    Difference,
    choose_mode,
    close,
    compare_folders,
    identical,
    is_timing,
)
from rnnbench.plugin_manager import build_host

SUITE = """\
name: tiny
cell: [rnn, lstm]
task:
  - name: adding
    params: {{length: 4, train_size: 60, validation_size: 20, test_size: 20}}
hidden_size: 4
dtype: float64
seed: [0, 1]
training: {{optimizer: adam, lr: {lr}, batch_size: 20, steps: 6, eval_every: 3}}
metrics: [test_loss, loss_vs_baseline, steps, diverged, step_ms, train_seconds]
"""


def run_suite(folder: Path, out: Path, lr: float = 0.01, *extra: str) -> Path:
    suite = folder / f"tiny_{lr}.yaml"
    suite.write_text(SUITE.format(lr=lr))
    assert main(["run", str(suite), "-o", str(out), "-q", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> SimpleNamespace:
    """Two fresh, independent runs of the same suite (A and B)."""
    base = tmp_path_factory.mktemp("compare")
    a = run_suite(base, base / "a")
    b = run_suite(base, base / "b")
    records = [json.loads(line) for line in (a / "results.jsonl").read_text().splitlines()]
    # Guard: the comparisons below are only meaningful on runs that produced numbers.
    assert [r["status"] for r in records] == ["ok"] * 4, [r.get("error") for r in records]
    return SimpleNamespace(base=base, a=a, b=b)


@pytest.fixture(scope="module")
def registry():
    return build_host().registry


def copy_with(source: Path, target: Path, edit_records=None, edit_environment=None) -> Path:
    """A copy of results folder ``source``, its records and environment edited by the given
    functions (each edits the parsed JSON in place)."""
    shutil.copytree(source, target)
    if edit_records is not None:
        path = target / "results.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        edit_records(records)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    if edit_environment is not None:
        path = target / "environment.json"
        environment = json.loads(path.read_text())
        edit_environment(environment)
        path.write_text(json.dumps(environment))
    return target


def nudge_test_loss(records: list[dict]) -> None:
    """Change the second run's test_loss by 1e-3 relative."""
    records[1]["metrics"]["test_loss"] *= 1 + 1e-3


def compare(*args: str) -> int:
    return main(["compare", *args])


def test_two_fresh_runs_are_identical_in_exact_mode(runs, registry, capsys):
    assert compare(str(runs.a), str(runs.b)) == 0
    out = capsys.readouterr().out
    assert "exact: same python " in out and "numpy " in out
    assert "identical: 4 runs, " in out
    comparison = compare_folders(runs.a, runs.b, registry)
    assert comparison.ok and comparison.mode == "exact"
    assert comparison.matched == 4 and not comparison.differences
    # Per run: its status, its metrics but the two timing ones, its curve points but "seconds".
    records = [json.loads(line) for line in (runs.a / "results.jsonl").read_text().splitlines()]
    assert comparison.values_compared == sum(
        1 + len(set(r["metrics"]) - {"step_ms", "train_seconds"})
        + sum(len(set(point) - {"seconds"}) for point in r["curve"])
        for r in records
    )
    assert f"identical: 4 runs, {comparison.values_compared} values" in out


def test_runs_of_other_configurations_are_only_in_one_side(runs, capsys):
    other = run_suite(runs.base, runs.base / "other_lr", 0.02)
    assert compare(str(runs.a), str(other)) == 1
    out = capsys.readouterr().out
    assert "only in A: 4 runs" in out and "only in B: 4 runs" in out
    assert "lstm/numpy/adding" in out and "seed1" in out
    assert "DIFFER: 4 runs only in A; 4 runs only in B" in out
    # lr is not in the label: the same labels on both sides, and the note says why ids differ.
    assert ("note: 4 runs of the same label have different ids in A and B: their "
            "configurations differ in training.lr 0.01 vs 0.02") in out


def test_a_new_configuration_key_is_named_when_ids_change(runs, registry, tmp_path):
    """A setting added since A was produced (with its default) changes every id."""
    def older_format(records):
        for record in records:
            del record["config"]["training"]["init"]
            record["run_id"] = "old" + record["run_id"][3:]

    old = copy_with(runs.a, tmp_path / "old", edit_records=older_format)
    comparison = compare_folders(old, runs.b, registry)
    assert len(comparison.only_in_a) == len(comparison.only_in_b) == 4
    assert comparison.hint == ("4 runs of the same label have different ids in A and B: their "
                               "configurations differ in training.init (only in B)")
    assert compare_folders(runs.a, runs.b, registry).hint is None


def test_changed_metric_is_reported_with_both_values_in_exact_mode(runs, registry, tmp_path,
                                                                   capsys):
    changed = copy_with(runs.b, tmp_path / "changed", edit_records=nudge_test_loss)
    original = json.loads((runs.a / "results.jsonl").read_text().splitlines()[1])
    new = json.loads((changed / "results.jsonl").read_text().splitlines()[1])
    assert compare(str(runs.a), str(changed)) == 1
    out = capsys.readouterr().out
    assert original["label"][:40] in out and "seed1" in out and "test_loss" in out
    assert repr(original["metrics"]["test_loss"]) in out
    assert repr(new["metrics"]["test_loss"]) in out
    assert "DIFFER: 1 value in 1 run" in out
    comparison = compare_folders(runs.a, changed, registry)
    [difference] = comparison.differences
    assert (difference.run_id, difference.what) == (original["run_id"], "test_loss")
    assert difference.rel_diff == pytest.approx(1e-3 / (1 + 1e-3), rel=1e-6)
    # On a console wide enough, the run's whole label is on the row (narrower ones fold it).
    print_comparison(comparison, Console(width=300, highlight=False))
    row = next(line for line in capsys.readouterr().out.splitlines() if "test_loss" in line)
    assert original["label"] in row and "rel 0.000999" in row


def test_tolerant_mode_passes_within_rtol_and_fails_outside(runs, tmp_path, capsys):
    changed = copy_with(runs.b, tmp_path / "changed", edit_records=nudge_test_loss)
    assert compare(str(runs.a), str(changed), "--tolerant", "--rtol", "1e-2") == 0
    out = capsys.readouterr().out
    assert "tolerant (rtol 0.01, atol 1e-09): requested" in out
    assert "MATCH within rtol=0.01, atol=1e-09: 4 runs" in out
    assert compare(str(runs.a), str(changed), "--tolerant", "--rtol", "1e-6") == 1
    assert "DIFFER: 1 value in 1 run" in capsys.readouterr().out


def test_timing_values_never_count(runs, tmp_path, capsys):
    def slow_down(records):
        for record in records:
            record["metrics"]["step_ms"] *= 10
            record["metrics"]["train_seconds"] += 1.0
            record["seconds"] += 1.0
            record["started"] = "2000-01-01T00:00:00+00:00"
            for point in record["curve"]:
                point["seconds"] = point.get("seconds", 0.0) + 1.0

    slower = copy_with(runs.b, tmp_path / "slower", edit_records=slow_down)
    assert compare(str(runs.a), str(slower), "--exact") == 0
    assert "identical: 4 runs" in capsys.readouterr().out


def test_which_names_are_timing(registry):
    metrics = registry.metrics
    assert is_timing("step_ms", metrics) and is_timing("train_seconds", metrics)
    assert is_timing("sequences_per_second", metrics)
    assert not is_timing("test_loss", metrics) and not is_timing("steps", metrics)
    # Names the registry does not know: by their ending.
    for name in ("seconds", "eval_seconds", "decode_ms", "tokens_per_second"):
        assert is_timing(name, metrics), name
    for name in ("val_loss", "step", "grad_norm", "ms_error"):
        assert not is_timing(name, metrics), name
    # The registry's word wins over the name.
    assert not is_timing("warmup_ms", {"warmup_ms": SimpleNamespace(timing=False)})


def test_environment_difference_switches_to_tolerant_mode(runs, tmp_path, capsys):
    numpy_version = json.loads((runs.a / "environment.json").read_text())["packages"]["numpy"]

    def older_numpy(environment):
        environment["packages"]["numpy"] = "2.3.0"

    elsewhere = copy_with(runs.b, tmp_path / "elsewhere", edit_environment=older_numpy)
    assert compare(str(runs.a), str(elsewhere)) == 0
    out = capsys.readouterr().out
    assert f"tolerant (rtol 1e-06, atol 1e-09): numpy {numpy_version} vs 2.3.0" in out
    assert "MATCH within rtol=1e-06, atol=1e-09: 4 runs" in out
    # Forcing exact mode still works, and says what it overrides.
    assert compare(str(runs.a), str(elsewhere), "--exact") == 0
    assert f"exact: requested, although numpy {numpy_version} vs 2.3.0" in (
        capsys.readouterr().out
    )


def test_choose_mode_names_every_difference():
    env = {"python": "3.11.7", "machine": "x86_64", "platform": "Linux-x",
           "packages": {"numpy": "2.4.6", "numba": "0.68.1", "rich": "15.0.0"}}
    assert choose_mode(env, env) == ("exact", "same python 3.11.7, numpy 2.4.6, numba 0.68.1 "
                                              "on x86_64")
    other = {**env, "python": "3.12.1",
             "packages": {"numpy": "2.4.6", "rich": "14.0.0", "torch": "2.13.0"}}
    mode, reason = choose_mode(env, other)
    assert mode == "tolerant"
    # torch differs too but is not a numeric package of the harness: suites never use it
    assert reason == "python 3.11.7 vs 3.12.1; numba 0.68.1 vs (not recorded)"
    assert choose_mode(env, None) == (
        "tolerant", "environment unknown: no environment.json in B"
    )


def test_missing_environment_file_means_tolerant(runs, registry, tmp_path):
    unknown = copy_with(runs.b, tmp_path / "unknown")
    (unknown / "environment.json").unlink()
    comparison = compare_folders(runs.a, unknown, registry)
    assert comparison.mode == "tolerant" and comparison.ok
    assert "no environment.json in B" in comparison.reason


def test_subset_allows_runs_missing_from_b(runs, registry, capsys):
    partial = run_suite(runs.base, runs.base / "partial", 0.01, "-k", "lstm")
    assert compare(str(runs.a), str(partial)) == 1
    assert "DIFFER: 2 runs only in A" in capsys.readouterr().out
    assert compare(str(runs.a), str(partial), "--subset") == 0
    out = capsys.readouterr().out
    assert "only in A (allowed by --subset): 2 runs" in out
    assert "identical: 2 runs, " in out and "2 runs of A not in B (--subset)" in out
    # --subset does not excuse runs B has and A lacks.
    reversed_ = compare_folders(partial, runs.a, registry, subset=True)
    assert not reversed_.ok and len(reversed_.only_in_b) == 2


def test_missing_metric_status_and_curve_points_are_differences(runs, registry, tmp_path):
    def edit(records):
        records[0]["status"] = "diverged"
        del records[2]["metrics"]["loss_vs_baseline"]
        records[3]["curve"].pop()

    changed = copy_with(runs.b, tmp_path / "changed", edit_records=edit)
    comparison = compare_folders(runs.a, changed, registry)
    found = {(d.what, d.b) for d in comparison.differences}
    assert ("status", "diverged") in found
    assert ("loss_vs_baseline", MISSING) in found
    assert ("curve points", 2) in found  # step 0 and one evaluation left of three
    assert comparison.verdict == "DIFFER: 3 values in 3 runs"


def test_list_valued_metrics_are_compared_element_by_element(runs, registry, tmp_path):
    def add_profiles(records, changed=False):
        for record in records:
            record["metrics"]["grad_norm_by_lag_init"] = [1.0, 0.5, 0.25, None]
        if changed:
            records[0]["metrics"]["grad_norm_by_lag_init"][2] = 0.26

    same_a = copy_with(runs.a, tmp_path / "a", edit_records=add_profiles)
    same_b = copy_with(runs.b, tmp_path / "b", edit_records=add_profiles)
    changed = copy_with(runs.b, tmp_path / "changed",
                        edit_records=lambda records: add_profiles(records, changed=True))
    reference = compare_folders(runs.a, runs.b, registry)
    same = compare_folders(same_a, same_b, registry)
    assert same.ok and same.values_compared == reference.values_compared + 4 * 4
    [difference] = compare_folders(same_a, changed, registry).differences
    assert (difference.what, difference.a, difference.b) == ("grad_norm_by_lag_init[2]", 0.25,
                                                             0.26)


def test_difference_table_is_sorted_and_capped(runs, registry, tmp_path, capsys):
    def edit(records):
        for record in records:
            record["metrics"]["test_loss"] += 1.0
            record["metrics"]["loss_vs_baseline"] += 1.0

    changed = copy_with(runs.b, tmp_path / "changed", edit_records=edit)
    comparison = compare_folders(runs.a, changed, registry)
    keys = [(d.label, d.what) for d in comparison.differences]
    assert keys == sorted(keys) and len(keys) == 8
    print_comparison(comparison, make_console(), max_rows=3)
    out = capsys.readouterr().out
    assert "... and 5 more" in out and "DIFFER: 8 values in 4 runs" in out


def test_value_rules():
    assert identical(0.1 + 0.2, 0.1 + 0.2) and not identical(0.0, -0.0)
    assert identical(None, None) and not identical(6, 6.0) and not identical(True, 1)
    assert close(1.0, 1.0 + 1e-9, 1e-6, 0.0) and not close(1.0, 1.001, 1e-6, 0.0)
    assert close(0.0, 1e-10, 0.0, 1e-9) and close(6, 6.0, 0.0, 0.0)
    assert not close(1185, 1186, 0.1, 10.0)  # ints exactly, whatever the tolerance
    assert not close(True, 1, 0.1, 0.1) and not close("a", "b", 1.0, 1.0)
    assert close(None, None, 0.0, 0.0) and not close(None, 0.0, 1.0, 1.0)
    difference = Difference("id", "label", "x", 2.0, 1.0)
    assert (difference.abs_diff, difference.rel_diff) == (1.0, 0.5)
    assert Difference("id", "label", "x", "ok", "failed").abs_diff is None


def test_folder_without_results_is_bad_input(runs, tmp_path, capsys):
    assert compare(str(runs.a), str(tmp_path)) == 2
    assert f"{tmp_path}: no results.jsonl here; is it a results folder?" in capsys.readouterr().err
    assert compare(str(tmp_path / "nowhere"), str(runs.a)) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err


def test_unreadable_files_are_bad_input(runs, tmp_path, capsys):
    torn = copy_with(runs.b, tmp_path / "torn")
    with open(torn / "results.jsonl", "a") as handle:
        handle.write('{"run_id": "abc", "lab')
    assert compare(str(runs.a), str(torn)) == 0  # the torn line is skipped, with a warning
    err = capsys.readouterr().err
    assert "results.jsonl: skipped 1 unreadable record: line 5: not JSON" in err
    broken = copy_with(runs.b, tmp_path / "broken")
    (broken / "environment.json").write_text("{not json")
    assert compare(str(runs.a), str(broken)) == 2
    assert "environment.json: cannot read" in capsys.readouterr().err
    assert compare(str(runs.a), str(runs.b), "--tolerant", "--rtol", "-1") == 2
    assert "rtol must be a finite number >= 0" in capsys.readouterr().err
