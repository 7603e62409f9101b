"""docs/security.md's threat model names, for each line, the test that proves it: every test file
and test function it names exists (a renamed test cannot leave the document pointing nowhere)."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_every_test_the_threat_model_names_exists() -> None:
    text = (REPO / "docs" / "security.md").read_text()
    model = text.split("## Threat model", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", model)
    assert len(named) >= 15
    for path, function in named:
        source = REPO / path
        assert source.is_file(), path
        if function:
            assert re.search(rf"^def {function}\(", source.read_text(), re.M), f"{path}::{function}"
