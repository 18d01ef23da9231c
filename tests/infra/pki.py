"""PKI and kubeconfigs for the local test control plane.

Test infrastructure only. Everything is generated fresh per cluster (a few
hundred milliseconds with EC keys) so no secret ever lives in the repository.
The admin identity is in ``system:masters``: it bypasses RBAC and may
impersonate anyone, which is how the RBAC tests act as a ServiceAccount.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=7)
_APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_APISERVER_IPS = ("127.0.0.1", "198.19.0.1")  # 198.19.0.1: the `kubernetes` Service

# kubeconfig name -> (user CN, groups). The bootstrap RBAC policy binds the
# system:kube-* user names, so the controllers run with their real permissions.
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("test-admin", ("system:masters",)),
    "kcm": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kwok": ("test-kwok", ("system:masters",)),
    # The real kubelet: a node identity only (the apiserver runs the Node authorizer).
    "real-node": ("system:node:real-node", ("system:nodes",)),
    # The apiserver's client cert towards kubelets (`kubectl logs` through the real node).
    "apiserver-kubelet": ("kube-apiserver-kubelet-client", ("system:masters",)),
}


@dataclass(frozen=True)
class Pki:
    """Paths of the files written by :func:`write_pki`."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def apiserver_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def client_crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def serving_crt(self, name: str) -> Path:
        return self.dir / f"{name}-serving.crt"

    def serving_key(self, name: str) -> Path:
        return self.dir / f"{name}-serving.key"


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def write_pki(directory: Path) -> Pki:
    """Write CA, apiserver serving cert, client certs and the SA keypair."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    pki = Pki(directory)

    ca_key = _ec_key()
    ca_name = _name("pjo-test-ca")
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(pki.ca_crt, _cert_pem(ca_cert))
    _write(pki.ca_key, _key_pem(ca_key), private=True)

    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in _APISERVER_DNS]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _APISERVER_IPS]
    api_key = _ec_key()
    api_cert = _issue(
        ca_key,
        ca_name,
        _name("kube-apiserver"),
        api_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=sans,
    )
    _write(pki.apiserver_crt, _cert_pem(api_cert))
    _write(pki.apiserver_key, _key_pem(api_key), private=True)

    # The real node's serving cert is issued when its address is known (write_serving_cert).

    for name, (cn, groups) in CLIENTS.items():
        key = _ec_key()
        cert = _issue(
            ca_key, ca_name, _name(cn, groups), key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
        )
        _write(pki.client_crt(name), _cert_pem(cert))
        _write(pki.client_key(name), _key_pem(key), private=True)

    # ServiceAccount tokens: RSA, the algorithm every client library accepts.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki.sa_key, _key_pem(sa_key), private=True)
    _write(
        pki.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


def write_serving_cert(pki: Pki, name: str, ips: list[str]) -> None:
    """A node's HTTPS serving cert (kubectl logs: apiserver -> node) for ``ips``, CA-signed."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_name = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes()).subject
    key = _ec_key()
    sans: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(name)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = _issue(
        ca_key, ca_name, _name(name), key, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans
    )
    _write(pki.serving_crt(name), _cert_pem(cert))
    _write(pki.serving_key(name), _key_pem(key), private=True)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(pki: Pki, name: str, server: str, path: Path) -> Path:
    """A kubeconfig with everything embedded, so it survives being copied."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "pjo-test",
                "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": _b64(pki.client_crt(name)),
                    "client-key-data": _b64(pki.client_key(name)),
                },
            }
        ],
        "contexts": [{"name": "pjo-test", "context": {"cluster": "pjo-test", "user": name}}],
        "current-context": "pjo-test",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def write_webhook_tls(directory: Path, ip: str = "127.0.0.1") -> bytes:
    """A fresh CA and a serving certificate for `ip`, as a mounted kubernetes.io/tls Secret
    looks (tls.crt, tls.key, ca.crt in `directory`); returns the CA PEM for a caBundle."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key = _ec_key()
    ca_name = _name("pjo-test-webhook-ca")
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = _ec_key()
    cert = _issue(
        ca_key,
        ca_name,
        _name("pjo-webhook"),
        key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=[x509.IPAddress(ipaddress.ip_address(ip))],
    )
    _write(directory / "tls.crt", _cert_pem(cert))
    _write(directory / "tls.key", _key_pem(key), private=True)
    _write(directory / "ca.crt", _cert_pem(ca_cert))
    return _cert_pem(ca_cert)
