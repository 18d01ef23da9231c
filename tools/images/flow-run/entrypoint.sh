#!/usr/bin/env bash
# The flow-run image's entrypoint, as prefecthq/prefect's: install EXTRA_PIP_PACKAGES if
# asked, then run the container's arguments (the Job's `prefect flow-run execute`).
set -e

if [ -n "${EXTRA_PIP_PACKAGES:-}" ]; then
  echo "+pip install $EXTRA_PIP_PACKAGES"
  # shellcheck disable=SC2086  # a space-separated list, as upstream
  pip install $EXTRA_PIP_PACKAGES
fi

if [ $# -eq 0 ]; then
  exec prefect version
fi
exec "$@"
