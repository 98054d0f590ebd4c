"""AWS clients for the commands: the user's credentials and region, any endpoint.

The same code talks to a real account or to moto's server. Which one is decided once
here: an endpoint that is not an AWS host (for example http://127.0.0.1:5000) is an
emulator, and the driver then works around moto's known differences from the service
(see rotation_cli.driver). --emulator / --no-emulator override the guess.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Where AWS's own Secrets Manager endpoints live (commercial, China, ISO partitions, dual-stack).
_AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws", ".c2s.ic.gov", ".sc2s.sgov.gov")
# Precedence of the endpoint variables: boto3's own two, then AWS's rotation-function variable.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL", "SECRETS_MANAGER_ENDPOINT")


def resolve_endpoint(explicit: str | None, env: Mapping[str, str]) -> str | None:
    if explicit:
        return explicit
    for name in ENDPOINT_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def looks_like_emulator(endpoint: str | None) -> bool:
    if not endpoint:
        return False
    host = (urlsplit(endpoint).hostname or "").lower()
    return not any(host.endswith(suffix) or host == suffix[1:] for suffix in _AWS_HOST_SUFFIXES)


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
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)

    @classmethod
    def from_options(
        cls,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        emulator: bool | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Aws:
        env = os.environ if env is None else env
        endpoint = resolve_endpoint(endpoint_url, env)
        chosen = looks_like_emulator(endpoint) if emulator is None else emulator
        return cls(endpoint=endpoint, emulator=chosen, region=region, profile=profile)

    @property
    def session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.Session(profile_name=self.profile, region_name=self.region)
        return self._session

    def _endpoint_for(self, service: str) -> str | None:
        if service == "secretsmanager":
            return self.endpoint
        # boto3 honours AWS_ENDPOINT_URL_<SERVICE> itself; against an emulator every other
        # service goes to the same server (moto serves them all on one port).
        specific = f"AWS_ENDPOINT_URL_{service.upper()}"
        if os.environ.get(specific):
            return None
        return self.endpoint if self.emulator else None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
            self._clients[service] = self.session.client(
                service, endpoint_url=self._endpoint_for(service), config=config
            )
        return self._clients[service]

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
            return f"endpoint {self.endpoint}"
        region = self.region or self.session.region_name or "default region"
        return f"AWS, {region}"


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
