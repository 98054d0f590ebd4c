"""The Target (tests/engines.py) of the API key function, against tests/support/issuer.py.

Two strategies, one per mode of the secret:

generated
    The function makes the key; a service of the issuer (a realm) accepts the keys the
    secret holds as AWSCURRENT, AWSPENDING and AWSPREVIOUS, read from Secrets Manager as a
    real service would, and the secret's verify URL is that service.
issued
    The issuer issues and revokes the keys through its admin API; the admin token lives in
    its own secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import urllib3

from rotation_core import RotationFunction, rotation_handler
from tests.engines import unique
from tests.support import functions, leaks
from tests.support.issuer import Issuer

STAGES = ("AWSCURRENT", "AWSPENDING", "AWSPREVIOUS")
KEY_FORMAT = {"prefix": "sk_test_", "length": 40, "alphabet": "base62"}


class ApiKeyTarget:
    name = "api_key"
    strategies = ("generated", "issued")

    def __init__(self, issuer: Issuer, sm: Any) -> None:
        self.issuer = issuer
        self.sm = sm
        self.module = functions.load("api_key")
        self._remember_generated_keys()
        # A client of its own for the services of the issuer, so that their reads are never
        # counted as the function's calls.
        import boto3

        self.service_sm = boto3.client("secretsmanager", endpoint_url=sm.meta.endpoint_url)
        self.admin_arn = self.admin_secret()
        self.http = urllib3.PoolManager()

    def _remember_generated_keys(self) -> None:
        key_format = self.module.KeyFormat
        generate = key_format.generate
        if getattr(generate, "remembers", False):
            return

        def remembering(self: Any) -> Any:
            key = generate(self)
            leaks.remember(key.reveal(), "api key")
            return key

        remembering.remembers = True  # type: ignore[attr-defined]
        key_format.generate = remembering

    def admin_secret(self, **change: Any) -> str:
        doc = {"token": self.issuer.admin_token, "hosts": ["127.0.0.1"], **change}
        return str(self.sm.create_secret(Name=unique("api-admin"), SecretString=json.dumps(doc))["ARN"])

    # -- Target ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {"HTTP_READ_TIMEOUT": "3", "HTTP_TIME_BUDGET": "10"}

    def make_handler(self) -> RotationFunction:
        return rotation_handler(self.module.ApiKeyRotation())

    def provider(self, label_prefix: str | None = None, *, idempotent: bool = True) -> dict[str, Any]:
        url = self.issuer.url
        issue: dict[str, Any] = {
            "url": f"{url}/admin/keys",
            "body": {"name": "{label}"},
            "key_path": "data.secret",
            "id_path": "data.id",
        }
        if idempotent:
            issue["idempotency_header"] = "Idempotency-Key"
        provider: dict[str, Any] = {
            "admin_secret_arn": self.admin_arn,
            "admin_auth": {"type": "bearer"},
            "issue": issue,
            "list": {
                "url": f"{url}/admin/keys?prefix={{label_prefix}}",
                "items_path": "data",
                "id_path": "id",
                "label_path": "name",
            },
            "revoke": {"url": f"{url}/admin/keys/{{key_id}}"},
            "verify": {"url": f"{url}/v1/me", "auth": {"type": "header", "name": "X-Api-Key"}},
        }
        if label_prefix is not None:
            provider["label_prefix"] = label_prefix
        return provider

    def generated_secret(self, realm: str) -> dict[str, Any]:
        key = self.module.KeyFormat(**KEY_FORMAT).generate().reveal()
        return {
            "mode": "generated",
            "key": key,
            "generate": dict(KEY_FORMAT),
            "verify": {
                "url": f"{self.issuer.url}/services/{realm}/me",
                "auth": {"type": "header", "name": "X-Api-Key"},
            },
            "note": "fields the function does not know are kept",
        }

    def issued_secret(self, label_prefix: str, *, idempotent: bool = True) -> dict[str, Any]:
        initial = self.issuer.issue(label_prefix + "initial")
        return {
            "mode": "issued",
            "key": initial.secret,
            "key_id": initial.id,
            "provider": self.provider(label_prefix, idempotent=idempotent),
            "note": "fields the function does not know are kept",
        }

    def new_secret(self, sm: Any, strategy: str) -> tuple[str, dict[str, Any]]:
        if strategy == "generated":
            realm = unique("svc")
            doc = self.generated_secret(realm)
            arn = str(sm.create_secret(Name=unique("api-key"), SecretString=json.dumps(doc))["ARN"])
            self.issuer.add_realm(realm, lambda: self.held_keys(arn))
            return arn, doc
        doc = self.issued_secret(unique("app") + "-")
        return str(sm.create_secret(Name=unique("api-key"), SecretString=json.dumps(doc))["ARN"]), doc

    def held_keys(self, arn: str) -> Iterator[str]:
        """What a service that accepts the secret's keys reads from Secrets Manager."""
        versions = self.service_sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
        for version, stages in versions.items():
            if set(stages) & set(STAGES):
                try:
                    value = self.service_sm.get_secret_value(SecretId=arn, VersionId=version)["SecretString"]
                    yield json.loads(value)["key"]
                except (self.service_sm.exceptions.ResourceNotFoundException, ValueError, KeyError):
                    continue

    def works(self, doc: dict[str, Any]) -> bool:
        url = doc["verify"]["url"] if doc.get("mode") == "generated" else f"{self.issuer.url}/v1/me"
        response = self.http.request("GET", url, headers={"X-Api-Key": doc["key"]}, timeout=5.0, retries=False)
        return response.status == 200

    def check_rotated(self, strategy: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        assert after["key"] != before["key"]
        assert self.works(before), "the key applications held until now works until the next rotation"
        assert after["note"] == before["note"]
        if strategy == "generated":
            assert self.module.KeyFormat(**KEY_FORMAT).matches(self.module.Sensitive(after["key"]))
            return
        prefix = after["provider"]["label_prefix"]
        alive = {key.id for key in self.issuer.live(prefix)}
        assert alive == {before["key_id"], after["key_id"]}, "alive at the provider: AWSCURRENT and AWSPREVIOUS only"
        assert after["previous_key_id"] == before["key_id"]

    def fault_points(self, handler: RotationFunction) -> list[tuple[object, str]]:
        return [(handler.rotation.http, "request")]  # type: ignore[attr-defined]
