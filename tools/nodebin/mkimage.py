#!/usr/bin/env python3
"""Write a one-layer OCI image archive (an OCI image layout in a tar) from files.

The real node's tiny images (the pod sandbox ``pause`` image and a busybox
image for tests) are built here because nothing can be pulled from a registry,
and they need nothing but static binaries, so a daemonless builder is not
needed: the layout is a handful of JSON documents around one layer tar. The
output is deterministic (mtime 0, sorted entries) and imports with
``ctr -n k8s.io images import``.

    mkimage.py --name pjo.local/pause:1 --out pause.tar \
        --file /path/to/pause:/pause --entrypoint /pause
    mkimage.py --name pjo.local/busybox:1 --out bb.tar \
        --file /path/busybox:/bin/busybox --link /bin/sh:busybox --cmd /bin/sh
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer_tar(files: list[tuple[str, str]], links: list[tuple[str, str]]) -> bytes:
    """An uncompressed layer: regular files (host src -> image path) and symlinks."""
    buf = io.BytesIO()
    entries: dict[str, tarfile.TarInfo] = {}
    payload: dict[str, bytes] = {}
    for src, dest in files:
        data = Path(src).read_bytes()
        info = tarfile.TarInfo(dest.lstrip("/"))
        info.size, info.mode = len(data), 0o755
        entries[info.name], payload[info.name] = info, data
    for dest, target in links:
        info = tarfile.TarInfo(dest.lstrip("/"))
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        entries[info.name] = info
    dirs = {"tmp", "etc", "proc", "sys", "dev", "var", "var/run", "run"}
    for name in entries:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            _add(tar, info)
        for name in sorted(entries):
            _add(tar, entries[name], payload.get(name))
    return buf.getvalue()


def image_archive(
    name: str, layer: bytes, entrypoint: list[str], cmd: list[str], user: str = ""
) -> bytes:
    """The OCI layout tar: oci-layout, index.json (named), manifest, config, layer."""
    gz = gzip.compress(layer, mtime=0)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint or None,
            "Cmd": cmd or None,
            "User": user,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
        "history": [{"created_by": "tools/nodebin/mkimage.py"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **blob(json.dumps(config, sort_keys=True).encode())},
        "layers": [{"mediaType": OCI_LAYER, **blob(gz)}],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **blob(json.dumps(manifest, sort_keys=True).encode()),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name,
                },
            }
        ],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in [
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index, sort_keys=True).encode()),
            *((f"blobs/sha256/{d.split(':', 1)[1]}", b) for d, b in sorted(blobs.items())),
        ]:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            _add(tar, info, data)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="image reference, e.g. pjo.local/pause:1")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--file", action="append", default=[], help="HOST_SRC:IMAGE_PATH")
    p.add_argument("--link", action="append", default=[], help="IMAGE_PATH:TARGET (symlink)")
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--user", default="")
    a = p.parse_args(argv)
    files = [tuple(f.split(":", 1)) for f in a.file]
    links = [tuple(link.split(":", 1)) for link in a.link]
    layer = layer_tar(files, links)  # type: ignore[arg-type]
    a.out.write_bytes(image_archive(a.name, layer, a.entrypoint, a.cmd, a.user))


if __name__ == "__main__":
    main()
