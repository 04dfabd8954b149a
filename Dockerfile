# syntax=docker/dockerfile:1
# The agent-gateway sidecar image:  docker build -t agent-gateway:0.1.0 .
#
# Base image pinned by digest: a tag moves with every Python patch release and Debian security update, a digest is
# the exact image that was built and tested. The digest below is python:3.11-slim-bookworm as published on Docker Hub
# (taken from a public record; it could not be pulled from the machine this was written on). Refresh it on purpose,
# to pick up security fixes, with the multi-architecture index digest (what `docker pull` resolves per platform):
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
# and replace it in BASE below (Renovate's and Dependabot's docker updaters propose the same change as a PR).
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies from the lock file, every file checked against its hash (regenerate: see requirements.lock's header
# and the README); this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN python -m venv /opt/agent-gateway \
    && /opt/agent-gateway/bin/pip install --require-hashes -r requirements.lock
# The project itself, without resolving anything again: its dependencies are exactly the locked ones.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN /opt/agent-gateway/bin/pip install --no-deps . \
    && /opt/agent-gateway/bin/pip check

FROM ${BASE}
ARG BASE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="agent-gateway" \
      org.opencontainers.image.description="Sidecar HTTP proxy that enforces contracts on every handoff between AI agents." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE}"
COPY --from=build /opt/agent-gateway /opt/agent-gateway
# A fixed numeric user (Kubernetes' runAsNonRoot can only verify a numeric USER) owning the one writable path.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir -p /var/lib/agent-gateway \
    && chown 10001:10001 /var/lib/agent-gateway
USER 10001:10001
# Settings are AGENT_GATEWAY_* variables (GATEWAY_* is what Kubernetes injects for a Service named "gateway").
# The health listener is on in the image: probes, this HEALTHCHECK and Prometheus need no admin token. The admin API
# keeps its default, 127.0.0.1:9901, and starts only when AGENT_GATEWAY_ADMIN_TOKEN is set. Bytecode was compiled at
# install time, so nothing is written next to the code (read-only root filesystem).
ENV PATH=/opt/agent-gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENT_GATEWAY_STORE__PATH=/var/lib/agent-gateway/gateway.db \
    AGENT_GATEWAY_HEALTH__PORT=9902
EXPOSE 8080 9902
# Exec form, no shell and no curl: Python asks the health listener; an error or a non-2xx answer exits 1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['AGENT_GATEWAY_HEALTH__PORT'] + '/healthz', timeout=2)"]
ENTRYPOINT ["agent-gateway", "serve"]
