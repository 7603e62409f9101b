# syntax=docker/dockerfile:1
# finsa worker image. Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t finsa-worker:0.1.0 .
# (worker.Dockerfile.dockerignore keeps the context to what `pip install .` needs.)

# --- build: a virtualenv holding finsa with the worker's extras only -------------------------
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
    && /opt/finsa/bin/pip install --no-cache-dir ".[stream,storage]"

# --- runtime: the interpreter, the virtualenv, a non-root user ----------------------------
FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="finsa-worker" \
      org.opencontainers.image.source="deploy/docker/worker.Dockerfile" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/finsa /opt/finsa
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin finsa \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/finsa
ENV PATH=/opt/finsa/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --chmod=0755 deploy/docker/worker-entrypoint.sh /usr/local/bin/finsa-worker
USER 10001:10001
WORKDIR /var/lib/finsa
# `--web-port 8600` serves /healthz (the store answers) on the container's loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8600/healthz', timeout=4)"]
ENTRYPOINT ["/usr/local/bin/finsa-worker"]
CMD ["--broker", "kafka-1:9092", "--state-dir", "/var/lib/finsa/worker", "--web-port", "8600"]
