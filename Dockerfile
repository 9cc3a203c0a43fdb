# One image for the operator (`kingest operator`) and the runner Jobs (`kingest ingest`).
#
#   docker build -t ghcr.io/kingest/kingest:0.1.0 .
#
# The build stage installs the hash-pinned runtime dependencies and the kingest wheel into a
# virtualenv; the final stage copies only that virtualenv onto a fresh slim base, so pip,
# setuptools and the build context never reach the image. tests/image runs these same
# commands (outside Docker) and checks the result.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements-build.lock
RUN python -m venv /opt/kingest \
 && /opt/kingest/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY runner runner
COPY operator operator
# Not `python -m pip` here: `-m` puts the current folder on sys.path, where `operator/`
# shadows the standard library's `operator` module.
RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /wheels . \
 && /opt/kingest/bin/pip install --no-deps --no-index /wheels/kingest-*.whl \
 && /opt/kingest/bin/pip uninstall --yes pip setuptools
# Parts of the wheels that nothing in kingest loads: the kubernetes client's asyncio copy
# (kopf talks to the API through aiohttp itself), pyarrow's Flight RPC libraries (no other
# pyarrow library links them), its test suite and C++ headers, botocore's models of the ~440
# AWS services kingest never calls (it calls S3, and STS / SSO / sign-in for the default
# credential chain), pyarrow's Cython sources; the symbol tables pyarrow ships in its
# libraries (strip keeps what the dynamic linker needs); and the bytecode of the kubernetes
# client's generated API and model modules (24 MB; the operator's import of the client
# takes ~0.05 s longer without it, once per start). ~220 MB of the image in all.
# tests/image imports every kingest module and makes each of those clients in the image; the
# cluster tests run it. bench/image.py reports the size.
RUN apt-get update && apt-get install --yes --no-install-recommends binutils \
 && cd /opt/kingest/lib/python3.*/site-packages \
 && rm -rf kubernetes/aio pyarrow/tests pyarrow/include pyarrow/src \
      pyarrow/libarrow_flight.so* pyarrow/libarrow_python_flight.so* pyarrow/_flight.*.so \
      pyarrow/flight.py \
 && find botocore/data -mindepth 1 -maxdepth 1 -type d ! -name s3 ! -name sts ! -name sso \
      ! -name sso-oidc ! -name signin -exec rm -rf {} + \
 && find pyarrow \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete \
 && rm -rf kubernetes/client/api/__pycache__ kubernetes/client/models/__pycache__ \
 && strip --strip-unneeded pyarrow/*.so pyarrow/*.so.*

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kingest" \
      org.opencontainers.image.description="ingestr-compatible data ingestion as a Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/kingest/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/kingest /opt/kingest
# A numeric UID, so `runAsNonRoot: true` can be verified by the kubelet without /etc/passwd.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["kingest"]
CMD ["--help"]
