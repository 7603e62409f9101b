"""Every ``# noqa`` and ``# type: ignore`` in the code says why (house rule), so a reader can judge it.

Accepted forms: ``# noqa: CODE - reason`` and ``# type: ignore[code]  # reason``. ruff's RUF100
(in ``make test``) removes a ``noqa`` that suppresses nothing and mypy's ``warn_unused_ignores`` an
unused ``type: ignore``; this test asks the remaining ones for their reason.

>>> [bool(_REASONED.search(line)) for line in ("x()  # noqa: BLE001 - counted", "x()  # noqa: ANN001",
...     "y = z  # type: ignore[misc]  # set by start()", "y = z  # type: ignore[misc]")]
[True, False, True, False]
"""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("app", "bench", "collectors", "core", "dashboards", "detectors", "scenario", "sector", "storage",
           "streams", "tests", "tools")
_SUPPRESSION = re.compile(r"#\s*(noqa\b|type:\s*ignore\b)")
_REASONED = re.compile(r"#\s*noqa:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*\s+[-(]\s*\w"
                       r"|#\s*type:\s*ignore\[[a-z-, ]+\]\s+#\s*\S")
#: Files the app-layer/lifecycle work of issue 13 rewrites at the same time; their suppressions go
#: with that work (remove an entry once the file has no unexplained suppression left).
PENDING = {"app/worker.py", "app/run.py", "app/offline.py", "core/settings.py"}


def unexplained() -> list[str]:
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _SUPPRESSION.search(line) and not _REASONED.search(line) and rel not in PENDING \
                        and rel != "tests/test_suppressions.py":
                    found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_every_suppression_says_why() -> None:
    assert not unexplained(), "add ' - reason' (noqa) or '  # reason' (type: ignore):\n" + "\n".join(unexplained())


def test_doctests() -> None:
    result = doctest.testmod(sys.modules[__name__], optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
