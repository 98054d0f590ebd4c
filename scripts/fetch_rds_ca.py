"""Put Amazon RDS's CA bundle into the built layer, so TLS to RDS and Aurora verifies out of the box.

    .venv/bin/python scripts/fetch_rds_ca.py [BUILD_DIR]             # `make build` runs it after sam build
    .venv/bin/python scripts/fetch_rds_ca.py --without [BUILD_DIR]   # `make build FETCH_RDS_CA=0`

RDS and Aurora server certificates chain to RDS's own certificate authorities, which the
Lambda runtime's trust store does not hold. AWS publishes them all, for every commercial
Region, as one PEM file on its trust store host (DEFAULT_URL). This script:

- downloads it over HTTPS only, the server's certificate verified against the system store
  (SSL_CERT_FILE, OpenSSL's variable, names another CA file), following no redirect;
- checks that it holds PEM certificates and nothing else, each a CA's, and leaves out the
  expired ones (the bundle keeps retired CAs for a while; no chain can end in one);
- writes what remains atomically to BUILD_DIR/RotationCoreLayer/python/rotation_core/
  rds-ca-bundle.pem, where rotation_core.trust adds it to the system store at run time
  (BUILD_DIR: .aws-sam/build). scripts/deploy_lock.py verify accounts for that file.

Anything wrong (no route to the host, a certificate that does not verify, an HTTP error, a
body that is not such a bundle) is one line on stderr and exit status 1, and nothing is
written: a build asked to include the bundle never ships without it. `--without` builds for
an offline machine on purpose: it removes any bundle a previous build left and says so.

RDS_CA_BUNDLE_URL replaces the URL, https only: AWS GovCloud (US) has its own bundle
(GOVCLOUD_URL), and the tests serve one from a local HTTPS server with a generated CA.
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, override

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUILD = ROOT / ".aws-sam" / "build"
LAYER_ID = "RotationCoreLayer"
DEFAULT_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
GOVCLOUD_URL = "https://truststore.pki.us-gov-west-1.rds.amazonaws.com/global/global-bundle.pem"
# AWS's RDS trust store hosts: commercial Regions, GovCloud (US), and China (regional bundles
# only: https://rds-truststore.s3.cn-north-1.amazonaws.com.cn/<region>/<region>-bundle.pem).
AWS_HOSTS = frozenset(
    {
        *(urllib.parse.urlsplit(url).hostname for url in (DEFAULT_URL, GOVCLOUD_URL)),
        "rds-truststore.s3.cn-north-1.amazonaws.com.cn",
    }
)
URL_VARIABLE = "RDS_CA_BUNDLE_URL"
MAX_BYTES = 4 * 1024 * 1024  # the global bundle is about 170 kB
TIMEOUT = 30
PREFIX = "fetch_rds_ca"


class FetchError(Exception):
    """The bundle cannot be had: the message says why and what to do."""


def _trust() -> Any:
    """rotation_core.trust, from the layer's source (what the bundle must be, and where it goes)."""
    layer = str(ROOT / "layers" / "rotation_core")
    if layer not in sys.path:
        sys.path.append(layer)
    from rotation_core import trust

    return trust


def bundle_url(env: Mapping[str, str]) -> str:
    """The URL to fetch: DEFAULT_URL, or RDS_CA_BUNDLE_URL, which must be an https URL."""
    url = env.get(URL_VARIABLE, "").strip() or DEFAULT_URL
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise FetchError(f"{URL_VARIABLE} must be an https:// URL (the bundle is fetched over verified HTTPS only)")
    if parts.username or parts.password:
        raise FetchError(f"{URL_VARIABLE} must not hold a user name or password")
    return url


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """AWS's trust store answers directly: a redirect could lead anywhere, even to http."""

    @override
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> NoReturn:
        host = urllib.parse.urlsplit(req.full_url).hostname
        raise FetchError(f"{host} answered HTTP {code} (a redirect): not followed")


def download(url: str) -> bytes:
    """The body of a GET of `url` over HTTPS, verified against the system store (SSL_CERT_FILE)."""
    host = urllib.parse.urlsplit(url).hostname
    context = ssl.create_default_context()  # verifies the chain and the host name; reads SSL_CERT_FILE
    opener = urllib.request.build_opener(_RefuseRedirects(), urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, headers={"User-Agent": "secrets-manager-rotation fetch_rds_ca"})  # noqa: S310 - https only, checked
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            if response.status != 200:
                raise FetchError(f"{host} answered HTTP {response.status}, not the bundle")
            body: bytes = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{host} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise FetchError(
                f"the certificate of {host} did not verify ({reason.verify_message}): the bundle is fetched over "
                "verified HTTPS only (SSL_CERT_FILE names the CA file to verify with)"
            ) from None
        if isinstance(reason, ssl.SSLError):
            raise FetchError(f"TLS with {host} failed ({reason.reason or reason})") from None
        raise FetchError(
            f"cannot reach {host} ({reason}); on a machine without a route to it, `make build FETCH_RDS_CA=0` "
            "builds without the bundle (then set DbCaBundle for RDS and Aurora: docs/tls.md)"
        ) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise FetchError(f"cannot fetch from {host} ({type(exc).__name__}: {exc})") from None
    if len(body) > MAX_BYTES:
        raise FetchError(f"{host} answered more than {MAX_BYTES} bytes: not an RDS CA bundle")
    return body


def target(build: Path) -> Path:
    """Where the bundle goes in the built layer (which must exist: sam build made it)."""
    trust = _trust()
    destination: Path = build / LAYER_ID / Path(*trust.BUNDLE_IN_LAYER)
    if not (destination.parent / "__init__.py").is_file():
        raise FetchError(f"no built layer in {build / LAYER_ID} (run sam build first)")
    return destination


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step: a reader sees the old file or the new one."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)  # public certificates, read by the function
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def fetch(build: Path, env: Mapping[str, str], now: float | None = None) -> str:
    """Download, check and write the bundle; returns what to print. FetchError: nothing written."""
    url = bundle_url(env)
    destination = target(build)
    host = urllib.parse.urlsplit(url).hostname
    body = download(url)
    try:
        certificates = _trust().parse_ca_bundle(body)
    except ValueError as exc:
        raise FetchError(f"what {host} answered is not a CA bundle: {exc}") from None
    moment = time.time() if now is None else now
    current = [c for c in certificates if c.not_after > moment]
    expired = len(certificates) - len(current)
    if not current:
        raise FetchError(f"every certificate {host} answered has expired: not a usable CA bundle")
    write_atomically(destination, "".join(c.pem for c in current).encode("ascii"))
    note = "" if host in AWS_HOSTS else f" (from {URL_VARIABLE}, not AWS's trust store)"
    left_out = f", {expired} expired left out" if expired else ""
    return f"{len(current)} RDS CA certificates from {url}{note}{left_out} -> {destination}"


def without(build: Path) -> str:
    destination = target(build)
    destination.unlink(missing_ok=True)
    return (
        f"no RDS CA bundle in {build / LAYER_ID} (FETCH_RDS_CA=0): TLS to RDS and Aurora verifies only "
        "with DbCaBundle set (docs/tls.md)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("build", type=Path, nargs="?", default=DEFAULT_BUILD, help="the sam build folder")
    parser.add_argument("--without", action="store_true", help="build without the bundle (remove any left)")
    args = parser.parse_args(argv)
    try:
        message = without(args.build) if args.without else fetch(args.build, os.environ)
    except FetchError as exc:
        print(f"{PREFIX}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the build folder cannot be written
        print(f"{PREFIX}: cannot write into {args.build}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{PREFIX}: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
