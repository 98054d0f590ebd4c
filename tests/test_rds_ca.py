"""The Amazon RDS CA bundle: fetched at build time over verified HTTPS only, and trusted at
run time beside the system store.

scripts/fetch_rds_ca.py is run as `make build` runs it, against a local HTTPS server with a
generated authority standing in for AWS's trust store host (RDS_CA_BUNDLE_URL points at it,
SSL_CERT_FILE makes its CA the one to verify with): the bundle lands in the built layer;
plain http, an untrusted server certificate, a redirect, an HTTP error, or a body that is
not PEM CA certificates are refused with one line and exit status 1, and nothing is written.

At run time (rotation_core.trust through settings.load), with no DB_CA_BUNDLE, the
PostgreSQL and MariaDB test servers, whose certificates are signed by a CA that is only in
the "bundle", are accepted when the layer carries that bundle and refused when it does not.
The built layer itself is tested in tests/test_packaging.py.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.tls import generate_ca, generate_server_tls
from rotation_core import UnreachableError, settings, trust
from rotation_core.credentials import DatabaseSecret
from rotation_core.values import Sensitive
from scripts import fetch_rds_ca
from tests.support.ca_server import BundleServer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fetch_rds_ca.py"
BUNDLE_PATH = "/global/global-bundle.pem"


# --------------------------------------------------------------------------
# Helpers


def _pem(path: str) -> bytes:
    return Path(path).read_bytes()


def _subjects(data: bytes) -> list[str]:
    return [certificate.subject for certificate in trust.parse_ca_bundle(data)]


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _expired_authority(directory: Path, name: str = "Expired Throwaway CA") -> tuple[str, str, str]:
    """A CA whose validity ended yesterday, and a server certificate (127.0.0.1) it signed:
    (CA file, certificate file, key file)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = directory / "expired-ca.pem", directory / "expired-server.pem", directory / "expired-server.key"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(files[0]), str(files[1]), str(files[2])


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """A sam build folder with the layer's package, as sam build leaves it."""
    package = tmp_path / "build" / fetch_rds_ca.LAYER_ID / "python" / "rotation_core"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    return tmp_path / "build"


def _written(build: Path) -> Path:
    return build.joinpath(fetch_rds_ca.LAYER_ID, *trust.BUNDLE_IN_LAYER)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    with BundleServer(tmp_path / "trust-store") as running:
        yield running


@pytest.fixture
def authorities(tmp_path: Path) -> bytes:
    """A bundle of two CA certificates, as AWS's holds many."""
    first = generate_ca(str(tmp_path), "first-ca.pem", common_name="Amazon RDS stand-in Root CA")
    second = generate_ca(str(tmp_path), "second-ca.pem", common_name="Amazon RDS stand-in Regional CA")
    return _pem(first) + _pem(second)


def run_fetch(build: Path, url: str, ca_file: str, *args: str) -> subprocess.CompletedProcess[str]:
    """scripts/fetch_rds_ca.py as `make build` runs it, trusting ca_file (SSL_CERT_FILE)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(build.parent),
        "LANG": "C.UTF-8",
        "NO_PROXY": "127.0.0.1,localhost",
        "SSL_CERT_FILE": ca_file,
        fetch_rds_ca.URL_VARIABLE: url,
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, str(build)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --------------------------------------------------------------------------
# Fetching at build time


def test_the_default_url_is_the_global_bundle_of_aws_trust_store() -> None:
    """Documented at https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html
    (Certificate bundles for all AWS Regions)."""
    assert fetch_rds_ca.bundle_url({}) == "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
    assert fetch_rds_ca.bundle_url({"RDS_CA_BUNDLE_URL": fetch_rds_ca.GOVCLOUD_URL}) == fetch_rds_ca.GOVCLOUD_URL


def test_the_bundle_is_fetched_into_the_built_layer(build: Path, server: BundleServer, authorities: bytes) -> None:
    server.answer(BUNDLE_PATH, authorities)
    done = run_fetch(build, server.url(BUNDLE_PATH), server.ca_file)
    assert done.returncode == 0, done.stderr
    written = _written(build)
    assert written == build / "RotationCoreLayer" / "python" / "rotation_core" / "rds-ca-bundle.pem"
    assert (
        _subjects(written.read_bytes())
        == _subjects(authorities)
        == [
            "Amazon RDS stand-in Root CA",
            "Amazon RDS stand-in Regional CA",
        ]
    )
    assert written.stat().st_mode & 0o777 == 0o644
    assert "2 RDS CA certificates" in done.stdout
    assert "not AWS's trust store" in done.stdout, "an overridden URL is said aloud"
    assert server.requests == [BUNDLE_PATH]


def test_plain_http_is_refused_before_any_request(build: Path, tmp_path: Path, authorities: bytes) -> None:
    with BundleServer(tmp_path / "plain", tls=False) as plain:
        plain.answer(BUNDLE_PATH, authorities)
        done = run_fetch(build, plain.url(BUNDLE_PATH), plain.ca_file)
        assert plain.requests == []
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "fetch_rds_ca: RDS_CA_BUNDLE_URL must be an https:// URL (the bundle is fetched over verified HTTPS only)"
    )
    assert not _written(build).exists()


def test_a_server_certificate_from_an_untrusted_authority_is_refused(
    build: Path, server: BundleServer, authorities: bytes, tmp_path: Path
) -> None:
    server.answer(BUNDLE_PATH, authorities)
    unrelated = generate_ca(str(tmp_path), "unrelated.pem")
    done = run_fetch(build, server.url(BUNDLE_PATH), unrelated)
    assert done.returncode == 1
    assert "fetch_rds_ca: the certificate of 127.0.0.1 did not verify" in done.stderr
    assert "Traceback" not in done.stderr
    assert server.requests == [], "nothing was asked over the unverified connection"
    assert not _written(build).exists()


def test_a_server_certificate_for_another_name_is_refused(build: Path, tmp_path: Path, authorities: bytes) -> None:
    (tmp_path / "named").mkdir()
    named = generate_server_tls(str(tmp_path / "named"), dns_names=("truststore.example",), ip_addresses=())
    with BundleServer(tmp_path / "srv", certificate=(named.cert_file, named.key_file)) as other:
        other.answer(BUNDLE_PATH, authorities)
        done = run_fetch(build, other.url(BUNDLE_PATH), named.ca_file)  # a trusted CA, but not for 127.0.0.1
        assert other.requests == []
    assert done.returncode == 1
    assert "fetch_rds_ca: the certificate of 127.0.0.1 did not verify (IP address mismatch" in done.stderr
    assert not _written(build).exists()


def test_a_redirect_is_not_followed(build: Path, server: BundleServer, tmp_path: Path, authorities: bytes) -> None:
    with BundleServer(tmp_path / "plain", tls=False) as plain:
        plain.answer(BUNDLE_PATH, authorities)
        server.answer(BUNDLE_PATH, b"", status=302, headers={"Location": plain.url(BUNDLE_PATH)})
        done = run_fetch(build, server.url(BUNDLE_PATH), server.ca_file)
        assert plain.requests == []
    assert done.returncode == 1
    assert "fetch_rds_ca: 127.0.0.1 answered HTTP 302 (a redirect): not followed" in done.stderr
    assert not _written(build).exists()


def test_an_http_error_is_refused(build: Path, server: BundleServer) -> None:
    done = run_fetch(build, server.url("/global/missing.pem"), server.ca_file)
    assert done.returncode == 1
    assert done.stderr.strip() == "fetch_rds_ca: 127.0.0.1 answered HTTP 404 Not Found"
    assert not _written(build).exists()


def _not_a_bundle(kind: str, tmp_path: Path, authorities: bytes) -> bytes:
    (tmp_path / "server-tls").mkdir()
    tls = generate_server_tls(str(tmp_path / "server-tls"))
    return {
        "an HTML page": b"<html><body>Service Unavailable</body></html>\n",
        "nothing": b"",
        "a server certificate": _pem(tls.cert_file),
        "a CA and a private key": authorities + _pem(tls.key_file),
        "a certificate that does not parse": authorities.replace(b"MII", b"MIJ", 1),
        "a truncated bundle": authorities[: len(authorities) // 2],
        "not text": b"\x30\x82\x01\x0a" + bytes(range(256)),
    }[kind]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("an HTML page", "not only PEM certificates"),
        ("nothing", "no PEM certificate in it"),
        ("a server certificate", "certificate 1 is not a CA certificate"),
        ("a CA and a private key", "block 3 is a PRIVATE KEY, not a certificate"),
        ("a certificate that does not parse", "certificate 1 does not parse"),
        ("a truncated bundle", "not only PEM certificates"),
        ("not text", "not PEM text"),
    ],
)
def test_a_body_that_is_not_ca_certificates_is_refused(
    build: Path, server: BundleServer, authorities: bytes, tmp_path: Path, *, kind: str, expected: str
) -> None:
    earlier = _written(build)
    earlier.write_bytes(authorities)  # a previous build's bundle: left as it was
    server.answer(BUNDLE_PATH, _not_a_bundle(kind, tmp_path, authorities))
    done = run_fetch(build, server.url(BUNDLE_PATH), server.ca_file)
    assert done.returncode == 1
    assert done.stderr.startswith("fetch_rds_ca: what 127.0.0.1 answered is not a CA bundle: ")
    assert expected in done.stderr
    assert earlier.read_bytes() == authorities
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["__init__.py", "rds-ca-bundle.pem"], "no temporary"


def test_expired_authorities_are_left_out_and_a_bundle_of_only_expired_ones_refused(
    build: Path, server: BundleServer, authorities: bytes, tmp_path: Path
) -> None:
    expired, _, _ = _expired_authority(tmp_path / "expired")
    server.answer(BUNDLE_PATH, _pem(expired) + authorities)
    done = run_fetch(build, server.url(BUNDLE_PATH), server.ca_file)
    assert done.returncode == 0, done.stderr
    assert "2 RDS CA certificates" in done.stdout and "1 expired left out" in done.stdout
    assert "Expired Throwaway CA" not in _subjects(_written(build).read_bytes())

    _written(build).unlink()
    server.answer(BUNDLE_PATH, _pem(expired))
    done = run_fetch(build, server.url(BUNDLE_PATH), server.ca_file)
    assert done.returncode == 1
    assert "every certificate 127.0.0.1 answered has expired" in done.stderr
    assert not _written(build).exists()


def test_without_a_built_layer_nothing_is_fetched(tmp_path: Path, server: BundleServer, authorities: bytes) -> None:
    server.answer(BUNDLE_PATH, authorities)
    (tmp_path / "empty").mkdir()
    done = run_fetch(tmp_path / "empty", server.url(BUNDLE_PATH), server.ca_file)
    assert done.returncode == 1
    assert "no built layer in" in done.stderr and "run sam build first" in done.stderr
    assert server.requests == []


def test_building_without_the_bundle_removes_a_stale_one_and_says_so(build: Path, authorities: bytes) -> None:
    _written(build).write_bytes(authorities)
    done = run_fetch(build, "https://unused.invalid/", "/nonexistent", "--without")
    assert done.returncode == 0
    assert not _written(build).exists()
    assert "no RDS CA bundle" in done.stdout and "DbCaBundle" in done.stdout


def test_make_build_fetches_the_bundle_between_sam_build_and_the_lock_check() -> None:
    """The recipe as make would run it (make -n): a failed fetch stops it before the check."""
    lines = subprocess.run(
        ["make", "-n", "build"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    order = [
        next(n for n, line in enumerate(lines) if marker in line)
        for marker in (" build", "scripts/fetch_rds_ca.py", "scripts/deploy_lock.py verify")
    ]
    assert order == sorted(order), lines
    assert "--without" not in lines[order[1]]
    offline = subprocess.run(
        ["make", "-n", "build", "FETCH_RDS_CA=0"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "scripts/fetch_rds_ca.py --without" in offline


# --------------------------------------------------------------------------
# Trusting it at run time


@pytest.fixture
def layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the layer's bundle is looked for (absent until a test writes it), and a
    temporary folder of this test's own for the combined file."""
    bundle = tmp_path / "layer" / trust.BUNDLE_FILENAME
    bundle.parent.mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(trust, "BUNDLED_RDS_CA", str(bundle))
    monkeypatch.setattr(trust, "TMP_DIR", str(tmp_path / "tmp"))
    return bundle


def test_without_the_bundle_the_default_is_the_system_store_as_before(layer: Path, tmp_path: Path) -> None:
    system = generate_ca(str(tmp_path), "system.pem", common_name="System Store Stand-in")
    connection = settings.load({"SSL_CERT_FILE": system}).connection
    assert connection.ca_bundle == system
    assert connection.ca_source == f"the system store ({system})"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_default_trust_is_the_system_store_plus_the_bundle_built_once(layer: Path, tmp_path: Path) -> None:
    system = generate_ca(str(tmp_path), "system.pem", common_name="System Store Stand-in")
    layer.write_bytes(_pem(generate_ca(str(tmp_path), "rds.pem", common_name="RDS Stand-in CA")))
    connection = settings.load({"SSL_CERT_FILE": system}).connection
    assert connection.ca_bundle is not None and connection.ca_bundle != system
    assert _subjects(Path(connection.ca_bundle).read_bytes()) == ["System Store Stand-in", "RDS Stand-in CA"]
    assert connection.ca_source == f"the system store ({system}) and the RDS CA bundle of the layer"
    assert Path(connection.ca_bundle).parent == tmp_path / "tmp"
    assert Path(connection.ca_bundle).stat().st_mode & 0o777 == 0o600

    # Once per execution environment: the next invocations reuse the file...
    first = os.stat(connection.ca_bundle)
    again = settings.load({"SSL_CERT_FILE": system}).connection.ca_bundle
    assert again == connection.ca_bundle and os.stat(again).st_ino == first.st_ino
    assert os.stat(again).st_mtime_ns == first.st_mtime_ns
    # ...unless it went away (a cleaned /tmp).
    Path(again).unlink()
    rebuilt = settings.load({"SSL_CERT_FILE": system}).connection.ca_bundle
    assert rebuilt is not None and _subjects(Path(rebuilt).read_bytes()) == ["System Store Stand-in", "RDS Stand-in CA"]


def test_db_ca_bundle_replaces_the_default_trust(layer: Path, tmp_path: Path) -> None:
    layer.write_bytes(_pem(generate_ca(str(tmp_path), "rds.pem")))
    chosen = generate_ca(str(tmp_path), "chosen.pem")
    connection = settings.load({"DB_CA_BUNDLE": chosen}).connection
    assert connection.ca_bundle == chosen
    assert connection.ca_source == f"DB_CA_BUNDLE={chosen}"


def _login(harness: Any, engine: str) -> DatabaseSecret:
    return DatabaseSecret(
        engine=engine,
        host=harness.info.host,
        port=harness.info.port,
        username=harness.master_user,
        password=Sensitive(harness.master_password),
        dbname=harness.info.dbname if engine == "postgres" else None,
    )


@pytest.mark.parametrize(
    ("fixture", "engine", "engine_class"),
    [("postgres_harness", "postgres", "PostgresEngine"), ("mysql_harness", "mariadb", "MySQLEngine")],
    ids=["postgres", "mariadb"],
)
def test_a_server_signed_by_a_bundled_authority_is_trusted_without_db_ca_bundle(
    request: pytest.FixtureRequest, layer: Path, fixture: str, engine: str, engine_class: str
) -> None:
    """The test server's CA stands in for RDS's: in no system store, only in the bundle."""
    harness = request.getfixturevalue(fixture)
    connector = getattr(harness.module, engine_class)()
    login = _login(harness, engine)

    # No bundle in the layer: the system store alone does not know the server's CA.
    without = settings.load({}).connection
    with pytest.raises(UnreachableError, match=r"TLS|certificate|SSL"):
        connector.connect(login, without)

    # The layer carries a bundle with that CA: verified TLS, host name included.
    layer.write_bytes(_pem(harness.info.ca_file))
    with_bundle = settings.load({}).connection
    assert "the RDS CA bundle of the layer" in with_bundle.ca_source
    conn = connector.connect(login, with_bundle)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()


# --------------------------------------------------------------------------
# What a failure says


def _handshake_error(port: int, ca_file: str, server_hostname: str) -> str:
    """The text of a real verification failure (Python's ssl, as PyMySQL reports it)."""
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            context.wrap_socket(raw, server_hostname=server_hostname).close()
        except ssl.SSLCertVerificationError as exc:
            return str(exc)
    raise AssertionError("the handshake succeeded")


def test_an_untrusted_certificate_names_the_host_what_was_trusted_and_what_to_set(
    server: BundleServer, tmp_path: Path
) -> None:
    cause = _handshake_error(server.port, generate_ca(str(tmp_path)), "127.0.0.1")
    message = trust.describe_tls_failure("db.internal", "the system store (/etc/ssl/cert.pem)", cause)
    assert message.startswith(
        "TLS: the certificate of db.internal is not signed by a trusted authority "
        "(trusted: the system store (/etc/ssl/cert.pem)); set DB_CA_BUNDLE (DbCaBundle) to the PEM file "
        "of the CA that signs it"
    )
    assert message.endswith(f"(cause: {cause})")


def test_a_certificate_for_another_name_says_so(server: BundleServer) -> None:
    cause = _handshake_error(server.port, server.ca_file, "other.example")
    message = trust.describe_tls_failure("other.example", "DB_CA_BUNDLE=/var/task/ca.pem", cause)
    assert message.startswith("TLS: the certificate of other.example does not name that host; put in field 'host'")


def test_an_expired_authority_says_so(tmp_path: Path) -> None:
    ca_file, cert_file, key_file = _expired_authority(tmp_path / "expired")
    with BundleServer(tmp_path / "srv", certificate=(cert_file, key_file)) as expired:
        cause = _handshake_error(expired.port, ca_file, "localhost")
    assert "expired" in cause
    message = trust.describe_tls_failure("localhost", f"DB_CA_BUNDLE={ca_file}", cause)
    assert message.startswith("TLS: the certificate of localhost, or of a CA that signs it, is outside its validity")


def test_an_rds_host_without_the_bundle_is_told_to_build_with_it(
    layer: Path, server: BundleServer, tmp_path: Path
) -> None:
    cause = _handshake_error(server.port, generate_ca(str(tmp_path)), "127.0.0.1")
    host = "mydb.abcdefghijkl.us-east-1.rds.amazonaws.com"
    assert "`make build`" in trust.describe_tls_failure(host, "the system store", cause)
    layer.write_bytes(_pem(server.ca_file))
    assert "`make build`" not in trust.describe_tls_failure(host, "the system store", cause)
    assert "`make build`" not in trust.describe_tls_failure("db.internal", "the system store", cause)


def test_a_hostile_host_or_cause_cannot_forge_lines() -> None:
    message = trust.describe_tls_failure("evil\nINFO forged", "x", "certificate verify failed\r\nINFO forged")
    assert "\n" not in message and "\r" not in message
