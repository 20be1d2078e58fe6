"""The ``torch`` backend plugin without PyTorch: it must load, list both backends as
unavailable with the install command, and leave ``rnnbench list`` and ``plugins`` working.
PyTorch is made unimportable in a fresh process (``sys.modules["torch"] = None``), so these run
whether or not it is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "250"})


def test_without_torch_the_plugin_loads_and_says_how_to_install_it():
    """PyTorch made unimportable in a fresh process: the plugin still loads, both backends are
    listed as unavailable with the install command, and the other backends are unaffected."""
    script = """\
        import json, sys
        sys.modules["torch"] = None  # import torch now raises ImportError
        import rnnbench
        from rnnbench.plugin_manager import build_host
        host = build_host()
        registry = host.registry
        out = {f"{n}/{b}": e.unavailable_reason() for (n, b), e in registry.cells.items()}
        out["broken"] = [str(key) for key in registry.broken]
        try:
            host.build_cell("lstm", "torch", rnnbench.CellConfig(2, 3))
        except Exception as exc:
            out["build"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(out))
        """
    done = _run(script)
    assert done.returncode == 0, done.stderr
    reasons = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("rnn", "lstm", "gru"):
        for backend in ("torch", "torch-cuda"):
            reason = reasons[f"{name}/{backend}"]
            assert reason and 'pip install "rnnbench[torch]"' in reason, reason
        assert reasons[f"{name}/numpy"] is None
    assert not reasons["broken"]
    assert 'pip install "rnnbench[torch]"' in reasons["build"], reasons.get("build")


def test_without_torch_list_and_plugins_still_work():
    script = """\
        import sys
        sys.modules["torch"] = None
        from rnnbench.cli import main
        sys.exit(main(["list"]) or main(["plugins"]))
        """
    done = _run(script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "torch_cells" in done.stdout
    assert "rnnbench[torch]" in done.stdout.replace("\n", "")
