#!/usr/bin/env bash
# make docker-check: build the real image and use it as docs/deploy.md says, on a Debian 12 machine
# with root and Debian's packages but no image registry (and no GPU: everything runs on the CPU).
#
#  1. installs docker.io, debootstrap and chromium with apt when missing; starts dockerd when none
#     answers (and stops it at the end; an engine that was already running is left alone);
#  2. makes the local Debian base (deploy/make-local-base.sh);
#  3. builds the image cold (--no-cache) from a copy of the working tree, then again after one
#     source file changed, and checks that every layer up to the code is reused;
#  4. runs the app container as the image's non-root user with ./checkpoints mounted, waits for
#     Docker's "healthy", and loads Home and Feature maps in Chromium through the published port,
#     uploading a real photo to the shipped experiment (deploy/browser_check.py);
#  5. trains a tiny SynthFaces pair inside the container into a mounted folder owned by the image's
#     UID and checks from the host that `fxcore runs` lists it with its epochs;
#  6. runs the train-multi command line (torchrun, 2 processes, --device cpu, gloo) for one epoch;
#  7. prints the figures (build times, image size, time to healthy, health latency, load).
#
# Containers, the image and the temporary folders are removed however it ends, and the build cache
# too when it started the engine itself; the base image stays.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
# Debian's CLI does BuildKit by itself; a newer CLI earlier on PATH may insist on buildx.
DOCKER="${DOCKER:-/usr/bin/docker}"
export DOCKER DOCKER_BUILDKIT=1
BASE_TAG="${BASE_TAG:-fxcore-base:bookworm}"
IMAGE="${IMAGE:-fxcore:docker-check}"
APP_UID=1000 # the image's default user (Dockerfile ARG APP_UID)
EXPERIMENT=celeba-pair
HEALTH_WAIT_S=300 # hang guard only
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
NICE=(nice -n 10)

START=$(date +%s.%N)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK="$(mktemp -d /var/tmp/fxcore-docker-check.XXXXXX)"
APP=""
DOCKERD_PID=""
COLD_ID="" # the cold build's image, left untagged by the rebuild

say() { printf '\n== %s\n' "$*"; }
fail() {
    echo "docker-check: FAILED: $*" >&2
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

cleanup() {
    local rc=$?
    set +e
    if [ -n "$APP" ]; then
        [ "$rc" = 0 ] || "$DOCKER" logs --tail 40 "$APP" >&2
        "$DOCKER" rm -fv "$APP" >/dev/null
    fi
    if [ -n "$DOCKERD_PID" ] || "$DOCKER" info >/dev/null 2>&1; then
        "$DOCKER" image rm -f "$IMAGE" $COLD_ID >/dev/null 2>&1
    fi
    if [ -n "$DOCKERD_PID" ]; then
        # Each cold build leaves ~7 GB of build cache. An engine of its own holds no one else's.
        "$DOCKER" builder prune -af >/dev/null
        echo "docker-check: stopping the dockerd it started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID"
        for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    fi
    rm -rf --one-file-system "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "needs root (apt, dockerd, debootstrap)"
[ -x "$PY" ] || fail "$PY not found: run \`make test\` once to create the venv"

# ------------------------------------------------------------------------------------ 1. engine
say "engine"
missing=()
[ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
    /usr/sbin/dockerd --storage-driver overlay2 >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
    "$DOCKER" info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; fail "dockerd did not start"; }
    echo "started dockerd (pid $DOCKERD_PID)"
else
    echo "using the running engine"
fi
echo "engine $("$DOCKER" version --format '{{.Server.Version}}')"

# -------------------------------------------------------------------------------------- 2. base
say "local base"
t=$(now)
"${NICE[@]}" "$REPO/deploy/make-local-base.sh" "$BASE_TAG"
BASE_S=$(since "$t")

# ------------------------------------------------------------------------------------- 3. build
# A copy of what git would commit (tracked and untracked, not ignored files), so the rebuild can
# change a source file without touching the working tree.
CTX="$WORK/context"
mkdir -p "$CTX"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -c) | tar -C "$CTX" -x
SECRET=()
[ -s "$CA_BUNDLE" ] && SECRET=(--secret "id=ca-certificates,src=$CA_BUNDLE")

build() { # build LOG [extra docker build args]
    local log="$1"
    shift
    "${NICE[@]}" "$DOCKER" build --progress=plain "${SECRET[@]}" --build-arg "BASE=$BASE_TAG" \
        -t "$IMAGE" "$@" "$CTX" >"$log" 2>&1 || { tail -40 "$log" >&2; fail "docker build"; }
}
layers() { "$DOCKER" image inspect --format '{{range .RootFS.Layers}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d'; }

say "cold build (--no-cache, BASE=$BASE_TAG)"
t=$(now)
build "$WORK/build-cold.log" --no-cache
COLD_S=$(since "$t")
grep -E '^#[0-9]+ [0-9.]+ torch ' "$WORK/build-cold.log" | sed 's/^#[0-9]* [0-9.]* /  /'
layers >"$WORK/layers-cold"
COLD_ID=$("$DOCKER" image inspect --format '{{.Id}}' "$IMAGE")
SIZE_B=$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")

say "rebuild after changing fxcore/__init__.py"
echo "# docker-check rebuild $(date -u +%FT%TZ)" >>"$CTX/fxcore/__init__.py"
t=$(now)
build "$WORK/build-warm.log"
WARM_S=$(since "$t")
layers >"$WORK/layers-warm"
n=$(wc -l <"$WORK/layers-cold")
head -n $((n - 1)) "$WORK/layers-cold" | cmp -s - <(head -n $((n - 1)) "$WORK/layers-warm") \
    || fail "the rebuild did not reuse the dependency layers"
[ "$(tail -n1 "$WORK/layers-cold")" != "$(tail -n1 "$WORK/layers-warm")" ] || fail "the code layer did not change"
echo "layers 1..$((n - 1)) of $n reused (base, venv, dependencies, user); only the code layer is new"
grep -q -E '^#[0-9]+ CACHED' "$WORK/build-warm.log" || fail "the rebuild reports no cached step"

# --------------------------------------------------------------------------------------- 4. app
say "app container"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
t=$(now)
APP=$("$DOCKER" run -d -p "127.0.0.1:$PORT:8501" -v "$REPO/checkpoints:/app/checkpoints:ro" "$IMAGE")
ANSWER_S=""
status=""
while [ "$(since "$t" | cut -d. -f1)" -lt "$HEALTH_WAIT_S" ]; do
    if [ -z "$ANSWER_S" ] && [ "$("$PY" -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$PORT/_stcore/health', timeout=2).read().decode())" 2>/dev/null)" = ok ]; then
        ANSWER_S=$(since "$t")
    fi
    status=$("$DOCKER" inspect --format '{{.State.Health.Status}}' "$APP")
    [ "$status" = healthy ] && break
    [ "$status" = unhealthy ] && fail "app container unhealthy"
    [ "$("$DOCKER" inspect --format '{{.State.Running}}' "$APP")" = true ] || fail "app container exited"
    sleep 1
done
[ "$status" = healthy ] || fail "app container not healthy after ${HEALTH_WAIT_S}s"
HEALTHY_S=$(since "$t")
WHO=$("$DOCKER" exec "$APP" id -u)
[ "$WHO" = "$APP_UID" ] || fail "app runs as UID $WHO, expected $APP_UID"
PS_UID=$("$DOCKER" top "$APP" -o pid,uid,args | awk 'NR > 1 && /streamlit/ {print $2; exit}')
[ "$PS_UID" = "$APP_UID" ] || fail "streamlit runs as UID ${PS_UID:-?}, expected $APP_UID"
echo "/_stcore/health answered ok on 127.0.0.1:$PORT after ${ANSWER_S}s; Docker: healthy after ${HEALTHY_S}s"
# Latency of the health endpoint through the published port, and how long Docker's own
# HEALTHCHECK probes took (a python started in the container: it must stay well under --timeout).
LATENCY=$("$PY" - "$PORT" <<'EOF'
import statistics, sys, time, urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}/_stcore/health"
ms = []
for _ in range(20):
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200 and r.read() == b"ok"
    ms.append((time.perf_counter() - t) * 1e3)
print(f"{statistics.median(ms):.1f} ms median, {max(ms):.1f} ms max (20 requests)")
EOF
)
PROBE=$("$DOCKER" inspect --format '{{json .State.Health.Log}}' "$APP" | "$PY" -c '
import json, re, sys
from datetime import datetime

def t(s):  # RFC 3339 with nanoseconds: keep microseconds for fromisoformat
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", s).replace("Z", "+00:00"))

log = json.load(sys.stdin)
assert log and all(p["ExitCode"] == 0 for p in log), log
d = [(t(p["End"]) - t(p["Start"])).total_seconds() for p in log]
print(f"{max(d):.2f} s (longest of {len(d)})")
')
echo "/_stcore/health latency: $LATENCY; HEALTHCHECK probe: $PROBE"
echo "streamlit runs as UID $PS_UID (the image's user), ./checkpoints mounted read-only"
[ -d "$REPO/checkpoints/$EXPERIMENT" ] || fail "checkpoints/$EXPERIMENT not found"
"$PY" "$REPO/deploy/browser_check.py" "http://127.0.0.1:$PORT" "$EXPERIMENT"
"$DOCKER" rm -fv "$APP" >/dev/null
APP=""

# ------------------------------------------------------------------------------------- 5. train
TINY=(--dataset synthfaces --model vgg-mini --image-size 32 --synth-train 64 --epochs 1
    --batch-size 16 --pretrained no --device cpu --no-progress)
RUNS="$WORK/runs"
mkdir -p "$RUNS"
chown "$APP_UID:$APP_UID" "$RUNS"
run_tool() { "${NICE[@]}" "$DOCKER" run --rm --no-healthcheck --shm-size=1g -v "$RUNS:/out" "$IMAGE" "$@"; }
check_runs() { # check_runs EXPERIMENT: both runs listed from the host, epochs 0..1, files by APP_UID
    "$PY" - "$RUNS" "$1" "$APP_UID" <<'EOF'
import json, subprocess, sys
from pathlib import Path

root, name, uid = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = subprocess.run(
    [sys.executable, "-m", "fxcore", "runs", "--root", root, "--json"],
    capture_output=True, text=True, check=True,
).stdout
runs = [r for r in json.loads(out) if r["experiment"] == name]
got = {r["run"]: (r["epochs"], r["state"]) for r in runs}
want = {a: ([0, 1], "finished") for a in ("Smiling", "Male")}
assert got == want, f"fxcore runs lists {got}, expected {want}"
owners = {p.stat().st_uid for p in Path(root, name).rglob("*")}
assert owners == {uid}, f"files owned by UIDs {owners}, expected {uid}"
print(f"host: fxcore runs lists {name}: " + ", ".join(f"{r} epochs 0..1 finished" for r in got) + f"; files owned by UID {uid}")
EOF
}

say "train in the container (SynthFaces, 32 px, 64 images, 1 epoch, CPU)"
t=$(now)
run_tool python -m fxcore train "${TINY[@]}" --out /out/synth | tail -n 2
TRAIN_S=$(since "$t")
check_runs synth

say "train-multi command line (torchrun, 2 processes, --device cpu: gloo)"
t=$(now)
run_tool torchrun --standalone --nproc_per_node=2 -m fxcore train "${TINY[@]}" --out /out/synth-multi 2>&1 \
    | grep -v -E '^W[0-9]{4} .*torch/distributed/run.py' | tail -n 2
MULTI_S=$(since "$t")
check_runs synth-multi

# ------------------------------------------------------------------------------------- 7. report
[ -n "$DOCKERD_PID" ] || echo "(the engine was running already: its build cache is left; docker builder prune frees it)"
say "docker-check passed $(date -u '+%F %H:%M UTC') on $(nproc) CPUs, engine $("$DOCKER" version --format '{{.Server.Version}}')"
echo "  load average (1, 5, 15 min): $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
printf '  %-44s %s\n' \
    "whole check (venv not included)" "$(since "$START") s" \
    "local base (debootstrap + import)" "${BASE_S} s" \
    "cold build (--no-cache)" "${COLD_S} s" \
    "rebuild after one source file changed" "${WARM_S} s (dependency layers reused)" \
    "image size" "$(awk -v b="$SIZE_B" 'BEGIN {printf "%.2f GB", b / 1e9}')" \
    "app: /_stcore/health answers" "${ANSWER_S} s after docker run" \
    "app: Docker reports healthy" "${HEALTHY_S} s after docker run" \
    "app: /_stcore/health latency (host, port)" "$LATENCY" \
    "app: HEALTHCHECK probe in the container" "$PROBE" \
    "train (1 tiny epoch, container start incl.)" "${TRAIN_S} s" \
    "train-multi (torchrun x2, gloo)" "${MULTI_S} s"
