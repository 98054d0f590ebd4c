"""Throwaway TLS material for the test database servers.

Everything here is generated on the fly with ``cryptography`` and is only
meant for servers that live for the duration of a test run:

* :func:`generate_server_tls` writes a fresh CA (``ca.pem``) and a server
  certificate signed by it (``server.pem`` / ``server.key``) for
  ``DNS:localhost`` and ``IP:127.0.0.1``.
* :func:`generate_ca` writes the certificate of another, unrelated CA, so a test
  can prove that verifying the server against the wrong CA fails.

The certificates satisfy Python 3.13's ``VERIFY_X509_STRICT`` (which
``ssl.create_default_context()`` now enables): the CA has a critical
basicConstraints and a keyUsage with keyCertSign, every certificate has a
subjectKeyIdentifier, and the leaf has an authorityKeyIdentifier.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TLSFiles", "generate_ca", "generate_server_tls"]

_KEY_BITS = 2048
_VALIDITY = _dt.timedelta(days=30)
_CLOCK_SKEW = _dt.timedelta(days=1)


@dataclass(frozen=True)
class TLSFiles:
    """Paths of the PEM files written by :func:`generate_server_tls`."""

    ca_file: str  # CA certificate (give this to clients as the trust root)
    cert_file: str  # server certificate, signed by the CA
    key_file: str  # server private key, unencrypted PKCS#8, mode 0600


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rotation-tests (throwaway)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity() -> tuple[_dt.datetime, _dt.datetime]:
    now = _dt.datetime.now(_dt.UTC)
    return now - _CLOCK_SKEW, now + _VALIDITY


def _make_ca(common_name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _new_key()
    name = _name(common_name)
    not_before, not_after = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
) -> x509.Certificate:
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    common_name = dns_names[0] if dns_names else (ip_addresses[0] if ip_addresses else "server")
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_before, not_after = _validity()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _write(path: str, data: bytes, mode: int) -> None:
    # Create with the final mode straight away (no window where a key is world-readable).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def generate_server_tls(
    directory: str,
    *,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    ca_common_name: str = "Throwaway Test CA",
) -> TLSFiles:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` (0600) into *directory*.

    The CA's private key is never written anywhere; it is discarded once the
    server certificate is signed.
    """
    ca_key, ca_cert = _make_ca(ca_common_name)
    key = _new_key()
    cert = _make_server_cert(ca_key, ca_cert, key, dns_names, ip_addresses)

    files = TLSFiles(
        ca_file=os.path.join(directory, "ca.pem"),
        cert_file=os.path.join(directory, "server.pem"),
        key_file=os.path.join(directory, "server.key"),
    )
    _write(files.ca_file, _cert_pem(ca_cert), 0o644)
    _write(files.cert_file, _cert_pem(cert), 0o644)
    _write(
        files.key_file,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    return files


def generate_ca(
    directory: str,
    filename: str = "other-ca.pem",
    *,
    common_name: str = "Unrelated Throwaway CA",
) -> str:
    """Write the certificate of a brand-new, unrelated CA and return its path.

    Nothing was ever signed by this CA, so verifying a server against it must fail.
    """
    _key, cert = _make_ca(common_name)
    path = os.path.join(directory, filename)
    _write(path, _cert_pem(cert), 0o644)
    return path
