"""storage/ stays independent of the stream layer: no Kafka, Faust or other finsa roles."""

from __future__ import annotations

import ast
from pathlib import Path

import finsa.storage

FORBIDDEN = ("confluent_kafka", "faust", "kafka", "finsa.collectors", "finsa.streams", "finsa.detectors",
             "finsa.dashboards")


def test_storage_imports_no_other_role():
    for path in Path(finsa.storage.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
