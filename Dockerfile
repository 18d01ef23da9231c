# syntax=docker/dockerfile:1
# The prefect-job-operator image: `docker build -t prefect-job-operator:0.1.0 .`
# (`make image` builds this same file without Docker; see tools/images/build.sh).
# Two stages: the builder installs the hash-locked dependency set (requirements.lock) and
# the operator into /opt/venv; the runtime copies only that venv (no compiler, no pip, no
# source tree) and runs as the unprivileged user 10001.

# Any Debian-based CPython 3.11 image that provides `python` with the venv module.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, so a source change reuses this layer. Every pin carries its hashes and
# only wheels are accepted: nothing unverified is installed and nothing is compiled.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
# The operator's wheel, built with the locked setuptools/wheel (no build isolation: nothing
# unpinned is fetched); then the build tools leave the venv and `pip check` proves it whole.
RUN /opt/venv/bin/pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps --no-index /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes setuptools wheel \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="prefect-job-operator" \
      org.opencontainers.image.description="Runs Prefect 3 work pools as a Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid: the chart's securityContext (runAsUser 10001) and the
# restricted Pod Security Standard (runAsNonRoot) both check the number, not the name.
RUN groupadd --gid 10001 pjo \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pjo
COPY --from=builder /opt/venv /opt/venv
# The root filesystem is read-only in the cluster: never write bytecode at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# /healthz and /metrics (PJO_HEALTH_PORT).
EXPOSE 8080
ENTRYPOINT ["prefect-job-operator"]
CMD ["run"]
