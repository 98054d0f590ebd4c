"""What a database connection trusts, and what to say when a server's certificate fails.

Amazon RDS and Aurora server certificates chain to RDS's own certificate authorities
(rds-ca-rsa2048-g1, rds-ca-rsa4096-g1, rds-ca-ecc384-g1, ...), which no system trust store
holds, Amazon Linux's (the Lambda runtime's) included. AWS publishes them as one PEM bundle
on its trust store host (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem).
`make build` downloads it over verified HTTPS into the built layer, beside this module
(scripts/fetch_rds_ca.py); on Lambda that is /opt/python/rotation_core/rds-ca-bundle.pem.

The default trust, when DB_CA_BUNDLE is not set, is the system store plus that bundle:
psycopg2 takes one root certificate file, so both are written once per execution
environment into one PEM file in /tmp, which PostgreSQL (sslrootcert) and MySQL (an
SSLContext's cafile) are both given. Without the bundle (running from source, the tests, a
build made with FETCH_RDS_CA=0) the default is the system store alone, as before.

Redshift does not use this: redshift-connector verifies against the system store plus the
Redshift CAs it ships, and Redshift's certificates come from Amazon Trust Services (ACM),
whose roots every system store holds.

Standard library only, imported lazily: this module is read on every cold start.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

logger = logging.getLogger(__name__)

BUNDLE_FILENAME = "rds-ca-bundle.pem"
#: Where the built layer carries AWS's RDS CA bundle: beside this module.
BUNDLED_RDS_CA = os.path.join(os.path.dirname(os.path.abspath(__file__)), BUNDLE_FILENAME)
#: The same file, relative to the built layer's folder (scripts/fetch_rds_ca.py writes it
#: there; scripts/deploy_lock.py accounts for it).
BUNDLE_IN_LAYER = ("python", "rotation_core", BUNDLE_FILENAME)
#: Where the combined file (system store + RDS CAs) is written; None: the temporary folder.
TMP_DIR: str | None = None

#: Host name suffixes of RDS and Aurora endpoints (commercial and China partitions).
RDS_HOST_SUFFIXES = (".rds.amazonaws.com", ".rds.amazonaws.com.cn")


@dataclass(frozen=True)
class Trust:
    ca_file: str | None  # the PEM file to verify against; None: the driver's default store
    source: str  # what it holds, for messages: "the system store (...) and the RDS CA bundle"


# (system file, its size and mtime, bundle, its size and mtime) -> the combined file
_combined: dict[tuple[object, ...], str] = {}


def _signature(path: str) -> tuple[str, int, int]:
    stat = os.stat(path)
    return path, stat.st_size, stat.st_mtime_ns


def _combine(system_ca_file: str | None, bundle: str) -> str:
    """One PEM file holding the system store and the bundle, written once per execution
    environment (and again only if it was removed or an input changed)."""
    key = (_signature(system_ca_file) if system_ca_file else None, _signature(bundle))
    cached = _combined.get(key)
    if cached is not None and os.path.isfile(cached):
        return cached
    import tempfile

    parts = []
    for path in (system_ca_file, bundle):
        if path:
            with open(path, "rb") as source:
                parts.append(source.read().rstrip(b"\n") + b"\n")
    # mkstemp: a new file of our own (O_EXCL, mode 0600), never one another user prepared.
    descriptor, combined = tempfile.mkstemp(prefix="rotation-ca-", suffix=".pem", dir=TMP_DIR)
    try:
        with os.fdopen(descriptor, "wb") as target:
            target.write(b"".join(parts))
    except BaseException:
        os.unlink(combined)
        raise
    _combined[key] = combined
    return combined


def default_trust(system_ca_file: str | None) -> Trust:
    """The trust of a connection when DB_CA_BUNDLE is not set: the system store (its file,
    or None when none was found) plus the RDS CA bundle when the built layer carries one."""
    system = f"the system store ({system_ca_file})" if system_ca_file else "the driver's default store"
    if not os.path.isfile(BUNDLED_RDS_CA):
        return Trust(system_ca_file, system)
    try:
        combined = _combine(system_ca_file, BUNDLED_RDS_CA)
    except OSError as exc:
        # /tmp full or unwritable: the system store alone still verifies everything it did;
        # an RDS server then fails verification with a message that says what to set.
        logger.warning(
            "cannot combine the system store with the RDS CA bundle: using the system store alone",
            extra={"error": exc.strerror or type(exc).__name__},
        )
        return Trust(system_ca_file, system)
    if system_ca_file is None:
        return Trust(combined, "the RDS CA bundle of the layer (no system store file was found)")
    return Trust(combined, f"{system} and the RDS CA bundle of the layer")


# Driver texts (OpenSSL through libpq, PyMySQL and ssl) by what went wrong.
_NAME_MISMATCH = ("does not match host name", "hostname mismatch", "ip address mismatch", "not valid for")
_EXPIRED = ("certificate has expired", "certificate is not yet valid")
_UNTRUSTED = (
    "certificate verify failed",
    "unable to get local issuer",
    "unable to get issuer",
    "self-signed certificate",
    "self signed certificate",
    "unknown ca",
    "root certificate",
)


def describe_tls_failure(host: str, ca_source: str, cause: str) -> str:
    """One line for a TLS failure while connecting to `host`: what was wrong with the
    server's certificate, what the function trusted (`ca_source`, i.e. the
    ConnectionSettings' ca_source), what to set, and the driver's own text (`cause`, already
    masked of any password). Engines raise UnreachableError with it."""
    from rotation_core.errors import printable
    from rotation_core.settings import DB_CA_BUNDLE

    where = printable(host, 255)
    text = cause.lower()
    trusted = ca_source or "the CA file the function was given"
    if any(marker in text for marker in _NAME_MISMATCH):
        message = (
            f"the certificate of {where} does not name that host; put in field 'host' a name the certificate "
            "was issued for (for RDS and Aurora, the instance or cluster endpoint, not an IP address or an alias)"
        )
    elif any(marker in text for marker in _EXPIRED):
        message = (
            f"the certificate of {where}, or of a CA that signs it, is outside its validity period; renew it "
            "(RDS and Aurora: modify the instance to a current CA, e.g. rds-ca-rsa2048-g1), or check the clock"
        )
    elif any(marker in text for marker in _UNTRUSTED):
        message = (
            f"the certificate of {where} is not signed by a trusted authority (trusted: {trusted}); "
            f"set {DB_CA_BUNDLE} (DbCaBundle) to the PEM file of the CA that signs it"
        )
        if host.lower().rstrip(".").endswith(RDS_HOST_SUFFIXES) and not os.path.isfile(BUNDLED_RDS_CA):
            message += ", or deploy a build of `make build`, which puts AWS's RDS CA bundle in the layer"
    else:
        message = f"the connection to {where} could not be secured"
    return f"TLS: {message} (cause: {printable(cause)})"


# --------------------------------------------------------------------------
# What a CA bundle may hold (scripts/fetch_rds_ca.py and scripts/deploy_lock.py)


@dataclass(frozen=True)
class CaCertificate:
    pem: str  # the certificate alone, as a PEM block ending in a newline
    subject: str  # its common name (or the whole subject when it has none)
    not_after: float  # end of validity, seconds since the epoch


def parse_ca_bundle(data: bytes) -> list[CaCertificate]:
    """The certificates of a PEM CA bundle, each checked to be a CA certificate. ValueError,
    with one line that says what is wrong, for anything else: not ASCII text, text outside
    the certificate blocks, another kind of PEM block (a key), a block that does not parse, a
    certificate that is not a CA's, or no certificate at all."""
    import base64
    import binascii
    import re
    import ssl

    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not PEM text (it holds bytes that are not ASCII)") from None
    block = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
    outside = block.sub("", text).strip()
    if outside:
        raise ValueError(f"not only PEM certificates: it holds other text ({outside[:40]!r}...)")
    found = []
    for number, match in enumerate(block.finditer(text), 1):
        if match.group(1) != "CERTIFICATE":
            raise ValueError(f"block {number} is a {match.group(1)}, not a certificate")
        try:
            der = base64.b64decode("".join(match.group(2).split()), validate=True)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_verify_locations(cadata=der)
        except (binascii.Error, ssl.SSLError, ValueError):
            raise ValueError(f"certificate {number} does not parse") from None
        # get_ca_certs lists only the CA certificates (OpenSSL's X509_check_ca) of the store.
        if context.get_ca_certs(binary_form=True) != [der]:
            raise ValueError(f"certificate {number} is not a CA certificate")
        (info,) = context.get_ca_certs()
        # subject: ((("commonName", "..."),), ...), one tuple of (key, value) pairs per RDN
        names = [str(pair[1]) for rdn in info["subject"] for pair in rdn if pair[0] == "commonName"]
        name = names[0] if names else str(info["subject"])
        encoded = base64.b64encode(der).decode("ascii")
        lines = "".join(encoded[i : i + 64] + "\n" for i in range(0, len(encoded), 64))
        pem = f"-----BEGIN CERTIFICATE-----\n{lines}-----END CERTIFICATE-----\n"
        found.append(CaCertificate(pem, name, ssl.cert_time_to_seconds(str(info["notAfter"]))))
    if not found:
        raise ValueError("no PEM certificate in it")
    return found
