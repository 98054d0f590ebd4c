"""AWS clients for the commands: the user's credentials and region, any endpoint.

The same code talks to a real account or to moto's server. Which one is decided once
here, and never guessed from an unknown host name:

- an emulator (moto's server) when --emulator says so, or when the endpoint is on this
  machine (loopback: 127.0.0.0/8, ::1, localhost); the driver then works around moto's
  known differences from the service (see rotation_cli.driver);
- the real service otherwise: AWS's own hosts, and any other endpoint too (a VPC
  endpoint's or a proxy's DNS name). --no-emulator also treats a loopback endpoint as the
  real service (a local tunnel to AWS).

Endpoints are checked before anything is called: a URL with a scheme and a host, no user
name or password in it, and plain http only to loopback (credentials and secret values
would otherwise cross the network in clear text). The same rule holds whether the
endpoint comes from --endpoint-url, AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL or
SECRETS_MANAGER_ENDPOINT, and for every other service the commands call.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from rotation_cli.errors import UsageError
from rotation_core.errors import aws_error_code

# AWS's own DNS suffixes when botocore's partition data cannot be read (commercial, China,
# EU sovereign, ISO partitions; dual-stack).
_STATIC_AWS_SUFFIXES = (
    "amazonaws.com",
    "api.aws",
    "amazonaws.com.cn",
    "api.amazonwebservices.com.cn",
    "amazonaws.eu",
    "api.amazonwebservices.eu",
    "c2s.ic.gov",
    "api.aws.ic.gov",
    "sc2s.sgov.gov",
    "api.aws.scloud",
    "cloud.adc-e.uk",
    "api.cloud-aws.adc-e.uk",
    "csp.hci.ic.gov",
    "api.aws.hci.ic.gov",
)
# Precedence of the endpoint variables: boto3's own two, then AWS's rotation-function variable.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL", "SECRETS_MANAGER_ENDPOINT")
ENDPOINT_FLAG = "--endpoint-url"
NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or pass --profile); "
    "an emulator accepts any values"
)
#: The services the commands call, and the functions they run (database look-ups).
SERVICES = ("secretsmanager", "lambda", "logs", "rds", "redshift", "redshift-serverless", "sts", "ec2")


@functools.cache
def aws_dns_suffixes() -> tuple[str, ...]:
    """Every partition's DNS suffixes, from botocore's own data (a VPC endpoint's DNS name,
    vpce-....secretsmanager.REGION.vpce.amazonaws.com, ends with one of them too)."""
    suffixes = set(_STATIC_AWS_SUFFIXES)
    try:
        from botocore.loaders import create_loader

        for partition in create_loader().load_data("partitions").get("partitions", []):
            outputs = partition.get("outputs", {})
            suffixes.update(s for s in (outputs.get("dnsSuffix"), outputs.get("dualStackDnsSuffix")) if s)
    except Exception:  # noqa: BLE001, S110 - the static list stands
        pass
    return tuple(sorted(suffixes))


def is_aws_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == suffix or host.endswith("." + suffix) for suffix in aws_dns_suffixes())


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also written as an IPv4-mapped address) or the name localhost."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def check_endpoint(url: str, source: str) -> str:
    """The endpoint, or UsageError naming where it came from and what is wrong with it."""
    text = url.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        if "://" not in text:
            hint = f"http://{text}" if is_loopback(text.rsplit(":", 1)[0]) else f"https://{text}"
            raise UsageError(f"{source}: endpoint '{text}' has no scheme: write it as {hint}")
        raise UsageError(f"{source}: endpoint '{text}' must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise UsageError(f"{source}: the endpoint must not carry a user name or password")
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise UsageError(f"{source}: endpoint '{text}' has an invalid port") from None
    if not host:
        raise UsageError(f"{source}: endpoint '{text}' has no host")
    if scheme == "http" and not is_loopback(host):
        raise UsageError(
            f"{source}: plain http is allowed only to this machine (127.0.0.1, ::1, localhost); "
            f"use https for {host}: credentials and secret values would cross the network in clear text"
        )
    return text


def resolve_endpoint(explicit: str | None, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(the Secrets Manager endpoint, where it came from), or (None, None): boto3 decides."""
    if explicit is not None:
        return explicit, ENDPOINT_FLAG
    for name in ENDPOINT_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value, name
    return None, None


def endpoint_variable(service: str) -> str:
    """boto3's service-specific endpoint variable (AWS_ENDPOINT_URL_CLOUDWATCH_LOGS for logs)."""
    try:
        from botocore import utils

        name = utils.SERVICE_NAME_ALIASES.get(service, service)
        name = utils.CLIENT_NAME_TO_HYPHENIZED_SERVICE_ID_OVERRIDES.get(name, name)
    except (ImportError, AttributeError):
        name = service
    return "AWS_ENDPOINT_URL_" + name.replace("-", "_").upper()


def parse_arn(arn: str) -> dict[str, str]:
    """partition, service, region, account and resource of an ARN ({} if it is not one)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return {}
    return dict(zip(("arn", "partition", "service", "region", "account", "resource"), parts, strict=True))


def function_name(function_arn: str) -> str:
    """The function's name from its ARN (arn:aws:lambda:region:account:function:NAME[:qualifier])."""
    resource = parse_arn(function_arn).get("resource", "")
    if resource.startswith("function:"):
        return resource.split(":")[1]
    return function_arn


@dataclass
class Aws:
    """The clients one command uses, created on first use."""

    endpoint: str | None = None
    emulator: bool = False
    region: str | None = None
    profile: str | None = None
    #: the region of the secret's ARN, used when neither --region nor the environment names one
    fallback_region: str | None = None
    endpoint_source: str | None = None
    #: botocore's retry mode and attempts (the audit uses "adaptive", which also slows down on throttling)
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = 3
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)

    @classmethod
    def from_options(
        cls,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        emulator: bool | None = None,
        *,
        env: Mapping[str, str] | None = None,
        secret_id: str | None = None,
    ) -> Aws:
        env = os.environ if env is None else env
        endpoint, source = resolve_endpoint(endpoint_url, env)
        if endpoint is not None and source is not None:
            endpoint = check_endpoint(endpoint, source)
        for service in SERVICES[1:]:
            name = endpoint_variable(service)
            if env.get(name, "").strip():
                check_endpoint(env[name], name)
        host = (urlsplit(endpoint).hostname or "") if endpoint else ""
        if emulator is True and not endpoint:
            raise UsageError("--emulator needs an endpoint: --endpoint-url URL (moto's server, for example)")
        if emulator is True and is_aws_host(host):
            raise UsageError(f"--emulator: {host} is an AWS endpoint, not an emulator")
        chosen = is_loopback(host) if emulator is None else emulator
        if region is not None and not region.strip():
            raise UsageError("--region must not be empty")
        fallback = (parse_arn(secret_id).get("region") or None) if secret_id else None
        return cls(
            endpoint=endpoint,
            emulator=chosen,
            region=region,
            profile=profile,
            fallback_region=fallback,
            endpoint_source=source,
        )

    @property
    def session(self) -> Any:
        if self._session is None:
            import boto3
            from botocore.exceptions import ProfileNotFound

            try:
                session: Any = boto3.Session(profile_name=self.profile, region_name=self.region)
                if session.region_name is None:
                    region = os.environ.get("AWS_REGION", "").strip() or self.fallback_region
                    if not region:
                        raise UsageError(
                            "no AWS region: pass --region, or set AWS_DEFAULT_REGION (or AWS_REGION), "
                            "or give the secret's full ARN"
                        )
                    session = boto3.Session(profile_name=self.profile, region_name=region)
            except ProfileNotFound:
                raise UsageError(
                    "the AWS profile named by --profile or AWS_PROFILE is not in the AWS config or credentials file"
                ) from None
            if session.get_credentials() is None:
                raise UsageError(NO_CREDENTIALS)
            self._session = session
        return self._session

    def _endpoint_for(self, service: str) -> str | None:
        if service == "secretsmanager":
            return self.endpoint
        # boto3 honours AWS_ENDPOINT_URL_<SERVICE> itself; against an emulator every other
        # service goes to the same server (moto serves them all on one port).
        if os.environ.get(endpoint_variable(service), "").strip():
            return None
        return self.endpoint if self.emulator else None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(
                retries={"mode": self.retry_mode, "max_attempts": self.max_attempts},
                connect_timeout=5,
                read_timeout=30,
            )
            client = self.session.client(service, endpoint_url=self._endpoint_for(service), config=config)
            # Whatever boto3 chose (a profile's endpoint_url too) obeys the same rule.
            source = (
                self.endpoint_source
                if service == "secretsmanager" and self.endpoint_source
                else f"the {service} endpoint ({endpoint_variable(service)}, AWS_ENDPOINT_URL or the profile)"
            )
            check_endpoint(str(client.meta.endpoint_url), source)
            self._clients[service] = client
        return self._clients[service]

    def elsewhere(self, region: str, session: Any = None) -> Aws:
        """The same endpoint and options in another Region, or with another session (a role
        assumed in another account): new clients, this object unchanged."""
        other = dataclasses.replace(self, region=region, fallback_region=None, _clients={}, _session=None)
        if session is not None:
            other._session = session
        return other

    @property
    def secretsmanager(self) -> Any:
        return self.client("secretsmanager")

    @property
    def lambda_(self) -> Any:
        return self.client("lambda")

    @property
    def logs(self) -> Any:
        return self.client("logs")

    def describe_target(self) -> str:
        if self.endpoint and self.emulator:
            return f"emulator {self.endpoint}"
        if self.endpoint:
            host = urlsplit(self.endpoint).hostname or ""
            kind = "AWS endpoint" if is_aws_host(host) else "endpoint, used as the real service"
            return f"{kind} {self.endpoint}"
        region = self.region or self.session.region_name or "default region"
        return f"AWS, {region}"

    def option_args(self) -> list[str]:
        """The options that reach the same account and endpoint again (for printed commands)."""
        args: list[str] = []
        if self.endpoint:
            args += [ENDPOINT_FLAG, self.endpoint]
            host = urlsplit(self.endpoint).hostname or ""
            if self.emulator != is_loopback(host):
                args.append("--emulator" if self.emulator else "--no-emulator")
        if self.region:
            args += ["--region", self.region]
        if self.profile:
            args += ["--profile", self.profile]
        return args


error_code = aws_error_code


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
