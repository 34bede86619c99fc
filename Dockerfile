# fxcore: the Streamlit app and the CUDA training CLI in one image. Usage: docs/deploy.md.
#
# BASE: by default the official PyTorch CUDA 13.0 runtime image, pinned to the torch release in
# requirements.txt. It ships torch 2.14.1+cu130 and torchvision 0.29.1+cu130 (the same CUDA 13.0
# wheels PyPI serves for these versions). The host needs an NVIDIA driver that supports CUDA 13.0
# (580 or newer) and the NVIDIA Container Toolkit. Hosts without registry access build on a local
# Debian 12 base made from Debian's archive instead (deploy/make-local-base.sh):
#   docker build --build-arg BASE=fxcore-base:bookworm -t fxcore .
# Either base only has to provide python3 (>= 3.11) with the venv module and pip.
ARG BASE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${BASE}

# PRETRAINED_VGG19=1 bakes torchvision's VGG-19 IMAGENET1K_V1 weights (548 MB) into the image,
# so that `train --pretrained yes` (or auto) works on GPU hosts without internet access.
ARG PRETRAINED_VGG19=0
# UID/GID of the user the container runs as; match the host user that owns ./checkpoints.
ARG APP_UID=1000
ARG APP_GID=1000

# Everything is installed into one venv that also sees the base's own packages
# (--system-site-packages): on the PyTorch base its torch satisfies the pins and is kept, on the
# Debian base pip installs torch from PyPI; either way pip never touches the base's Python, which
# both bases mark externally managed (PEP 668).
# FXCORE_DEVICE=auto: CUDA when the container sees a GPU, else the CPU.
# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning on shared CPUs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    TORCH_HOME=/opt/torch \
    FXCORE_CHECKPOINTS=/app/checkpoints \
    FXCORE_DEVICE=auto \
    OMP_WAIT_POLICY=PASSIVE \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

# --without-pip: the base's pip runs inside the venv (and installs into it), so the venv module
# needs no ensurepip.
RUN python3 -m venv --system-site-packages --without-pip "${VIRTUAL_ENV}"

WORKDIR /app

# Dependencies first, so that code edits reuse this layer.
# requirements.txt pins torch==2.14.1 and torchvision==0.29.1, and the pin wins: the PyTorch base's
# 2.14.1+cu130 builds satisfy it (a local "+cu130" label matches a pin without one), so pip keeps
# them; on another base, or should the base tag and the pin ever differ, pip installs the pinned
# PyPI wheels. The check below prints what the image ended up with and fails on a mismatch.
# Behind a TLS-intercepting proxy, pass its CA bundle as the build secret "ca-certificates"
# (docker build --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt): pip trusts
# it for this step only, and it never lands in a layer.
COPY requirements.txt ./
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then \
        export PIP_CERT=/run/secrets/ca-certificates SSL_CERT_FILE=/run/secrets/ca-certificates; \
    fi \
    && python -m pip install --no-cache-dir -r requirements.txt \
    && python -c "import sys, torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda); sys.exit(0 if (torch.__version__.split('+')[0], torchvision.__version__.split('+')[0]) == ('2.14.1', '0.29.1') else 'torch/torchvision differ from requirements.txt')"

# Non-root user. Ubuntu 24.04 images ship a user "ubuntu" with UID 1000; drop it so that the
# app user can take that UID (the usual UID of the first user on the host).
RUN if id -u ubuntu >/dev/null 2>&1; then userdel ubuntu && rm -rf /home/ubuntu; fi \
    && if ! getent group "${APP_GID}" >/dev/null; then groupadd --gid "${APP_GID}" fxcore; fi \
    && useradd --uid "${APP_UID}" --gid "${APP_GID}" --create-home --shell /usr/sbin/nologin fxcore \
    && mkdir -p "${TORCH_HOME}" /app/checkpoints /data \
    && chown "${APP_UID}:${APP_GID}" "${TORCH_HOME}" /app/checkpoints

# Optional ImageNet weights, downloaded (hash-checked) into $TORCH_HOME/hub/checkpoints, where
# torchvision looks for them; owned by the app user so it can also fetch other weights later.
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && if [ "${PRETRAINED_VGG19}" = "1" ]; then \
        python -c "from torchvision.models import VGG19_Weights; VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)" \
        && chown -R "${APP_UID}:${APP_GID}" "${TORCH_HOME}" \
        && chmod -R a+rX "${TORCH_HOME}"; \
    fi

# The code stays root-owned (read-only for the app); only checkpoints/ is writable.
COPY . .

USER ${APP_UID}:${APP_GID}
VOLUME ["/app/checkpoints", "/data"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).status == 200 else 1)"]

CMD ["streamlit", "run", "app/Home.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
