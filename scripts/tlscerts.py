#!/usr/bin/env python3
"""Throwaway certificate authorities for tests: a CA, server and client certificates.

A ``CertAuthority`` lives in one directory (``ca.pem``, ``ca-key.pem``) and
issues short-lived ECDSA P-256 certificates: server certificates whose
subjectAltName names IP addresses and DNS names (Go, and so dockerd, ignores
the CN), and client certificates for mutual TLS.  Each issued pair is a
directory laid out as the Docker CLI expects for ``DOCKER_CERT_PATH``:
``ca.pem``, ``cert.pem``, ``key.pem``.

Callers:
  * ``scripts/dockerhosts.py`` (``start_hosts(..., tls=True)``) for daemons
    started with ``--tlsverify``;
  * tests that need a server or client certificate (tests/test_tlscerts.py,
    tests/test_dockertls.py);
  * by hand, through the CLI::

        python scripts/tlscerts.py up --dir DIR [--server 127.0.0.5 ...] [--client NAME ...]
        python scripts/tlscerts.py down --dir DIR

    ``up`` makes (or reuses) the CA in DIR, issues a server pair in
    ``DIR/server-<IP or name>/`` per ``--server`` and a client pair in
    ``DIR/<NAME>/`` per ``--client``, and prints each pair's directory;
    ``down`` removes DIR.

The certificates are made with the ``openssl`` command (Debian: ``openssl``,
present on any Debian machine with ``ca-certificates``), not the
``cryptography`` package, which the project does not depend on.  Stdlib only.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MARKER = ".tlscerts"  # a directory holding this file may be removed wholesale
DAYS = 30
CURVE = "prime256v1"

# Extensions, as openssl config sections. The CA carries the key identifiers
# and the critical basicConstraints that strict verifiers (Python 3.13's
# VERIFY_X509_STRICT, Go) insist on.
_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {san}
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class CertPair:
    """A certificate, its key and the CA that signed it, in one directory."""

    dir: Path

    @property
    def cert(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def key(self) -> Path:
        return self.dir / "key.pem"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"


def openssl_path() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise RuntimeError("openssl not found (Debian: apt-get install openssl)")
    return path


class CertAuthority:
    """A CA whose key sits in ``dir``; issues pairs into subdirectories of ``dir``."""

    def __init__(self, dir: str | Path):
        self.dir = Path(dir).absolute()

    @property
    def cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def key(self) -> Path:
        return self.dir / "ca-key.pem"

    @classmethod
    def create(cls, dir: str | Path | None = None, name: str = "brokerctl test CA") -> CertAuthority:
        """A new CA in ``dir`` (default: a fresh /tmp/bkca-*); reuses one already there."""
        if dir is None:
            dir = tempfile.mkdtemp(prefix="bkca-", dir="/tmp")
        ca = cls(dir)
        ca.dir.mkdir(parents=True, exist_ok=True)
        (ca.dir / MARKER).touch()
        if ca.cert.exists() and ca.key.exists():
            return ca
        _run_openssl(ca.dir, [
            "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}",
            "-nodes", "-keyout", str(ca.key), "-out", str(ca.cert), "-days", str(DAYS),
            "-subj", f"/CN={name}", "-extensions", "ca"])
        ca.key.chmod(0o600)
        return ca

    def server(self, name: str, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> CertPair:
        """A server pair in ``dir/name`` valid for the given IP addresses and DNS names."""
        if not ips and not dns:
            raise ValueError("a server certificate needs at least one IP address or DNS name")
        for ip in ips:
            ipaddress.ip_address(ip)  # ValueError names the bad address
        san = ", ".join([f"IP:{ip}" for ip in ips] + [f"DNS:{d}" for d in dns])
        return self._issue(name, "server", cn=(dns or ips)[0], san=san)

    def client(self, name: str = "client") -> CertPair:
        """A client pair in ``dir/name`` for mutual TLS (CN ``name``)."""
        return self._issue(name, "client", cn=name, san="")

    def remove(self) -> None:
        """Delete the CA's directory with everything it issued (only one ``create`` made)."""
        if (self.dir / MARKER).exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def _issue(self, name: str, kind: str, cn: str, san: str) -> CertPair:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad pair name {name!r}: one plain path component expected")
        pair = CertPair(self.dir / name)
        pair.dir.mkdir(parents=True, exist_ok=True)
        csr = pair.dir / "req.csr"
        _run_openssl(self.dir, [
            "req", "-new", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-nodes",
            "-keyout", str(pair.key), "-out", str(csr), "-subj", f"/CN={cn}"], san=san)
        # A random serial: certificates from two CAs made in the same second
        # must not share issuer-and-serial, or clients may cache the wrong one.
        _run_openssl(self.dir, [
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(DAYS),
            "-out", str(pair.cert), "-extensions", kind], san=san, extfile=True)
        csr.unlink()
        pair.key.chmod(0o600)
        shutil.copyfile(self.cert, pair.ca)
        return pair


def _run_openssl(cwd: Path, args: list[str], san: str = "", extfile: bool = False) -> None:
    # Our own config file: the machine's openssl.cnf may add extensions that
    # clash with ours (or, on minimal images, be missing altogether).
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", dir=cwd, delete=False) as f:
        f.write(_CONFIG.format(san=san or "DNS:unused.invalid"))
        config = f.name
    try:
        cmd = [openssl_path(), *args, "-extfile" if extfile else "-config", config]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                              env={**os.environ, "OPENSSL_CONF": config})
    finally:
        os.unlink(config)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed (exit {proc.returncode}): {proc.stderr.strip()}")


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="make (or reuse) a CA in DIR and issue pairs")
    up.add_argument("--dir", help="CA dir (default: a new /tmp/bkca-*)")
    up.add_argument("--server", action="append", default=[], metavar="IP_OR_NAME",
                    help="issue a server pair for this IP address or DNS name (repeatable)")
    up.add_argument("--client", action="append", default=[], metavar="NAME",
                    help="issue a client pair named NAME (repeatable)")
    down = sub.add_parser("down", help="remove a CA dir made by `up`")
    down.add_argument("--dir", required=True)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "down":
            if not (Path(args.dir) / MARKER).exists():
                print(f"tlscerts: {args.dir} was not made by tlscerts", file=sys.stderr)
                return 1
            CertAuthority(args.dir).remove()
            return 0
        ca = CertAuthority.create(args.dir)
        print(f"tlscerts: CA {ca.cert}", file=sys.stderr)
        for target in args.server:
            try:
                ipaddress.ip_address(target)
                pair = ca.server(f"server-{target}", ips=(target,))
            except ValueError:
                pair = ca.server(f"server-{target}", dns=(target,))
            print(pair.dir)
        for name in args.client:
            print(ca.client(name).dir)
    except (RuntimeError, ValueError) as e:
        print(f"tlscerts: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
