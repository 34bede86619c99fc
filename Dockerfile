# fxcore: the Streamlit app and the CUDA training CLI in one image. Usage: docs/deploy.md.
#
# Base: the official PyTorch CUDA 13.0 runtime image, pinned to the torch release in
# requirements.txt. It ships torch 2.14.1+cu130 and torchvision 0.29.1+cu130 (the same CUDA 13.0
# wheels PyPI serves for these versions) in the system Python 3.12 of Ubuntu 24.04, without conda.
# The project needs Python >= 3.11; CI tests it on 3.11. The host needs an NVIDIA driver that
# supports CUDA 13.0 (580 or newer) and the NVIDIA Container Toolkit.
FROM pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime

# PRETRAINED_VGG19=1 bakes torchvision's VGG-19 IMAGENET1K_V1 weights (548 MB) into the image,
# so that `train --pretrained yes` (or auto) works on GPU hosts without internet access.
ARG PRETRAINED_VGG19=0
# UID/GID of the user the container runs as; match the host user that owns ./checkpoints.
ARG APP_UID=1000
ARG APP_GID=1000

# PIP_BREAK_SYSTEM_PACKAGES: the base's Python is marked externally managed (PEP 668) although
# the image is disposable and torch itself was pip-installed into it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONPATH=/app \
    TORCH_HOME=/opt/torch \
    FXCORE_CHECKPOINTS=/app/checkpoints \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

WORKDIR /app

# Dependencies first, so that code edits reuse this layer.
# requirements.txt pins torch==2.14.1 and torchvision==0.29.1, and the pin wins: the base's
# 2.14.1+cu130 builds satisfy it (a local "+cu130" label matches a pin without one), so pip keeps
# them; should the base tag and the pin ever differ, pip replaces torch with the pinned PyPI wheel.
# The check below prints what the image ended up with and fails the build on a mismatch.
COPY requirements.txt ./
RUN python -m pip install --no-cache-dir -r requirements.txt \
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
RUN if [ "${PRETRAINED_VGG19}" = "1" ]; then \
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
