"""Issue 9, cases 7, 8 and 11 (parts): hostile suite files are refused fast, in bounded memory,
with one line naming file and line; names and values are printed literally; absurd integers
and Ctrl-C at start-up are one line, never a traceback. Every case goes through the CLI."""

from __future__ import annotations

import time
import tracemalloc

import pytest

import rnnbench.cli as cli
from rnnbench.cli import main
from rnnbench.errors import SuiteError
from rnnbench.suite_expand import count_runs
from rnnbench.suite_yaml import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, read_suite

VALID = """\
name: tiny
cell: rnn
task: {name: adding, params: {length: 4, train_size: 20, validation_size: 10, test_size: 10}}
hidden_size: 4
training: {steps: 2, batch_size: 10}
metrics: [test_loss]
"""

#: The "billion laughs" bomb of issue 9, case 7 (578 bytes): 9**9 strings once expanded.
ALIAS_BOMB = """\
name: lol
cell: rnn
task: adding
hidden_size: 4
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
j: &j [*i,*i,*i,*i,*i,*i,*i,*i,*i]
k: [*j,*j,*j,*j,*j,*j,*j,*j,*j]
"""


def cli_result(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The single problem line of a suite error (after the "invalid suite" heading)."""
    lines = err.strip().splitlines()
    assert lines[0] == "error: invalid suite (1 problem):", err
    assert len(lines) == 2, err
    return lines[1].strip()


# --- case 7: YAML that exhausts the machine -------------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\ufffe"])
def test_case7_control_characters_are_one_line_with_the_line(tmp_path, capsys, char) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(VALID.replace("hidden_size: 4", f"hidden_size: 4{char}"), encoding="utf-8")
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"{path}:4: (yaml): control character U+{ord(char):04X}")
    assert "delete it" in line


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 1000 + "]" * 1000,  # flow lists
        "{a: " * 1000 + "1" + "}" * 1000,  # flow mappings
        "".join(f"\n{'  ' * level}- " for level in range(1, 300)) + "x",  # block lists
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_case7_deep_nesting_is_refused_without_recursion(tmp_path, capsys, nested) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(VALID + f"description: {nested}\n")
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert code == 2
    assert f"(yaml): nested more than {MAX_DEPTH} levels deep" in one_error_line(err)


def test_case7_nesting_up_to_the_limit_is_read(tmp_path) -> None:
    path = tmp_path / "deep.yaml"
    depth = MAX_DEPTH - 1  # the top-level mapping is one level
    path.write_text(VALID + "description: " + "[" * depth + "]" * depth + "\n")
    assert read_suite(path).data["description"] == _nested_list(depth)


def _nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_case7_alias_bomb_is_refused_fast_in_small_memory(tmp_path, capsys) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB.encode()) < 600
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SuiteError) as info:
            read_suite(path)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 1.0, seconds
    assert peak < 20 * 2**20, peak
    (problem,) = info.value.problems
    assert problem.line == 10  # f: the first alias that pushes the expansion over the limit
    assert problem.message.startswith("alias expansion too large")
    # and through the command: one line, exit 2
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert code == 2 and f"more than {MAX_NODES} values" in one_error_line(err)


def test_case7_reused_anchors_within_the_limit_are_fine(tmp_path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        VALID.replace("training: {steps: 2, batch_size: 10}", "training: &t {steps: 2}")
        + "include:\n  - {hidden_size: 8}\n"
    )
    assert read_suite(path).data["training"] == {"steps": 2}


def test_case7_file_size_limit(tmp_path, capsys) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(VALID.encode() + b"#" * MAX_FILE_BYTES)
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert code == 2
    assert one_error_line(err).startswith(f"{path}: (file): the file is larger than 2 MiB")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1" * 5000, "an integer too large to be a suite value"),  # int() refuses > 4300 digits
        ("0x" + "f" * 5000, "an integer too large to be a suite value"),
        ("2001-02-30", "day is out of range for month"),
    ],
    ids=["digits", "hex", "date"],
)
def test_case7_scalars_yaml_cannot_convert_are_one_line(tmp_path, capsys, value, message) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(VALID + f"seed: {value}\n")
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"{path}:7: (yaml): invalid YAML: cannot read the value")
    assert message in line


MILLION = """\
name: million
cell: [rnn, lstm, gru, rnn, lstm, gru, rnn, lstm, gru, rnn]
task: {name: adding, params: {length: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}}
hidden_size: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
num_layers: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
training: {steps: 2, lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}
"""


def test_case7_run_count_is_refused_before_anything_is_built(tmp_path, capsys) -> None:
    path = tmp_path / "million.yaml"
    path.write_text(MILLION)
    started = time.perf_counter()
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert time.perf_counter() - started < 2.0
    assert code == 2
    assert one_error_line(err) == (
        f"{path}:1: (top level): the axes multiply to 1000000 runs, more than the default "
        "limit allows (10000) (narrow the axes, or raise the limit: max_runs: 1000000 in the "
        "suite, or --max-runs 1000000)"
    )


def test_case7_run_limit_is_raised_by_max_runs_or_the_flag(tmp_path, capsys) -> None:
    path = tmp_path / "twelve.yaml"
    path.write_text(VALID.replace("hidden_size: 4", "hidden_size: [1, 2, 3, 4]\nseed: [0, 1, 2]"))
    assert cli_result(["validate", str(path), "--max-runs", "12"], capsys)[0] == 0
    code, _, err = cli_result(["validate", str(path), "--max-runs", "11"], capsys)
    assert code == 2 and "12 runs, more than --max-runs allows (11)" in err
    path.write_text(path.read_text() + "max_runs: 11\n")
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert code == 2
    assert one_error_line(err).startswith(
        f"{path}:8: max_runs: the axes multiply to 12 runs, more than max_runs allows (11)"
    )
    code, out, _ = cli_result(["validate", str(path), "--max-runs", "20"], capsys)
    assert code == 0 and "valid; 12 runs" in out  # the flag wins over the suite's key
    code, _, err = cli_result(["run", str(path), "--max-runs", "5", "-o", str(tmp_path / "o")],
                              capsys)
    assert code == 2 and "more than --max-runs allows (5)" in err
    assert not (tmp_path / "o").exists()


def test_case7_count_runs_is_an_upper_bound_of_the_expansion() -> None:
    data = {
        "cell": ["rnn", "lstm"],
        "task": ["adding", {"name": "copy", "params": {"length": [1, 2, 3], "n": 4}}],
        "hidden_size": [8, 16],
        "seed": 0,
        "training": {"lr": [0.1, 0.01], "steps": 5},
        "include": [{"cell": "gru"}, {"task": "adding", "seed": [1, 2]}],
        "exclude": [{"cell": "rnn"}],  # not subtracted: the count bounds what expands
    }
    base = 2 * (1 + 3) * 2 * 2
    assert count_runs(data) == base + 1 * 4 * 2 * 2 + 2 * 1 * 2 * 2 * 2


# --- case 8: text is printed literally --------------------------------------------------------


@pytest.mark.parametrize("name", ["a[/b].yaml", "x[bold]y.yaml", ":x:.yaml", "[red]:smile:.yaml"])
def test_case8_file_names_print_literally(tmp_path, capsys, name) -> None:
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)  # "a[" is a folder
    path.write_text(VALID)
    code, out, _ = cli_result(["validate", str(path)], capsys)
    assert code == 0 and out == f"{path}: valid; 1 runs\n"
    path.write_text(VALID.replace("hidden_size: 4", "hidden_size: '[bold]:x:'"))
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert code == 2
    assert one_error_line(err).startswith(
        f"{path}:4: hidden_size: expected a positive integer up to 65536, or a list of them, "
        "got '[bold]:x:' (a string)"
    )
    missing = tmp_path / ("gone-" + name.replace("/", ""))
    code, _, err = cli_result(["validate", str(missing)], capsys)
    assert code == 2 and f"{missing}: (file): no such file" in err


def test_case8_results_folder_and_table_cells_print_literally(tmp_path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(VALID.replace("metrics: [test_loss]", "description: '[bold]x'"))
    out_dir = tmp_path / "[bold]:x:[/]"
    code, out, _ = cli_result(["run", str(path), "-o", str(out_dir)], capsys)
    assert code == 0 and f"results: {out_dir}\n" in out
    code, out, _ = cli_result(["show", str(out_dir)], capsys)
    assert code == 0 and "tiny: mean ± std over seeds" in out
    code, _, err = cli_result(["show", str(tmp_path / "[/x]:x:")], capsys)
    assert code == 2 and f"{tmp_path / '[/x]:x:'}: no results.jsonl here" in err


def test_case8_table_cells_from_names_are_not_markup(capsys) -> None:
    view = cli.Table()
    view.add_column("c")
    cli._add_row(view, "[bold]x:x:[/]")
    cli.make_console().print(view)
    assert "[bold]x:x:[/]" in capsys.readouterr().out


# --- case 11 (parts): absurd integers, Ctrl-C at start-up ---------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hidden_size: 100000000000000000000000", "expected a positive integer up to 65536"),
        ("hidden_size: [4, 65537]", "expected a positive integer up to 65536"),
        ("num_layers: 65", "expected a positive integer up to 64"),
        ("seed: 4294967296", "expected an integer from 0 to 4294967295 (2**32 - 1)"),
        ("training: {steps: 1000000001}", "expected a positive integer up to 1000000000"),
        ("training: {epochs: 1000001}", "expected a positive integer up to 1000000"),
        ("hidden_size: 1e23", "expected a positive integer up to 65536"),
        ("include: [{hidden_size: 100000}]", "expected a positive integer up to 65536"),
        ("training: {steps: 2, lr: .nan}", "training.lr: expected a number > 0"),
        ("training: {steps: 2, lr: [0.1, .inf]}", "training.lr[1]: expected a number > 0"),
    ],
)
def test_case11_integer_axes_have_bounds(tmp_path, capsys, line, message) -> None:
    path = tmp_path / "s.yaml"
    key = line.split(":")[0]
    text = "\n".join(row for row in VALID.splitlines() if not row.startswith(f"{key}:"))
    path.write_text(text + "\n" + line + "\n")
    code, _, err = cli_result(["validate", str(path)], capsys)
    assert code == 2 and message in one_error_line(err)


@pytest.mark.parametrize("where", ["build_parser", "make_host", "load_validated_suite"])
def test_case11_ctrl_c_at_start_up_is_one_line(tmp_path, capsys, monkeypatch, where) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, where, interrupted)
    path = tmp_path / "s.yaml"
    path.write_text(VALID)
    code, out, err = cli_result(["validate", str(path)], capsys)
    assert code == 130 and out == "" and err == "interrupted\n"


def test_case11_ctrl_c_outside_main_exits_130(capsys, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted)
    with pytest.raises(SystemExit) as info:
        cli.entry_point()
    assert info.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_case11_ctrl_c_during_a_run_says_how_to_resume(tmp_path, capsys, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_suite", interrupted)
    path = tmp_path / "s.yaml"
    path.write_text(VALID)
    code, _, err = cli_result(["run", str(path), "-o", str(tmp_path / "o")], capsys)
    assert code == 130
    assert err == "interrupted: finished runs are saved; continue with --resume\n"

