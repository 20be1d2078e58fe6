"""Suite variants: ``variants:`` overlays top-level keys (``training`` key by key); ``--variant``
runs one into its own folder, recorded there; problems point at the variant's own lines."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest
from test_suite import make_registry  # pytest puts tests/ on sys.path (prepend mode)

from rnnbench.api import run_suite
from rnnbench.cli import main
from rnnbench.errors import SuiteError
from rnnbench.record_file import StoreWarning
from rnnbench.suite import load_suite, read_suite
from rnnbench.suite_variants import apply_variant, recorded_variant, variant_names

SUITE = """\
name: budget
cell: [rnn, lstm]
task: echo
hidden_size: 8
seed: [0, 1]
training: {steps: 10, lr: 0.01}
variants:
  full:
    seed: [0, 1, 2, 3, 4]
    training: {steps: 200}
  fast:
    cell: rnn
    output: elsewhere/fast
"""


def write(tmp_path: Path, text: str = SUITE, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_variant_overlays_keys_and_merges_training(tmp_path):
    path = write(tmp_path)
    base = load_suite(path, make_registry())
    full = load_suite(path, make_registry(), variant="full")
    assert base.variant is None and full.variant == "full"
    assert len(base.runs) == 4 and len(full.runs) == 10
    assert {run.training.steps for run in full.runs} == {200}
    assert {run.training.lr for run in full.runs} == {0.01}  # merged, not replaced
    assert {run.seed for run in full.runs} == {0, 1, 2, 3, 4}
    # Same configuration but the budget: the variant's runs are other runs (other ids).
    assert not {r.run_id for r in base.runs} & {r.run_id for r in full.runs}
    assert variant_names(read_suite(path)) == ["full", "fast"]


def test_output_of_a_variant(tmp_path):
    path = write(tmp_path)
    assert load_suite(path, make_registry()).output is None  # the caller's results/<name>
    assert load_suite(path, make_registry(), variant="full").output == Path("results/budget-full")
    assert load_suite(path, make_registry(), variant="fast").output == Path("elsewhere/fast")
    with_output = write(tmp_path, SUITE.replace("hidden_size: 8", "hidden_size: 8\n"
                                                "output: results/claims/budget"), "o.yaml")
    assert load_suite(with_output, make_registry(), variant="full").output == Path(
        "results/claims/budget-full")


def test_unknown_variant_suggests_the_closest(tmp_path):
    path = write(tmp_path)
    with pytest.raises(SuiteError) as info:
        load_suite(path, make_registry(), variant="ful")
    (problem,) = info.value.problems
    assert problem.line == 7 and problem.field == "variants"
    assert "unknown variant 'ful'" in problem.message and "did you mean 'full'?" in problem.hint


def test_a_suite_without_variants_says_how_to_add_one(tmp_path):
    path = write(tmp_path, SUITE.split("variants:")[0])
    with pytest.raises(SuiteError, match="declares no variants"):
        load_suite(path, make_registry(), variant="full")


def test_problems_in_a_variant_point_at_its_own_lines(tmp_path):
    path = write(tmp_path, SUITE + """\
  broken:
    seeds: [0, 1]
    hidden_size: 0
    training: {lr: -1, steps: 20}
""")
    load_suite(path, make_registry(), variant="full")  # the other variants are fine
    with pytest.raises(SuiteError) as info:
        load_suite(path, make_registry(), variant="broken")
    found = {(p.line, p.field): p for p in info.value.problems}
    assert set(found) == {(15, "variants.broken.seeds"), (16, "variants.broken.hidden_size"),
                          (17, "variants.broken.training.lr")}, found
    assert "unknown key 'seeds'" in found[(15, "variants.broken.seeds")].message
    assert "did you mean 'seed'?" in found[(15, "variants.broken.seeds")].hint


def test_a_variant_cannot_rename_the_suite_or_nest(tmp_path):
    path = write(tmp_path, SUITE + "  renamed: {name: other}\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path, make_registry(), variant="renamed")
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (14, "variants.renamed.name")
    assert "results/<name>-<variant>" in problem.hint


def test_variants_structure_is_checked_without_choosing_one(tmp_path):
    path = write(tmp_path, SUITE + "  empty: {}\n  'bad name': {seed: 1}\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path, make_registry())
    messages = {p.field: p.message for p in info.value.problems}
    assert "an empty variant changes nothing" in messages["variants.empty"]
    assert "expected a variant name" in messages["variants"]


def test_apply_variant_keeps_the_document_and_lines(tmp_path):
    doc = read_suite(write(tmp_path))
    full = apply_variant(doc, "full")
    assert doc.data["seed"] == [0, 1] and full.data["seed"] == [0, 1, 2, 3, 4]
    assert full.line_of("seed") == 9 and full.line_of("training", "steps") == 10
    assert full.line_of("training", "lr") == doc.line_of("training", "lr") == 6
    assert apply_variant(doc, None) is doc


TINY = """\
name: tiny
cell: [rnn, lstm]
task:
  - name: adding
    params: {length: 4, train_size: 60, validation_size: 20, test_size: 20}
hidden_size: 4
dtype: float64
seed: 0
training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 4, eval_every: 2}
metrics: [test_loss, steps]
variants:
  full: {seed: [0, 1], training: {steps: 6}}
"""


def test_run_variant_writes_its_own_folder_and_records_the_variant(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    suite = write(tmp_path, TINY, "tiny.yaml")
    assert main(["run", str(suite), "--variant", "full", "-q"]) == 0
    out = tmp_path / "results" / "tiny-full"
    assert json.loads((out / "environment.json").read_text())["variant"] == "full"
    assert recorded_variant(out) == "full"
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["metrics"]["steps"] for r in records} == {6}
    assert not (tmp_path / "results" / "tiny").exists()
    assert (out / "results.md").read_text().startswith("# Results: tiny (variant full)\n")
    assert main(["show", str(out)]) == 0
    assert "tiny (variant full)" in capsys.readouterr().out
    assert main(["run", str(suite), "-q"]) == 0
    assert recorded_variant(tmp_path / "results" / "tiny") is None


def test_resume_with_another_variant_warns_and_keeps_the_record_of_the_first(tmp_path):
    suite = write(tmp_path, TINY, "tiny.yaml")
    out = tmp_path / "out"
    run_suite(suite, output_dir=out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_suite(suite, output_dir=out, resume=True, variant="full")
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert any("the folder holds the suite as written (no variant), this is variant 'full'"
               in m for m in messages), messages
    assert recorded_variant(out) is None  # environment.json still speaks of the first runs
    assert list(out.glob("environment.resumed-*.json"))
    # Resuming the same variant is quiet.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_suite(suite, output_dir=tmp_path / "again", variant="full")
        run_suite(suite, output_dir=tmp_path / "again", variant="full", resume=True)
    assert not [w for w in caught if issubclass(w.category, StoreWarning)]


def test_validate_checks_every_variant(tmp_path, capsys):
    suite = write(tmp_path, TINY, "tiny.yaml")
    assert main(["validate", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "tiny.yaml: valid; 2 runs" in out
    assert "tiny.yaml variant full: valid; 4 runs; results to results/tiny-full" in out
    assert main(["validate", str(suite), "--variant", "full"]) == 0
    assert "2 runs" not in capsys.readouterr().out
    broken = write(tmp_path, TINY + "  typo: {training: {stepz: 3}}\n", "broken.yaml")
    assert main(["validate", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml:13: variants.typo.training.stepz: unknown key 'stepz'" in err
    assert main(["validate", str(broken), "--variant", "full"]) == 0
    assert main(["run", str(broken), "--variant", "fulll", "-q"]) == 2
    assert "did you mean 'full'?" in capsys.readouterr().err


def test_resume_into_a_variant_folder_continues_its_variant(tmp_path, capsys):
    suite = write(tmp_path, TINY, "tiny.yaml")
    out = tmp_path / "out"
    assert main(["run", str(suite), "--variant", "full", "-o", str(out), "-q",
                 "-k", "seed0"]) == 0
    assert main(["run", str(suite), "-o", str(out), "--resume"]) == 0
    printed = capsys.readouterr().err
    assert "resume: 2 runs already finished" in printed and "(variant full)" in printed
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["metrics"]["steps"] for r in records} == {6}
    assert not list(out.glob("suite.resumed-*"))
