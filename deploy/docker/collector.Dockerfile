# syntax=docker/dockerfile:1
# finsa collector image. Build from the repository root:
#   docker build -f deploy/docker/collector.Dockerfile -t finsa-collector:0.1.0 .
# (collector.Dockerfile.dockerignore keeps the context to what `pip install .` needs.)

# --- build: a virtualenv holding finsa with the collector's extras only -------------------------
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY collectors/ collectors/
COPY streams/ streams/
COPY detectors/ detectors/
COPY storage/ storage/
COPY dashboards/ dashboards/
COPY sector/ sector/
COPY scenario/ scenario/
COPY app/ app/
COPY notify/ notify/
RUN python -m venv /opt/finsa \
    && /opt/finsa/bin/pip install --no-cache-dir ".[collector]"

# --- runtime: the interpreter, the virtualenv, a non-root user ----------------------------
FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="finsa-collector" \
      org.opencontainers.image.source="deploy/docker/collector.Dockerfile" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/finsa /opt/finsa
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin finsa \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/finsa
ENV PATH=/opt/finsa/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# the metering loops, compiled on first use, are cached here (the user has no home folder)
ENV FINSA_KERNEL_CACHE=/var/lib/finsa/kernels
# Live capture as a non-root user: a copy of the interpreter carries cap_net_raw as a file
# capability (honoured only when the container is granted NET_RAW and may gain it:
# allowPrivilegeEscalation / no-new-privileges off); AF_PACKET rings and promiscuous membership
# need nothing more (docs/security.md). pcap files and
# flow export need neither: run `finsa collect` (the plain interpreter) instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin \
    && cp /usr/local/bin/python3.11 /opt/finsa/bin/python3-capture \
    && setcap cap_net_raw+ep /opt/finsa/bin/python3-capture \
    && apt-get purge -y libcap2-bin && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
USER 10001:10001
WORKDIR /var/lib/finsa
# The agent's own Prometheus endpoint (agent.toml: metrics_listen = "127.0.0.1:9464").
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=4)"]
ENTRYPOINT ["/opt/finsa/bin/python3-capture", "-m", "finsa.app.cli", "collect"]
CMD ["--config", "/etc/finsa/agent.toml"]
