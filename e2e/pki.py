"""Certificates for the local control plane, made with the `openssl` command-line tool.

The API server serves TLS and authenticates clients by certificate, the LWS webhook server must be
trusted by the API server, and service-account tokens need a signing key: one throw-away CA per work
directory covers all of it. The `cryptography` package is not a dependency of the project, so this
uses the openssl CLI (argument lists only, never a shell).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError(
            "the openssl command is needed to make certificates (apt-get install openssl)"
        )
    result = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_ca(directory: Path, common_name: str = "breakeven-e2e-ca") -> KeyPair:
    """A self-signed CA (reused if it already exists in `directory`)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = KeyPair(directory / "ca.crt", directory / "ca.key")
    if ca.cert.exists() and ca.key.exists():
        return ca
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
        "-keyout", str(ca.key), "-out", str(ca.cert), "-subj", f"/CN={common_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip
    return ca


def issue(
    ca: KeyPair,
    directory: Path,
    name: str,
    common_name: str,
    organizations: tuple[str, ...] = (),
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
) -> KeyPair:
    """A certificate signed by `ca`, written as <name>.crt / <name>.key in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    subject = "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"
    usages = [u for u, on in (("serverAuth", server), ("clientAuth", client)) if on]
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    sans = [f"DNS:{d}" for d in dns_names] + [f"IP:{ip}" for ip in ip_addresses]
    if sans:
        lines.append(f"subjectAltName={','.join(sans)}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256",
        "-keyout", str(pair.key), "-out", str(csr), "-subj", subject,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-sha256", "-days", "825", "-extfile", str(ext), "-out", str(pair.cert),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()
    return pair


def make_signing_key(directory: Path, name: str = "sa") -> KeyPair:
    """An RSA key pair for service-account tokens: `cert` is the public key PEM."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{name}.pub", directory / f"{name}.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    _openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(pair.key)
    )
    _openssl("pkey", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
    return pair
