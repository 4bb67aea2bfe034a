"""A throw-away PostgreSQL 15 server (Debian's `postgresql` package) on
127.0.0.1, the reference the differential check compares Sluice with."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path(os.environ.get("SLUICE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> bool:
    return (BIN / "initdb").exists() and (BIN / "pg_ctl").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReferencePostgres:
    def __init__(self, options="", hba=None, files=None):
        """`options`: more server settings (`-c k=v ...`); `hba`: the
        pg_hba.conf to use; `files`: name -> bytes written into the server's
        directory (owned by the server, mode 0600), e.g. TLS keys."""
        self.options, self.hba, self.files = options, hba, dict(files or {})
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-refpg-"))
        self.port = _free_port()
        # initdb refuses root: run the server as the package's postgres user.
        self.as_user = ["su", "postgres", "-s", "/bin/sh", "-c"] if os.geteuid() == 0 else None

    @classmethod
    def tls_only(cls, cert: bytes, key: bytes) -> "ReferencePostgres":
        """A server that speaks only TLS on 127.0.0.1 with `cert` and `key`
        (plaintext TCP connections are rejected)."""
        server = cls(
            hba="hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\nlocal all all trust\n",
            files={"server.crt": cert, "server.key": key},
        )
        # The key and certificate paths are relative to the server's directory.
        server.options = f"-c ssl=on -c ssl_cert_file={server.dir}/server.crt -c ssl_key_file={server.dir}/server.key"
        return server

    def _run(self, *args):
        cmd = " ".join(str(a) for a in args)
        full = [*self.as_user, cmd] if self.as_user else ["sh", "-c", cmd]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    def start(self):
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self._run(BIN / "initdb", "-D", self.dir / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C")
        for name, data in self.files.items():
            path = self.dir / name
            path.write_bytes(data)
            path.chmod(0o600)
            if self.as_user:
                shutil.chown(path, "postgres")
        if self.hba is not None:
            (self.dir / "data" / "pg_hba.conf").write_text(self.hba)
        opts = f"'-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c TimeZone=UTC {self.options}'"
        self._run(BIN / "pg_ctl", "-D", self.dir / "data", "-l", self.dir / "log", "-o", opts, "-w", "start")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("reference PostgreSQL did not start")

    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def stop(self):
        try:
            self._run(BIN / "pg_ctl", "-D", self.dir / "data", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def ca_and_leaf(name):
    """A CA and a server certificate for 127.0.0.1 it signed, with the
    server's key: (ca PEM, certificate PEM, key PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, ca):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build(f"{name} CA", f"{name} CA", ca_key.public_key(), ca_key, True)
    leaf = build("catalog", f"{name} CA", key.public_key(), ca_key, False)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca, leaf, key_pem
