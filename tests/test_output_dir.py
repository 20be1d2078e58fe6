"""Issue 9, cases 4 and 5: output only where it belongs, and every OS error one clear line.

Each test goes through ``rnnbench.cli.main`` as a user would and checks the exit code, that
stderr holds one clear line (no traceback) and that no user file changed.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import rnnbench.output_dir
import rnnbench.results
from rnnbench.cli import main
from rnnbench.output_dir import MANIFEST

SUITE = """\
name: tiny
cell: rnn
task:
  - name: adding
    params: {length: 4, train_size: 40, validation_size: 20, test_size: 20}
hidden_size: 4
dtype: float64
seed: 0
training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 2, eval_every: 2}
metrics: [test_loss]
"""


def write_suite(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(SUITE + extra)
    return path


def one_error_line(capsys, *expected: str) -> str:
    """The run's stderr: exactly one line, starting "error:", holding each of ``expected``."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def deny_writes_to(monkeypatch, folder: Path) -> None:
    """As a read-only folder looks to a non-root user (root may write anywhere, so the tests,
    which run as root in CI containers, simulate what os.access tells an ordinary user)."""
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path).resolve() == folder.resolve() and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(rnnbench.output_dir.os, "access", access)


# --- case 4: user files are never overwritten; /, .., the suite's folder are refused ---------


def test_case4_full_run_refuses_a_folder_of_user_files(tmp_path, capsys):
    suite = write_suite(tmp_path / "suites")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.md").write_text("my notes\n")
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 2
    one_error_line(capsys, str(out), "not an rnnbench results folder", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["results.md"]

    # --force writes the results, and leaves the user's results.md alone with a warning.
    assert main(["run", str(suite), "-o", str(out), "-q", "--force"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [f"warning: {out / 'results.md'}: not replaced: rnnbench did not "
                                "write it (move it away to get this table)"]
    assert (out / "results.md").read_text() == "my notes\n"
    assert (out / "results.jsonl").is_file() and (out / "runs.csv").is_file()
    owned = json.loads((out / MANIFEST).read_text())["files"]
    assert "results.md" not in owned and {"results.jsonl", "runs.csv", "suite.yaml"} <= set(owned)

    # Now a results folder: a run goes in without --force, and still keeps results.md.
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    assert "not replaced" in capsys.readouterr().err
    assert (out / "results.md").read_text() == "my notes\n"


def test_case4_user_suite_yaml_is_never_replaced_even_with_force(tmp_path, capsys):
    suite = write_suite(tmp_path / "suites")
    out = tmp_path / "experiment"
    out.mkdir()
    (out / "suite.yaml").write_text("my own suite\n")
    assert main(["run", str(suite), "-o", str(out), "-q", "--force"]) == 2
    one_error_line(capsys, str(out / "suite.yaml"), "not written by rnnbench", "move it")
    assert sorted(p.name for p in out.iterdir()) == ["suite.yaml"]
    assert (out / "suite.yaml").read_text() == "my own suite\n"


@pytest.mark.parametrize("where", ["/", "..", ".", "suite folder", "parent of suite", "cwd",
                                   "home"])
def test_case4_refuses_root_home_cwd_suite_folder_and_its_parents(where, tmp_path, monkeypatch,
                                                                   capsys):
    project = tmp_path / "project"
    suite = write_suite(project / "suites")
    monkeypatch.chdir(project / "suites")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    output = {"suite folder": str(project / "suites"), "parent of suite": str(project),
              "cwd": os.getcwd(), "home": str(tmp_path / "home")}.get(where, where)
    # The suite's own output: key, as the issue found it (output: / and output: .. accepted).
    suite.write_text(SUITE + f"output: {json.dumps(output)}\n")
    assert main(["run", str(suite), "-q"]) == 2
    one_error_line(capsys, f"{output}: will not write results into a folder that",
                   "choose another output folder")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_case4_results_folder_of_an_older_rnnbench_is_adopted(tmp_path, capsys):
    suite = write_suite(tmp_path / "suites")
    out = tmp_path / "old"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    (out / MANIFEST).unlink()  # as rnnbench left folders before the manifest
    (out / "notes.md").write_text("my notes\n")  # the user's, beside the old results
    leftover = out / ".rnnbench-staging-killed"  # what a kill -9 while reporting leaves
    leftover.mkdir()
    (leftover / "results.md").write_text("half a table")
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    assert capsys.readouterr().err == ""
    owned = set(json.loads((out / MANIFEST).read_text())["files"])
    assert {"results.jsonl", "environment.json", "results.md", "runs.csv"} <= owned
    assert "notes.md" not in owned  # adoption takes what rnnbench wrote, not everything
    assert not [name for name in owned if name.startswith(".rnnbench-staging-")]
    assert [p.name for p in out.iterdir() if p.name.startswith(".rnnbench-staging-")] == [
        leftover.name]  # only the old leftover: this run's staging folders are gone


def test_case4_show_rewrites_tables_but_not_user_files(tmp_path, capsys):
    suite = write_suite(tmp_path / "suites")
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    (out / "results.md").unlink()
    (out / "results.md").write_text("hand-edited copy\n")  # a user file of a table's name
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"].remove("results.md")
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert main(["show", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not replaced" in err
    assert (out / "results.md").read_text() == "hand-edited copy\n"


# --- case 5: write errors are one line naming the path and the reason, exit 2 ----------------


def test_case5_output_onto_a_file_or_under_a_file(tmp_path, capsys):
    suite = write_suite(tmp_path / "suites")
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    assert main(["run", str(suite), "-o", str(afile), "-q"]) == 2
    one_error_line(capsys, f"error: {afile}: Not a directory")
    assert main(["run", str(suite), "-o", str(afile / "sub"), "-q"]) == 2
    one_error_line(capsys, f"error: {afile / 'sub'}: Not a directory", f"{afile} is a file")
    assert afile.read_text() == "keep me\n"


def test_case5_read_only_output_folder(tmp_path, monkeypatch, capsys):
    suite = write_suite(tmp_path / "suites")
    locked = tmp_path / "locked"
    locked.mkdir()
    deny_writes_to(monkeypatch, locked)
    assert main(["run", str(suite), "-o", str(locked / "out"), "-q"]) == 2
    one_error_line(capsys, f"error: {locked}: Permission denied")
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders (see the simulated test above)")
def test_case5_read_only_output_folder_for_real(tmp_path, capsys):
    suite = write_suite(tmp_path / "suites")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["run", str(suite), "-o", str(locked / "out"), "-q"]) == 2
    finally:
        locked.chmod(0o755)
    one_error_line(capsys, f"error: {locked}: Permission denied")


def _fail_fsync(monkeypatch) -> None:
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rnnbench.results.os, "fsync", fsync)


def _fail_append(monkeypatch) -> None:
    def append(self, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rnnbench.results.ResultStore, "append", append)


@pytest.mark.parametrize("failing", ["every write", "the record append"])
def test_case5_full_disk(failing, tmp_path, monkeypatch, capsys):
    suite = write_suite(tmp_path / "suites")
    out = tmp_path / "out"
    (_fail_fsync if failing == "every write" else _fail_append)(monkeypatch)
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 2
    line = one_error_line(capsys, "No space left on device")
    named = line.removeprefix("error: ").rsplit(": ", 1)[0]
    assert Path(named).parent == out  # the file that could not be written
    if failing == "the record append":
        assert named == str(out / "results.jsonl")


def test_case5_show_into_read_only_or_full_folder(tmp_path, monkeypatch, capsys):
    suite = write_suite(tmp_path / "suites")
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    before = (out / "results.md").stat().st_mtime_ns
    with monkeypatch.context() as patch:
        deny_writes_to(patch, out)
        assert main(["show", str(out)]) == 0  # a colleague's folder: shown, not rewritten
    shown = capsys.readouterr()
    assert shown.err.startswith(f"warning: {out}: Permission denied")
    assert "Traceback" not in shown.err
    assert "not rewritten" in shown.err and "tiny" in shown.out
    assert (out / "results.md").stat().st_mtime_ns == before
    _fail_fsync(monkeypatch)
    assert main(["show", str(out)]) == 2
    line = one_error_line(capsys, "No space left on device")
    assert Path(line.removeprefix("error: ").rsplit(": ", 1)[0]).parent == out  # a table's path
    assert not [p for p in out.iterdir() if p.name.startswith(".rnnbench-staging-")]


def test_case5_show_and_compare_of_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    assert main(["show", str(afile)]) == 2
    one_error_line(capsys, str(afile))
    assert main(["compare", str(afile), str(afile)]) == 2
    one_error_line(capsys, str(afile))


def test_case5_interrupt_and_bugs_are_not_swallowed(tmp_path, monkeypatch, capsys):
    """Only OS errors become one line: Ctrl-C still exits 130, a bug keeps its traceback."""
    suite = write_suite(tmp_path / "suites")

    def interrupt(self, record):
        raise KeyboardInterrupt

    monkeypatch.setattr(rnnbench.results.ResultStore, "append", interrupt)
    assert main(["run", str(suite), "-o", str(tmp_path / "a"), "-q"]) == 130

    def bug(self, record):
        raise ValueError("a genuine bug")

    monkeypatch.setattr(rnnbench.results.ResultStore, "append", bug)
    with pytest.raises(ValueError, match="a genuine bug"):
        main(["run", str(suite), "-o", str(tmp_path / "b"), "-q"])


def test_case4_a_results_folders_own_suite_copy_runs_again_into_it(tmp_path, capsys):
    """``rnnbench run DIR/suite.yaml --resume -o DIR`` (continue from the folder's own copy)
    is allowed; any other suite file inside the output folder is still refused."""
    suite = write_suite(tmp_path / "suites")
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    assert main(["run", str(out / "suite.yaml"), "-o", str(out), "-q", "--resume"]) == 0
    capsys.readouterr()
    other = out / "other.yaml"
    other.write_text(suite.read_text())
    assert main(["run", str(other), "-o", str(out), "-q"]) == 2
    one_error_line(capsys, "holds the suite file")
