# syntax=docker/dockerfile:1
# The prefect-job-operator image: `docker build -t prefect-job-operator:0.1.0 .`
# Two stages: the builder turns the source into a wheel and installs it with its
# dependencies into /opt/venv; the runtime copies only that venv (no compiler, no pip
# cache, no source tree) and runs as the unprivileged user 10001.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
# Every dependency ships a manylinux wheel for CPython 3.11, so nothing is compiled here.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /wheels/*.whl \
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
