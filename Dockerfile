# syntax=docker/dockerfile:1
# Three images from one file:
#   docker build --target service -t seqcast-service .   # flask + gunicorn + onnxruntime, no torch
#   docker build --target trainer -t seqcast-trainer .   # torch (CPU build by default), entrypoint `seqcast`
#   docker build --target proxy -t seqcast-proxy .       # nginx from Debian, in front of the service
# Dependencies are installed from pyproject.toml before any code is copied, so a
# code change rebuilds only the last layers.

FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The dependency list of one extra, read from pyproject.toml (the one source of truth).
COPY scripts/requirements-from-pyproject.py /usr/local/bin/requirements-from-pyproject
COPY pyproject.toml ./

FROM base AS service
RUN python /usr/local/bin/requirements-from-pyproject serve > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
# Only the service package: no training code, no torch in this image.
COPY service/ ./service/
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin seqcast
USER 10001
ENV SEQCAST_MODEL_DIR=/models \
    SEQCAST_BIND=0.0.0.0:8000 \
    PYTHONPATH=/app
EXPOSE 8000
VOLUME ["/models"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["gunicorn", "-c", "service/gunicorn.conf.py", "service:create_app()"]

FROM base AS trainer
# The CPU build of torch by default. TORCH_INDEX_URL picks another index (a CUDA
# one, a mirror); PIP_FIND_LINKS points pip at a folder of local wheels instead.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=""
ENV PIP_FIND_LINKS=${PIP_FIND_LINKS}
RUN if [ -n "$PIP_FIND_LINKS" ]; then \
        pip install "torch==${TORCH_VERSION}"; \
    else \
        pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; \
    fi
RUN python /usr/local/bin/requirements-from-pyproject train serve > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY service/ ./service/
COPY training/ ./training/
COPY configs/ ./configs/
COPY data/ ./data/
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin seqcast \
    && mkdir -p /models /keys && chown seqcast /models /keys
USER 10001
VOLUME ["/models"]
ENTRYPOINT ["seqcast"]
CMD ["--help"]

# The reverse proxy of the Compose stack: Debian's nginx, run as a non-root user
# on port 8000, its configuration filled from the environment at start
# (deploy/proxy-entrypoint.sh; docs/operations.md, "The reverse proxy").
FROM debian:bookworm-slim AS proxy
# hadolint ignore=DL3008  # Debian's stable nginx, security updates included, whatever the point release
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin seqcast
COPY deploy/nginx.conf.template /etc/seqcast/nginx.conf.template
COPY deploy/proxy-entrypoint.sh /usr/local/bin/seqcast-proxy
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000"]
ENTRYPOINT ["seqcast-proxy"]
