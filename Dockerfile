# agent-gateway sidecar image. Build: docker build -t agent-gateway .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir --prefix=/install '.[redis]'

FROM python:3.11-slim
COPY --from=build /install /usr/local
COPY contracts /opt/agent-gateway/contracts
COPY policies /opt/agent-gateway/policies
RUN useradd --system --uid 10001 gateway && mkdir -p /var/lib/agent-gateway && chown gateway /var/lib/agent-gateway
USER 10001
# Settings are AGENT_GATEWAY_* variables: GATEWAY_* is what Kubernetes injects for a Service named "gateway".
ENV AGENT_GATEWAY_STORE__PATH=/var/lib/agent-gateway/gateway.db \
    AGENT_GATEWAY_ADMIN__HOST=0.0.0.0
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=1)"
ENTRYPOINT ["agent-gateway", "serve"]
