"""The LWS webhook's serving certificate, made with the `openssl` command-line tool.

kwokctl makes the control plane's CA, serving, admin and service-account keys (pki/ in its cluster
directory); the API server must also trust the LWS webhook server, so its certificate is issued here
from kwokctl's CA. The `cryptography` package is not a dependency of the project, so this uses the
openssl CLI (argument lists only, never a shell).
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
