#!/usr/bin/env bash
# Build the test control plane (kube-apiserver/-controller-manager/-scheduler
# multicall, etcd, kwok, helm) from pinned Go modules into a cache directory
# outside the repository, keyed by every input. Idempotent: a warm cache
# returns at once. Prints the directory on the last line of stdout.
#
# Test/demo infrastructure only: nothing here is part of the operator.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.36.3
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.21.4
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

key=$( { cat "$here/build.sh" "$here"/k8s/go.mod "$here"/k8s/go.sum "$here"/k8s/main.go \
          "$here"/etcd/go.mod "$here"/etcd/go.sum "$here"/etcd/main.go; go version; } | sha256sum | cut -c1-16)
root=${PJO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/prefect-job-operator}
out="$root/testbin-$key"

if [ -f "$out/.complete" ]; then
  echo "testbin: cache hit $out" >&2
  echo "$out"
  exit 0
fi
mkdir -p "$out.tmp"
step() { # name, command...
  local name=$1 t0; shift; t0=$(date +%s)
  echo "testbin: building $name ..." >&2
  "$@" >&2
  echo "testbin: $name took $(( $(date +%s) - t0 ))s" >&2
}
total0=$(date +%s)

LDF="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=36 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.gitCommit=0000000000000000000000000000000000000000 \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
step k8s-testbin bash -c "cd '$here/k8s' && go build -trimpath -ldflags '$LDF' -o '$out.tmp/k8s-testbin' ."
for n in kube-apiserver kube-controller-manager kube-scheduler; do ln -sf k8s-testbin "$out.tmp/$n"; done
step etcd bash -c "cd '$here/etcd' && go build -trimpath -ldflags '-s -w' -o '$out.tmp/etcd' ."
step kwok env GOBIN="$out.tmp" go install -trimpath -ldflags '-s -w' "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
step helm env GOBIN="$out.tmp" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

# kwok's upstream stages, read from the module cache (never copied into the repo).
stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  cat "$stages/$f"; echo '---'
done > "$out.tmp/kwok-upstream-stages.yaml"

rm -rf "$out"; mv "$out.tmp" "$out"; touch "$out/.complete"
echo "testbin: total $(( $(date +%s) - total0 ))s into $out" >&2
echo "$out"
