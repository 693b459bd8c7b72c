# syntax=docker/dockerfile:1
# One image for the API (the default command) and the image workers (`python run_workers.py`).
#
#   docker build -t product-catalogue .
#   docker build --build-arg PILLOW_SIMD_AVX2=0 -t product-catalogue .   # CPUs without AVX2
#
# Stage 1 builds the virtual environment, with Pillow-SIMD compiled from source; stage 2 is a slim
# runtime with only the shared libraries that Pillow-SIMD links against, running as a non-root user.

FROM python:3.11.13-slim-bookworm AS build

ARG PILLOW_SIMD_VERSION=12.1.1.post0
# 1 (default): compile Pillow-SIMD with -mavx2, its fast path. 0: without AVX2, for older CPUs on
# which an AVX2 build dies with "Illegal instruction" (`grep -c avx2 /proc/cpuinfo` prints 0 there).
ARG PILLOW_SIMD_AVX2=1

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential libjpeg62-turbo-dev zlib1g-dev libpng-dev libwebp-dev liblcms2-dev \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv

WORKDIR /src
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Pillow-SIMD last, without dependencies, forcing over any plain Pillow something pulled in
# (both install the same `PIL` package; plain Pillow is the slow one).
RUN case "$PILLOW_SIMD_AVX2" in \
        1) cflags="-mavx2" ;; \
        0) cflags="" ;; \
        *) echo "PILLOW_SIMD_AVX2 must be 0 or 1, not '$PILLOW_SIMD_AVX2'" >&2; exit 1 ;; \
    esac \
 && pip uninstall -y pillow \
 && CC="cc $cflags" pip install --no-deps --force-reinstall "pillow-simd==$PILLOW_SIMD_VERSION"
COPY scripts/check_pillow_simd.py scripts/
RUN python scripts/check_pillow_simd.py


FROM python:3.11.13-slim-bookworm AS runtime

# The shared libraries Pillow-SIMD was linked against, nothing to build with.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libjpeg62-turbo zlib1g libpng16-16 libwebp7 libwebpmux3 libwebpdemux2 liblcms2-2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 catalogue \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin catalogue

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    WORKER_METRICS_HOST=0.0.0.0

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY config/ config/
COPY db/ db/
COPY catalogue/ catalogue/
COPY server/ server/
COPY compressor/ compressor/
COPY webhooks/ webhooks/
COPY run_api.py run_workers.py ./
COPY scripts/check_pillow_simd.py scripts/
# Proves the runtime libraries are all present (no extension module misses a shared library); the
# default local image storage (./data/images) must be writable by the non-root user.
RUN if ldd /opt/venv/lib/python3.11/site-packages/PIL/*.so | grep "not found"; then exit 1; fi \
 && python scripts/check_pillow_simd.py \
 && mkdir -p /app/data/images \
 && chown -R 10001:10001 /app/data

USER 10001:10001

# 8080: the API (API_PORT); 9100: the workers' /metrics and /healthz (WORKER_METRICS_PORT).
EXPOSE 8080 9100

# Checks the API; docker-compose.yml gives the workers their own check on WORKER_METRICS_PORT.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('API_PORT', '8080') + '/healthz', timeout=4)"

CMD ["python", "run_api.py"]
