#!/usr/bin/env bash
# Build (or reuse from cache) the container images, without a Docker engine:
#
#   tools/images/build.sh [operator] [flow-run]   # default: both
#
# prints one docker-archive path per image asked for, in that order, on stdout (progress goes
# to stderr). The archives load with `kind load image-archive PATH`, `docker load -i PATH` and
# `ctr -n k8s.io images import PATH`.
#
# - operator: the repository's own Dockerfile, tagged with the chart's default image
#   (values.yaml image.repository : Chart.yaml appVersion), so `helm install` with the
#   chart's defaults finds it.
# - flow-run: tools/images/flow-run/Dockerfile, tagged prefecthq/prefect:<v>-python3.11 (the
#   operator's default flow-run image) with the prefect version the tests pin in pyproject.
#
# Both are built FROM a local Debian bookworm base (python3, python3-venv, python-is-python3,
# passwd, ca-certificates, tini) made by mmdebstrap, passed as --build-arg PYTHON_IMAGE: no
# registry is contacted. Users building with Docker get the Dockerfile's upstream default
# (python:3.11-slim-bookworm) instead; the Dockerfile's steps are the same.
#
# Each archive is cached in $PJO_CACHE_DIR (default ~/.cache/prefect-job-operator) under
# images-<name>-<key>/, the key hashing every input (the Dockerfile, pyproject.toml, the
# lock file, README.md, operator/, the base's inputs and this script); a warm cache answers at
# once. buildah runs daemonless with the vfs driver and chroot isolation, its store under
# the cache dir; RUN steps use the host network (PyPI, for the locked wheels). Missing Debian
# tools (buildah, mmdebstrap, and skopeo, umoci, runc for the tests) are installed with
# apt-get. Needs root.
#
# Test/demo/build infrastructure: nothing here is part of the operator.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=${PJO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/prefect-job-operator}

SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,passwd,ca-certificates,tini
# Leave documentation, manuals and translations out of the base, as the slim images do.
BASE_DPKG_OPTS=(
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
)

log() { echo "images: $*" >&2; }
sha() { sha256sum | cut -c1-16; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(operator flow-run)
for t in "${targets[@]}"; do
  case $t in operator | flow-run) ;; *) echo "usage: $0 [operator] [flow-run]" >&2; exit 2 ;; esac
done

# --- names and keys -------------------------------------------------------------------
chart="$repo/charts/prefect-job-operator"
op_repo=$(awk '/^image:/{f=1} f && /^  repository:/{print $2; exit}' "$chart/values.yaml")
op_tag=$(awk -F'"' '/^appVersion:/{print $2; exit}' "$chart/Chart.yaml")
prefect_version=$(grep -o '"prefect==[0-9][0-9.]*"' "$repo/pyproject.toml" | tr -d '"' | cut -d= -f3)
[ -n "$op_repo" ] && [ -n "$op_tag" ] && [ -n "$prefect_version" ] || {
  echo "images: cannot read the image names from the chart and pyproject.toml" >&2; exit 1; }
op_ref="$op_repo:$op_tag"
flow_ref="docker.io/prefecthq/prefect:$prefect_version-python3.11"

# How an image is built (the build_image function below) is an input of every image.
script_key=$(sed -n '/^build_image() {/,/^}/p' "$here/build.sh" | sha)
# The base's inputs: the suite, the packages, and the two functions below that make it.
base_key=$( { printf '%s\n' "$SUITE" "$BASE_PACKAGES" "${BASE_DPKG_OPTS[*]}" "${PJO_DEBIAN_MIRROR:-}"
              sed -n '/^make_base_rootfs() {/,/^}/p; /^import_base() {/,/^}/p' "$here/build.sh"; } | sha)
tree_hash() { # the content and names of every file under $1 that a build copies
  (cd "$repo" && find "$1" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
     ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum)
}
context_hash() { # the Dockerfile and every path the .dockerignore allow-list lets in
  (cd "$repo" && sha256sum Dockerfile .dockerignore)
  local p
  while read -r p; do
    if [ -d "$repo/$p" ]; then tree_hash "$p"; else (cd "$repo" && sha256sum "$p"); fi
  done < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' "$repo/.dockerignore")
}
op_key=$( { echo "$script_key $base_key $op_ref"; context_hash; } | sha)
flow_key=$( { echo "$script_key $base_key $flow_ref"; tree_hash tools/images/flow-run; } | sha)
base_ref="localhost/pjo-python-base:$base_key"

archive_for() { # target -> archive path
  case $1 in
    operator) echo "$root/images-operator-$op_key/prefect-job-operator.tar" ;;
    flow-run) echo "$root/images-flow-run-$flow_key/prefect-flow-run.tar" ;;
  esac
}
all_cached() {
  local t
  for t in "${targets[@]}"; do [ -f "$(dirname "$(archive_for "$t")")/.complete" ] || return 1; done
}

if all_cached; then
  for t in "${targets[@]}"; do log "cache hit $t"; archive_for "$t"; done
  exit 0
fi

# --- tools ----------------------------------------------------------------------------
# buildah and mmdebstrap build; skopeo, umoci and runc run the images in the tests.
need=()
for tool in buildah mmdebstrap skopeo umoci runc; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >&2
fi

mkdir -p "$root"
# One build at a time per cache dir (tests, `make image` and a concurrent shell share it).
exec 9>"$root/images.lock"
flock 9
if all_cached; then  # someone else built it while we waited
  for t in "${targets[@]}"; do log "cache hit $t"; archive_for "$t"; done
  exit 0
fi

store="$root/buildah"
B=(buildah --root "$store/storage" --runroot "$store/run" --storage-driver vfs)
total0=$(date +%s)
step() { # name, command...
  local name=$1 t0; shift; t0=$(date +%s)
  log "$name ..."
  "$@" >&2
  log "$name took $(( $(date +%s) - t0 ))s"
}

# --- the base -------------------------------------------------------------------------
base_dir="$root/images-base-$base_key"
make_base_rootfs() {
  rm -rf "$base_dir.tmp"; mkdir -p "$base_dir.tmp"
  # No mirror argument: mmdebstrap uses Debian's default mirror plus the updates and security
  # suites of a stable release. PJO_DEBIAN_MIRROR (a URL or a sources file) overrides it.
  # shellcheck disable=SC2086
  mmdebstrap --variant=minbase --mode=root --format=tar --include="$BASE_PACKAGES" \
    "${BASE_DPKG_OPTS[@]}" "$SUITE" "$base_dir.tmp/rootfs.tar" ${PJO_DEBIAN_MIRROR:-}
  rm -rf "$base_dir"; mv "$base_dir.tmp" "$base_dir"; touch "$base_dir/.complete"
}
import_base() { # rootfs tarball -> image in the store, configured like python:3.11-slim
  local c
  c=$("${B[@]}" from scratch)
  "${B[@]}" add "$c" "$base_dir/rootfs.tar" / >/dev/null
  "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' \
    --label "org.opencontainers.image.description=Debian $SUITE minbase + $BASE_PACKAGES" "$c"
  "${B[@]}" commit --rm "$c" "$base_ref"
}
[ -f "$base_dir/.complete" ] || step "base rootfs (mmdebstrap $SUITE)" make_base_rootfs
"${B[@]}" inspect --type image "$base_ref" >/dev/null 2>&1 || step "base image $base_ref" import_base

# --- images ---------------------------------------------------------------------------
build_image() { # name, ref, context, dockerfile, out archive, extra build args...
  local name=$1 ref=$2 context=$3 dockerfile=$4 out=$5; shift 5
  local dir; dir=$(dirname "$out")
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
  # RUN steps trust what this host trusts (a TLS-intercepting proxy's CA, say): its bundle is
  # mounted for the build only, never committed to the image.
  local ca=() bundle=/etc/ssl/certs/ca-certificates.crt
  [ -f "$bundle" ] && ca=(--volume "$bundle:$bundle:ro")
  step "$name image $ref" "${B[@]}" build --layers --pull=never --isolation chroot \
    --network host "${ca[@]}" --build-arg "PYTHON_IMAGE=$base_ref" \
    "$@" -t "$ref" -f "$dockerfile" "$context"
  # docker-archive: what `kind load image-archive`, `docker load` and `ctr images import`
  # all accept, with the reference stored in it.
  step "$name archive" "${B[@]}" push --quiet \
    "$ref" "docker-archive:$dir.tmp/$(basename "$out"):$ref"
  echo "$ref" > "$dir.tmp/ref"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"; touch "$dir/.complete"
}

for t in "${targets[@]}"; do
  out=$(archive_for "$t")
  [ -f "$(dirname "$out")/.complete" ] && continue
  case $t in
    operator) build_image operator "$op_ref" "$repo" "$repo/Dockerfile" "$out" ;;
    flow-run) build_image flow-run "$flow_ref" "$here/flow-run" "$here/flow-run/Dockerfile" "$out" \
                --build-arg "PREFECT_VERSION=$prefect_version" ;;
  esac
done
# Working containers of failed builds would pile up in the vfs store.
"${B[@]}" rm --all >/dev/null 2>&1 || true
log "total $(( $(date +%s) - total0 ))s"
for t in "${targets[@]}"; do archive_for "$t"; done
