"""Does ``--resume`` continue the same suite in the same environment? If not, say so.

A resumed folder mixes records of two invocations. That is only sound when both ran the same
suite (the folder's ``suite.yaml`` copy equals the suite file, and every record in the folder is
a run of it) in an environment that gives the same numbers (python, platform, machine and the
numeric packages that :mod:`rnnbench.compare` looks at). Each difference becomes one warning
line, and an earlier ``environment.json`` that differs is kept, the resumed environment written
beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rnnbench.compare import NUMERIC_PACKAGES, PLATFORM_FIELDS
from rnnbench.results import ENVIRONMENT_FILE, SUITE_COPY, read_environment

#: Environment fields whose difference is worth a warning on ``--resume``.
ENVIRONMENT_FIELDS = (*PLATFORM_FIELDS, "implementation")


def suite_differences(folder: Path, suite_text: str, suite_ids: Iterable[str],
                      record_ids: Iterable[str]) -> str | None:
    """How the folder's suite differs from the one being resumed, in words, or None."""
    parts = []
    copy = Path(folder) / SUITE_COPY
    try:
        if copy.is_file() and copy.read_text(encoding="utf-8") != suite_text:
            parts.append(f"the suite file differs from the folder's {SUITE_COPY}")
    except (OSError, UnicodeDecodeError):
        parts.append(f"the folder's {SUITE_COPY} cannot be read")
    ids = set(suite_ids)
    records = list(record_ids)
    foreign = sum(run_id not in ids for run_id in records)
    if foreign:
        parts.append(f"{foreign} of the folder's {len(records)} records are not runs of this "
                     "suite")
    return "; ".join(parts) or None


def environment_differences(earlier: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``FIELD A vs B`` for each field and numeric package that differ between two
    environments."""
    differences = [
        f"{name} {earlier.get(name)} vs {now.get(name)}"
        for name in ENVIRONMENT_FIELDS if earlier.get(name) != now.get(name)
    ]
    packages_a = earlier.get("packages") or {}
    packages_b = now.get("packages") or {}
    differences += [
        f"{name} {packages_a.get(name)} vs {packages_b.get(name)}"
        for name in NUMERIC_PACKAGES if packages_a.get(name) != packages_b.get(name)
    ]
    return differences


def resumed_environment_file(folder: Path,
                             environment: Mapping[str, Any]) -> tuple[Path, str | None]:
    """Where to write the resumed invocation's environment, and the warning to print: the
    folder's ``environment.json`` when it is missing or agrees, else (keeping the earlier one)
    ``environment.resumed-<UTC time>.json`` beside it."""
    path = Path(folder) / ENVIRONMENT_FILE
    if not path.is_file():
        return path, None
    earlier = read_environment(path)
    if earlier is None:
        return path, None
    differences = environment_differences(earlier, environment)
    if not differences:
        return path, None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    beside = path.with_name(f"environment.resumed-{stamp}.json")
    return beside, (
        f"{folder}: --resume in a different environment ({'; '.join(differences)}); the "
        f"earlier {ENVIRONMENT_FILE} is kept and this one written to {beside.name}"
    )
