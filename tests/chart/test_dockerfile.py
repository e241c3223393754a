"""Static checks of the Dockerfile and .dockerignore (no container engine runs here)."""

from __future__ import annotations

import re

from conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
DOCKERIGNORE = (REPO / ".dockerignore").read_text().split("\n")


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_multi_stage_builder_and_distroless_runtime():
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert froms[0].startswith("rust:1-bookworm ") and froms[0].endswith(" AS build")
    assert froms[-1] == "gcr.io/distroless/cc-debian12:nonroot"


def test_release_build_is_locked():
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "cargo build --release --locked" in runs


def test_runs_as_non_root_65532():
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users and users[-1] == "65532:65532"
    # The chart's podSecurityContext runs the same identity.
    values = (REPO / "charts" / "velero-hook-injector" / "values.yaml").read_text()
    assert "runAsUser: 65532" in values and "runAsGroup: 65532" in values


def test_binary_from_the_build_stage_is_the_entrypoint():
    ins = instructions()
    assert ("COPY", "--from=build /out/velero-hook-injector /usr/local/bin/velero-hook-injector") in ins
    entry = [rest for word, rest in ins if word == "ENTRYPOINT"]
    assert entry == ['["/usr/local/bin/velero-hook-injector"]']


def test_dockerignore_keeps_build_output_and_secrets_out():
    for pattern in ("target/", ".git/", ".venv/", "*.key", "*.pem"):
        assert pattern in DOCKERIGNORE, pattern
    # Sources the build needs are not excluded (templates/ is compiled in with include_str!).
    for needed in ("src", "templates", "Cargo.toml", "Cargo.lock"):
        assert not any(line.strip().rstrip("/") == needed for line in DOCKERIGNORE), needed
