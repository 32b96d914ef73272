# Production image: one server node. Point it at MongoDB (replica set) and Redis with MONGO_URL and
# REDIS_URL; without MONGO_URL it starts the embedded store under /app/var (dev/demo only).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PAIRLY_HOST=0.0.0.0 \
    PAIRLY_PORT=8080

WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 libvpx7 libsrtp2-1 curl \
 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY config ./config
COPY server ./server
COPY rest ./rest
COPY billing ./billing
COPY signaling ./signaling
RUN pip install .

# A fixed uid/gid: Kubernetes' runAsNonRoot can only verify a numeric user (deploy/k8s/deployment.yaml).
RUN groupadd --system --gid 10001 pairly \
 && useradd --system --uid 10001 --gid 10001 --home /app pairly \
 && mkdir -p /app/var && chown pairly /app/var
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
STOPSIGNAL SIGTERM
CMD ["python", "-m", "server"]
