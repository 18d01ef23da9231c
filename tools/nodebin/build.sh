#!/usr/bin/env bash
# Build the test cluster's real node: kubelet (k8s.io/kubernetes v1.36.3, the
# control plane's pin), containerd 2.x (+ containerd-shim-runc-v2, ctr), the
# pod sandbox "pause" program, and two tiny image archives (pause, busybox),
# into a cache directory outside the repository keyed by every input. Debian's
# runc, CNI plugins and iptables are installed when missing. Idempotent: a warm
# cache returns at once. Prints the directory on the last line of stdout.
#
# Kept apart from tools/testbin so the control plane's cache key never changes
# because of the node. Test/demo infrastructure only: nothing here ships.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.36.3
CONTAINERD_VERSION=v2.4.2
DEBIAN_PACKAGES=(runc containernetworking-plugins iptables)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "nodebin: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q -o DPkg::Lock::Timeout=900 --no-install-recommends "${missing[@]}" >&2
fi

key=$( { cat "$here/build.sh" "$here/mkimage.py" "$here"/kubelet/go.mod "$here"/kubelet/go.sum \
          "$here"/kubelet/main.go "$here"/pause/go.mod "$here"/pause/main.go; go version; } \
        | sha256sum | cut -c1-16)
root=${PJO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/prefect-job-operator}
out="$root/nodebin-$key"

if [ -f "$out/.complete" ]; then
  echo "nodebin: cache hit $out" >&2
  echo "$out"
  exit 0
fi
rm -rf "$out.tmp"; mkdir -p "$out.tmp"
step() { # name, command...
  local name=$1 t0; shift; t0=$(date +%s)
  echo "nodebin: building $name ..." >&2
  "$@" >&2
  echo "nodebin: $name took $(( $(date +%s) - t0 ))s" >&2
}
total0=$(date +%s)

LDF="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=36 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.gitCommit=0000000000000000000000000000000000000000 \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
step kubelet bash -c "cd '$here/kubelet' && go build -trimpath -ldflags '$LDF' -o '$out.tmp/kubelet' ."
CLDF="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
step containerd env GOBIN="$out.tmp" go install -trimpath -tags no_btrfs,no_devmapper,no_zfs -ldflags "$CLDF" \
  "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
step pause bash -c "cd '$here/pause' && go build -trimpath -ldflags '-s -w' -o '$out.tmp/pause' ."

# Images: the sandbox image and a busybox image (Debian's static busybox, taken
# from its .deb without installing it on the host).
mkdir -p "$out.tmp/deb"
(cd "$out.tmp/deb" && apt-get download -q busybox-static >&2 && dpkg-deb -x busybox-static_*.deb root)
bb="$out.tmp/deb/root/bin/busybox"
links=()
for a in $("$bb" --list); do [ "$a" = busybox ] || links+=(--link "/bin/$a:busybox"); done
mkdir -p "$out.tmp/images"
python3 "$here/mkimage.py" --name pjo.local/pause:1 --out "$out.tmp/images/pause.tar" \
  --file "$out.tmp/pause:/pause" --entrypoint /pause
python3 "$here/mkimage.py" --name pjo.local/busybox:1 --out "$out.tmp/images/busybox.tar" \
  --file "$bb:/bin/busybox" "${links[@]}" --cmd /bin/sh
rm -rf "$out.tmp/deb"

rm -rf "$out"; mv "$out.tmp" "$out"; touch "$out/.complete"
echo "nodebin: total $(( $(date +%s) - total0 ))s into $out" >&2
echo "$out"
