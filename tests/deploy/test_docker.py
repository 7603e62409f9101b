"""deploy/docker: hadolint clean, and finsa's own rules: pinned slim base, multi-stage, the
role's extras only, every package folder copied, non-root user, a health check, no remote ADD."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tomllib

import pytest

from tests.conftest import REPO
from tests.deploy.helpers import DOCKER, need_python_tool

ROLES = {"collector": {"collector"}, "worker": {"stream", "storage"}, "web": {"storage", "dashboards"}}


def _dockerfile(role: str) -> str:
    return (DOCKER / f"{role}.Dockerfile").read_text()


@pytest.mark.parametrize("role", sorted(ROLES))
def test_hadolint_is_clean(role: str) -> None:
    hadolint = need_python_tool("hadolint")
    done = subprocess.run([hadolint, str(DOCKER / f"{role}.Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path) -> None:
    hadolint = need_python_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nADD http://example.com/x /x\n")
    done = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout


@pytest.mark.parametrize("role", sorted(ROLES))
def test_finsa_rules(role: str) -> None:
    text = _dockerfile(role)
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) >= 2, "multi-stage"
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases), bases
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert not re.search(r"^ADD\s+\S*https?://", text, re.M | re.I)
    extras = set(re.search(r'pip install --no-cache-dir "\.\[([a-z,]+)\]"', text).group(1).split(","))
    assert extras == ROLES[role]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert extras <= set(declared["project"]["optional-dependencies"])
    package_dirs = set(declared["tool"]["setuptools"]["package-dir"].values())
    copied = {d.rstrip("/") for d in re.findall(r"^COPY (\w+)/ \w+/", text, re.M)}
    assert copied == package_dirs


def test_ignore_files_are_the_same_and_keep_the_sources() -> None:
    texts = {(DOCKER / f"{role}.Dockerfile.dockerignore").read_text() for role in ROLES}
    assert len(texts) == 1
    kept = set(re.findall(r"^!(\w+)/$", texts.pop(), re.M))
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(declared["tool"]["setuptools"]["package-dir"].values()) <= kept


def test_worker_entrypoint_puts_the_password_file_into_the_url(tmp_path) -> None:
    fake = tmp_path / "finsa"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    (tmp_path / "pw").write_text("s3cr3t\n")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "FINSA_CLICKHOUSE_URL": "http://finsa_worker@clickhouse:8123",
           "FINSA_CLICKHOUSE_PASSWORD_FILE": str(tmp_path / "pw")}
    done = subprocess.run(["sh", str(DOCKER / "worker-entrypoint.sh"), "--broker", "k:9092"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["worker", "--clickhouse-url", "http://finsa_worker:s3cr3t@clickhouse:8123",
                                   "--broker", "k:9092"]


def test_web_entry_builds_the_url_from_the_password_file(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("finsa_web", DOCKER / "finsa_web.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "pw").write_text("p@ss/word\n")
    url = module.clickhouse_url({"FINSA_CLICKHOUSE_URL": "http://finsa_web@ch:8123",
                                 "FINSA_CLICKHOUSE_PASSWORD_FILE": str(tmp_path / "pw")})
    assert url == "http://finsa_web:p%40ss%2Fword@ch:8123"
    from finsa.storage.server_backend import parse_url

    assert "p@ss/word" in parse_url(url)
