"""Claims: parsing and checks with file:line:field, evaluation verdicts, ``rnnbench verify``,
and the claims in run/show output, results.md, results.json and plots/claims.png."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from rnnbench.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    KNOWN_FAILURE,
    KNOWN_FAILURE_HOLDS,
    Claim,
    claims_suite_file,
    evaluate_claim,
    parse_expect,
    read_claims,
)
from rnnbench.cli import main
from rnnbench.errors import SuiteError
from rnnbench.plugin_manager import build_host
from rnnbench.records import RunRecord
from rnnbench.results import ResultStore
from rnnbench.suite import load_suite, read_suite

# --- expect -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [("< 0.01", [0.0099, -1.0], [0.01, 1.0]), ("<= 0.01", [0.01], [0.0101]),
     ("> 0.9", [0.91], [0.9]), (">= 1e-3", [0.001], [0.00099]),
     ("between 0.6 0.9", [0.6, 0.75, 0.9], [0.59, 0.91]), ("  >=-2", [-2.0], [-2.1])],
)
def test_expect_forms(text, inside, outside):
    expectation = parse_expect(text)
    assert all(expectation.met(v) for v in inside)
    assert not any(expectation.met(v) for v in outside)
    assert not expectation.met(float("nan"))


@pytest.mark.parametrize("text", ["<< 3", "0.5", "less than 1", "between 1", "= 2", "> x"])
def test_malformed_expect_is_refused_with_an_example(text):
    with pytest.raises(ValueError, match=r'write "< 0.01".*"between 0.6 0.9"'):
        parse_expect(text)


def test_between_bounds_in_the_wrong_order_says_which_comes_first():
    with pytest.raises(ValueError, match=re.escape('e.g. "between 1 3"')):
        parse_expect("between 3 1")


# --- validation in a suite ------------------------------------------------------------------

BASE = """\
name: tiny
cell: [rnn, lstm]
task:
  - name: adding
    params: {length: 4, train_size: 60, validation_size: 20, test_size: 20}
hidden_size: 4
dtype: float64
seed: [0, 1]
training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 5}
metrics: [test_loss, loss_vs_baseline, step_ms]
"""


@pytest.fixture(scope="module")
def registry():
    return build_host().registry


def problems(tmp_path: Path, registry, claims: str) -> list[str]:
    path = tmp_path / "suite.yaml"
    path.write_text(BASE + "claims:\n" + claims)
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    return [str(problem).replace(str(path), "S") for problem in info.value.problems]


def test_valid_claims_reach_the_suite(tmp_path, registry):
    path = tmp_path / "suite.yaml"
    path.write_text(BASE + """claims:
  - id: lstm-low
    claim: "An LSTM's loss stays below 10"
    source: "Hochreiter & Schmidhuber 1997"
    where: {cell: lstm, task.length: [4, 8]}
    compare_to: {cell: rnn}
    metric: step_ms
    expect: "> 1"
    min_runs: 2
    known_failure: "not at this budget"
""")
    suite = load_suite(path, registry)
    (claim,) = suite.claims
    assert claim.where == {"cell": ["lstm"], "task.length": [4, 8]}
    assert claim.compare_to == {"cell": ["rnn"]} and claim.known_failure == "not at this budget"
    assert str(claim.expect) == "> 1" and claim.min_runs == 2


def test_claim_problems_name_line_field_and_fix(tmp_path, registry):
    found = problems(tmp_path, registry, """\
  - {id: a, claim: x, source: y, where: {cell: lstm}, metric: test_loss, expect: "< 1"}
  - id: a
    claim: x
    source: y
    where: {cell: lstm}
    metric: test_los
    expect: "<< 3"
  - {id: c, claim: x, source: y, where: {cell: lstm}, metric: test_accuracy, expect: 0.9}
  - {id: d, claim: x, source: y, where: {cell: lstm}, metric: step_ms, expect: "> 1", at_least: 1}
  - {id: e, claim: x, source: y, where: {cell: lstm}, metric: step_ms, expect: "> 1",
     aggregate: solved_fraction}
  - {id: f, claim: x, source: y, where: {cell: lstm}, metric: step_ms, expect: "> 1", expected: 1}
  - {id: g, claim: x, where: {}, metric: step_ms, expect: "> 1"}
""")
    assert found == [
        "S:13: claims[1].id: duplicate claim id 'a' (first given on line 12) (verify names "
        "claims by id; give each claim its own)",
        "S:17: claims[1].metric: unknown metric 'test_los' (did you mean 'test_loss'?)",
        "S:18: claims[1].expect: cannot read '<< 3' as a comparison; write \"< 0.01\", "
        "\"<= 0.05\", \"> 0.9\", \">= 0.5\" or \"between 0.6 0.9\"",
        "S:19: claims[2].expect: expected a comparison in quotes, e.g. \"< 0.01\", \">= 0.9\" or "
        "\"between 0.6 0.9\", got 0.9",
        "S:19: claims[2].metric: metric 'test_accuracy' is not among the suite's metrics, so no "
        "run records it (add it to the suite's metrics: [test_loss, loss_vs_baseline, step_ms, "
        "test_accuracy])",
        "S:20: claims[3].at_least: at_least applies only with aggregate: solved_fraction (add "
        "aggregate: solved_fraction (the fraction of runs meeting expect), or remove at_least)",
        "S:22: claims[4].aggregate: aggregate: solved_fraction needs at_least (the fraction of "
        "runs that must meet expect, e.g. at_least: 0.66 (2 of 3))",
        "S:23: claims[5].expected: unknown key 'expected' (did you mean 'expect'?)",
        "S:24: claims[6].where: an empty selector would select every run; name the runs it "
        "selects",
        "S:24: claims[6].source: missing required key 'source' (the citation it comes from)",
    ]


def test_selector_problems_are_checked_against_the_runs(tmp_path, registry):
    found = problems(tmp_path, registry, """\
  - id: keys
    claim: x
    source: y
    where: {cel: lstm, task.lenght: 4, cell.nonlinearty: relu}
    metric: test_loss
    expect: "< 3"
  - id: values
    claim: x
    source: y
    where: {cell: lsmt}
    compare_to: {cell: rnn, hidden_size: 5}
    metric: test_loss
    expect: "< 3"
  - {id: few, claim: x, source: y, where: {cell: lstm, seed: 0}, metric: step_ms, expect: "> 1"}
  - {id: together, claim: x, source: y, where: {cell: lstm, seed: [0, 1], lr: 0.01},
     metric: step_ms, expect: "> 1", min_runs: 3}
""")
    assert found[0] == ("S:15: claims[0].where.cel: no run of this suite has a setting 'cel' "
                        "(did you mean 'cell'?)")
    assert found[1] == ("S:15: claims[0].where.task.lenght: no run of this suite has a setting "
                        "'task.lenght' (did you mean 'task.length'?)")
    assert found[2] == ("S:15: claims[0].where.cell.nonlinearty: no run of this suite has a "
                        "setting 'cell.nonlinearty' (did you mean 'cell.nonlinearity'?; cell "
                        "options are keys only for cells that declare them)")
    assert found[3:] == [
        "S:21: claims[1].where.cell: no run has cell 'lsmt' (did you mean 'lstm'?)",
        "S:22: claims[1].compare_to.hidden_size: no run has hidden_size 5 (choose from: 4)",
        "S:25: claims[2].where: selects 1 run, fewer than min_runs (2): the claim could only be "
        "inconclusive (add seeds (e.g. seed: [0, 1, 2]), widen the selector, or lower min_runs)",
        "S:26: claims[3].where: selects 2 runs, fewer than min_runs (3): the claim could only be "
        "inconclusive (add seeds (e.g. seed: [0, 1, 2]), widen the selector, or lower min_runs)",
    ]


def test_compare_to_with_an_aggregate_is_refused(tmp_path, registry):
    found = problems(tmp_path, registry, """\
  - {id: a, claim: x, source: y, where: {cell: lstm}, compare_to: {cell: rnn},
     metric: test_loss, expect: "< 1", aggregate: solved_fraction, at_least: 0.5}
""")
    assert found == ["S:12: claims[0].compare_to: compare_to cannot be combined with aggregate "
                     "(a solved fraction is compared with at_least; state the other group as a "
                     "claim of its own)"]


# --- evaluation ---------------------------------------------------------------------------------


def record(cell: str, seed: int, status: str = "ok", **metrics) -> RunRecord:
    config = {"cell": cell, "backend": "numpy", "task": "adding", "task_params": {"length": 4},
              "hidden_size": 4, "num_layers": 1, "bias": True, "dtype": "float64", "seed": seed,
              "training": {"optimizer": "adam", "lr": 0.01, "steps": 5}}
    return RunRecord(f"{cell}{seed}", f"{cell}/seed{seed}", "hand", config, status,
                     metrics=metrics)


def claim(expect: str = "< 0.1", **fields) -> Claim:
    fields.setdefault("where", {"cell": ["lstm"]})
    fields.setdefault("metric", "test_loss")
    return Claim(id="c", claim="an LSTM solves it", source="paper",
                 expect=parse_expect(expect), **fields)


LSTM = [record("lstm", 0, test_loss=0.05), record("lstm", 1, test_loss=0.07),
        record("rnn", 0, test_loss=0.2), record("rnn", 1, test_loss=0.3)]


def test_holds_and_fails_on_the_mean():
    held = evaluate_claim(claim("< 0.1"), LSTM)
    assert held.verdict == HOLDS and held.value == pytest.approx(0.06) and held.ok
    assert held.measured == "0.06 ± 0.014 (n=2)"
    failed = evaluate_claim(claim("< 0.05"), LSTM)
    assert failed.verdict == FAILS and not failed.ok


def test_a_list_in_a_selector_matches_any_value_and_task_params_are_flat_keys():
    result = evaluate_claim(claim("< 1", where={"cell": ["lstm", "rnn"], "task.length": [4]}),
                            LSTM)
    assert result.groups[0].n == 4 and result.value == pytest.approx(0.155)


def test_too_few_runs_is_inconclusive_and_says_so():
    result = evaluate_claim(claim(min_runs=3), LSTM)
    assert result.verdict == INCONCLUSIVE and not result.ok and result.value is None
    assert result.reason == "2 values from 2 runs, fewer than min_runs (3)"
    nothing = evaluate_claim(claim(where={"cell": ["gru"]}), LSTM)
    assert nothing.verdict == INCONCLUSIVE
    assert nothing.reason == "no run matches where (cell=gru)"


def test_missing_values_make_a_mean_claim_inconclusive_and_are_never_left_out():
    """A mean over the runs that have a value would describe a biased sample (only the seeds
    that reached a target, only those that did not diverge): the issue's "missing values"."""
    records = [record("lstm", 0, test_loss=0.05), record("lstm", 1, "diverged", test_loss=None),
               record("lstm", 2, "failed"), record("lstm", 3, test_loss=0.07)]
    result = evaluate_claim(claim(), records)
    assert result.verdict == INCONCLUSIVE and result.value is None
    assert result.measured == "0.06 ± 0.014 (n=2 of 4 runs; 1 diverged, 1 failed)"
    assert result.reason.startswith("2 of 4 runs give no value (1 diverged, 1 failed), so the "
                                    "mean would leave them out")
    complete = evaluate_claim(claim(), [records[0], records[3]])
    assert complete.verdict == HOLDS and complete.value == pytest.approx(0.06)


def test_solved_fraction_counts_runs_without_a_value_as_not_meeting_expect():
    """steps_to_target is None for a seed that never reached the target: under
    solved_fraction that seed did not meet expect (it is not left out)."""
    records = [record("lstm", seed, steps_to_target=value)
               for seed, value in enumerate([20, 50, None, None])]
    result = evaluate_claim(claim("< 60", metric="steps_to_target",
                                  aggregate="solved_fraction", at_least=0.75), records)
    assert result.verdict == FAILS and result.value == 0.5
    failed = evaluate_claim(claim("< 60", metric="steps_to_target",
                                  aggregate="solved_fraction", at_least=0.5),
                            [*records[:2], record("lstm", 2, "failed")])
    assert failed.verdict == INCONCLUSIVE
    assert failed.reason == "1 of 3 runs give no value to count (1 failed); fix or re-run them"


def test_known_failure_and_known_failure_that_now_holds():
    known = evaluate_claim(claim("< 0.01", known_failure="needs 10x the steps"), LSTM)
    assert known.verdict == KNOWN_FAILURE and known.ok
    assert known.verdict_text == "known failure: needs 10x the steps"
    xpass = evaluate_claim(claim("< 0.1", known_failure="needs 10x the steps"), LSTM)
    assert xpass.verdict == KNOWN_FAILURE_HOLDS and xpass.ok
    assert xpass.verdict_text.startswith("KNOWN FAILURE NOW HOLDS")


def test_compare_to_is_the_ratio_of_the_means():
    result = evaluate_claim(claim("< 0.5", compare_to={"cell": ["rnn"]}), LSTM)
    assert result.verdict == HOLDS and result.value == pytest.approx(0.06 / 0.25)
    assert result.measured == "0.06 ± 0.014 (n=2) / 0.25 ± 0.071 (n=2) = 0.24"
    assert evaluate_claim(claim("< 0.2", compare_to={"cell": ["rnn"]}), LSTM).verdict == FAILS
    zero = [*LSTM[:2], record("rnn", 0, test_loss=0.0), record("rnn", 1, test_loss=0.0)]
    undefined = evaluate_claim(claim(compare_to={"cell": ["rnn"]}), zero)
    assert undefined.verdict == INCONCLUSIVE and "mean of compare_to is 0" in undefined.reason
    few = evaluate_claim(claim(compare_to={"cell": ["rnn"]}), LSTM[:3])
    assert few.verdict == INCONCLUSIVE and few.reason.startswith("compare_to: 1 value")


def test_solved_fraction_counts_runs_meeting_expect_and_diverged_runs_as_unsolved():
    records = [record("lstm", 0, test_loss=0.05), record("lstm", 1, test_loss=0.5),
               record("lstm", 2, "diverged", test_loss=None), record("lstm", 3, test_loss=0.01)]
    holds = evaluate_claim(claim(aggregate="solved_fraction", at_least=0.5), records)
    assert holds.verdict == HOLDS and holds.value == pytest.approx(0.5)
    assert holds.measured.startswith("2 of 4 runs meet < 0.1 (fraction 0.5); 1 diverged")
    fails = evaluate_claim(claim(aggregate="solved_fraction", at_least=0.67), records)
    assert fails.verdict == FAILS and fails.reason == "0.5 < at_least 0.67"
    failed_only = [record("lstm", 0, test_loss=0.05), record("lstm", 1, "failed")]
    assert evaluate_claim(claim(aggregate="solved_fraction", at_least=0.5),
                          failed_only).verdict == INCONCLUSIVE


def test_bool_metrics_count_as_0_and_1():
    records = [record("lstm", 0, exploded=True), record("lstm", 1, exploded=False)]
    result = evaluate_claim(Claim(id="e", claim="x", source="y", where={"cell": ["lstm"]},
                                  metric="exploded", expect=parse_expect(">= 0.5")), records)
    assert result.verdict == HOLDS and result.value == 0.5


# --- rnnbench verify ----------------------------------------------------------------------------

CLAIMS = """\
claims:
  - id: lstm-below-10
    claim: "An LSTM's test loss stays below 10"
    source: "made up for the test"
    where: {cell: lstm}
    metric: test_loss
    expect: "< 10"
  - id: lstm-slower
    claim: "An LSTM step costs more than an RNN step"
    source: "folklore"
    where: {cell: lstm}
    compare_to: {cell: rnn}
    metric: step_ms
    expect: "> 0.01"
  - id: negative-loss
    claim: "The loss is negative"
    source: "nobody"
    where: {cell: [rnn, lstm]}
    metric: test_loss
    expect: "< 0"
    known_failure: "a squared error is never negative"
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """One real tiny run (4 runs of 5 steps, hidden 4), with claims."""
    folder = tmp_path_factory.mktemp("ran")
    suite = folder / "tiny.yaml"
    suite.write_text(BASE + CLAIMS)
    assert main(["run", str(suite), "-o", str(folder / "out"), "-q"]) == 0
    return folder / "out"


def test_run_writes_claims_into_results_md_json_and_a_figure(ran):
    markdown = (ran / "results.md").read_text()
    assert markdown.index("## Claims") < markdown.index("## Summary")
    assert "| lstm-below-10 | An LSTM's test loss stays below 10 | made up for the test |" \
        in markdown
    document = json.loads((ran / "results.json").read_text())
    verdicts = {c["id"]: c["verdict"] for c in document["claims"]}
    assert verdicts == {"lstm-below-10": HOLDS, "lstm-slower": HOLDS,
                        "negative-loss": KNOWN_FAILURE}
    assert document["claims"][0]["groups"][0]["n"] == 2
    assert (ran / "plots" / "claims.png").stat().st_size > 1000


def test_verify_exits_0_when_claims_hold_or_are_known_failures(ran, capsys):
    assert main(["verify", str(ran)]) == 0
    out = capsys.readouterr().out
    assert "lstm-below-10" in out and "known failure" in out
    assert "claims hold: 2 holds; 1 known failure" in out


def test_verify_json(ran, capsys):
    assert main(["verify", str(ran), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is True and [c["id"] for c in document["claims"]] == [
        "lstm-below-10", "lstm-slower", "negative-loss"]


def test_validate_run_and_show_print_the_claims(ran, tmp_path, capsys):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(BASE + CLAIMS)
    assert main(["validate", str(suite)]) == 0
    assert "valid; 4 runs; 3 claims" in capsys.readouterr().out
    assert main(["run", str(suite), "-o", str(tmp_path / "out"), "-k", "seed0 or seed1"]) == 0
    out = capsys.readouterr().out
    assert out.index("mean ± std over seeds") < out.index("claims hold: 2 holds; 1 known failure")
    assert main(["show", str(ran)]) == 0
    out = capsys.readouterr().out
    assert "lstm-slower" in out and "claims hold: 2 holds; 1 known failure" in out


def test_show_warns_about_unreadable_claims_and_still_writes_the_tables(tmp_path, capsys):
    folder = hand_made(tmp_path / "r", '  - {id: x, claim: y, source: z, where: {cell: lstm}, '
                       'metric: test_loss, expect: "about 3"}\n', LSTM)
    assert main(["show", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "warning: claims not evaluated:" in captured.err
    assert "claims[0].expect: cannot read 'about 3'" in captured.err
    assert "## Claims" not in (folder / "results.md").read_text()
    assert not (folder / "plots" / "claims.png").exists()  # no claims, no figure


def hand_made(folder: Path, claims: str, records: list[RunRecord]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.yaml").write_text(BASE + "claims:\n" + claims)
    store = ResultStore(folder)
    for each in records:
        store.append(each)
    return folder


FAILING = """\
  - {id: lstm-solves, claim: "An LSTM solves it", source: "paper", where: {cell: lstm},
     metric: test_loss, expect: "< 0.01"}
  - {id: rnn-fails, claim: "An RNN does not", source: "paper", where: {cell: rnn},
     metric: test_loss, expect: "> 0.1"}
"""


def test_verify_exits_1_naming_the_failing_claim(tmp_path, capsys):
    folder = hand_made(tmp_path / "r", FAILING, LSTM)
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "fails: claim 'lstm-solves': expected mean test_loss of cell=lstm < 0.01; measured " \
        "0.06 ± 0.014 (n=2)" in out
    assert "claims do not hold: 1 fails: lstm-solves; 1 holds" in out


def test_verify_checks_several_folders_and_fails_if_any_fails(tmp_path, capsys):
    holding = """\
  - {id: rnn-fails, claim: "An RNN does not", source: "paper", where: {cell: rnn},
     metric: test_loss, expect: "> 0.1"}
"""
    good = hand_made(tmp_path / "good", holding, LSTM)
    bad = hand_made(tmp_path / "bad", FAILING, LSTM)
    assert main(["verify", str(good), str(good)]) == 0
    assert "2 folders verified; every claim holds or is a known failure" in \
        capsys.readouterr().out
    assert main(["verify", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"claims fail or are inconclusive in: {bad}" in out
    assert "fails: claim 'lstm-solves'" in out
    assert main(["verify", str(good), str(bad), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False and [f["ok"] for f in document["folders"]] == [True, False]
    assert main(["verify", str(good), str(bad), "--suite", str(good / "suite.yaml")]) == 2
    assert "--suite names the claims of one folder" in capsys.readouterr().err


def test_verify_says_inconclusive_with_too_few_runs(tmp_path, capsys):
    records = [record("lstm", 0, test_loss=0.001), record("lstm", 1, "diverged"),
               *LSTM[2:]]
    folder = hand_made(tmp_path / "r", FAILING, records)
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "inconclusive: claim 'lstm-solves': expected mean test_loss of cell=lstm < 0.01; " \
        "measured 0.001 (n=1 of 2 runs; 1 diverged); 1 of 2 runs give no value (1 diverged), " \
        "so the mean would leave them out" in out
    assert "1 inconclusive: lstm-solves" in out


def test_verify_says_loudly_when_a_known_failure_now_holds(tmp_path, capsys):
    claims = """\
  - {id: rnn-fails, claim: "An RNN does not", source: "paper", where: {cell: rnn},
     metric: test_loss, expect: "> 0.1", known_failure: "thought it would not"}
"""
    folder = hand_made(tmp_path / "r", claims, LSTM)
    assert main(["verify", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "KNOWN FAILURE NOW HOLDS: claim 'rnn-fails' is marked known_failure" in out


def test_verify_refuses_unusable_input_with_exit_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 2
    assert "no results.jsonl here" in capsys.readouterr().err
    ResultStore(tmp_path).append(LSTM[0])
    assert main(["verify", str(tmp_path)]) == 2
    assert "no suite.yaml" in capsys.readouterr().err
    (tmp_path / "suite.yaml").write_text(BASE)
    assert main(["verify", str(tmp_path)]) == 2
    assert "the suite states no claims" in capsys.readouterr().err
    (tmp_path / "suite.yaml").write_text(BASE + "claims:\n  - {id: x, where: {cell: lstm}}\n")
    assert main(["verify", str(tmp_path)]) == 2
    assert "claims[0].claim: missing required key 'claim'" in capsys.readouterr().err


def test_verify_reads_the_newest_suite_copy_or_the_one_given(tmp_path, capsys):
    folder = hand_made(tmp_path / "r", FAILING, LSTM)
    resumed = folder / "suite.resumed-20990101T000000Z.yaml"
    resumed.write_text(BASE + "claims:\n" + FAILING.replace('"< 0.01"', '"< 0.1"'))
    later = time.time() + 10
    os.utime(resumed, (later, later))
    assert claims_suite_file(folder) == resumed
    assert main(["verify", str(folder)]) == 0
    assert main(["verify", str(folder), "--suite", str(folder / "suite.yaml")]) == 1
    assert [c.id for c in read_claims(resumed)] == ["lstm-solves", "rnn-fails"]


def test_a_data_file_parameter_is_selected_as_the_suite_wrote_its_path(tmp_path, registry,
                                                                        data_dir):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prices.csv").write_text((data_dir / "prices.csv").read_text())
    path = tmp_path / "suite.yaml"
    path.write_text("""\
name: files
cell: rnn
task: [{name: forecast, params: {source: [data/prices.csv, synthetic], window: 5}}]
hidden_size: 4
seed: [0, 1]
training: {steps: 2}
metrics: [test_loss]
claims:
  - {id: f, claim: x, source: y, where: {task.source: data/prices.csv}, metric: test_loss,
     expect: "< 1"}
  - {id: g, claim: x, source: y, where: {task.source: data/other.csv}, metric: test_loss,
     expect: "< 1"}
""")
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    assert [p.field for p in info.value.problems] == ["claims[1].where.task.source"]
    path.write_text(path.read_text().split("  - {id: g")[0])
    suite = load_suite(path, registry)
    chosen = [run for run in suite.runs if suite.claims[0].selects(run.flat())]
    assert len(chosen) == 2 and all(run.task_label.startswith("forecast[source=prices.csv")
                                    for run in chosen)


def test_a_profile_or_an_error_string_is_a_missing_value_that_says_why():
    records = [record("lstm", 0, test_loss=[0.1, 0.2]), record("lstm", 1, test_loss="error: x")]
    result = evaluate_claim(claim(), records)
    assert result.verdict == INCONCLUSIVE
    assert result.reason.startswith("2 of 2 runs give no value (1 a profile, not a number, 1 "
                                    "metric error)")


def test_an_unquoted_comparison_is_named_with_the_quotes_that_fix_it(tmp_path, registry):
    path = tmp_path / "q.yaml"
    path.write_text(BASE + "claims:\n  - id: a\n    claim: b\n    source: c\n"
                    "    where: {cell: lstm}\n    metric: test_loss\n    expect: > 0.9\n")
    with pytest.raises(SuiteError) as error:
        read_suite(path)
    (problem,) = error.value.problems
    assert problem.field == "expect" and problem.hint == 'write expect: "> 0.9"'
    assert problem.message.startswith("the comparison > 0.9 must be quoted")
