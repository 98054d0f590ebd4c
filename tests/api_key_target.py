"""The Target (tests/engines.py) of the API key function, against tests/support/issuer.py.

Two strategies, one per mode of the secret:

generated
    The function makes the key; a service of the issuer (a realm) accepts the keys the
    secret holds as AWSCURRENT, AWSPENDING and AWSPREVIOUS, read from Secrets Manager as a
    real service would; the secret names a verify secret that describes that service.
issued
    The issuer issues and revokes the keys through its admin API; the admin token and the
    provider's description live in the admin secret, which the rotated secret names.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3

from rotation_core import RotationFunction, rotation_handler
from tests.engines import unique
from tests.support import functions, leaks
from tests.support.issuer import Issuer

STAGES = ("AWSCURRENT", "AWSPENDING", "AWSPREVIOUS")
KEY_FORMAT = {"prefix": "sk_test_", "length": 40, "alphabet": "base62"}
FOLDER = Path(__file__).resolve().parents[1] / "functions" / "api_key"


def load_module() -> Any:
    """functions/api_key/app.py, its folder on the path as Lambda has it (/var/task), so
    that app.py imports the modules beside it (as rotation_cli's loader does)."""
    if str(FOLDER) not in sys.path:
        sys.path.append(str(FOLDER))
    return functions.load("api_key")


class ApiKeyTarget:
    name = "api_key"
    strategies = ("generated", "issued")

    def __init__(self, issuer: Issuer, sm: Any) -> None:
        self.issuer = issuer
        self.sm = sm
        self.module = load_module()
        self.config = sys.modules["provider_config"]  # the secrets' formats
        self._remember_generated_keys()
        # A client of its own for the services of the issuer, so that their reads are never
        # counted as the function's calls.
        import boto3

        self.service_sm = boto3.client("secretsmanager", endpoint_url=sm.meta.endpoint_url)
        self.host = f"127.0.0.1:{issuer.port}"  # what the trusted secrets' "hosts" list
        self._admin_arns: dict[bool, str] = {}
        self._verify_urls: dict[str, str] = {}  # verify secret ARN -> the service's URL
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

    # -- Target ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {"HTTP_READ_TIMEOUT": "3", "HTTP_TIME_BUDGET": "10"}

    def make_handler(self) -> RotationFunction:
        return rotation_handler(self.module.ApiKeyRotation())

    # -- the trusted secrets ----------------------------------------------------------------
    def description(self, *, idempotent: bool = True, url: str | None = None) -> dict[str, Any]:
        """The provider's description, as the admin secret holds it (field 'provider')."""
        url = url or self.issuer.url
        issue: dict[str, Any] = {
            "url": f"{url}/admin/keys",
            "body": {"name": "{label}"},
            "key_path": "data.secret",
            "id_path": "data.id",
        }
        if idempotent:
            issue["idempotency_header"] = "Idempotency-Key"
        return {
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

    def admin_doc(self, *, idempotent: bool = True, **change: Any) -> dict[str, Any]:
        doc = {
            "token": self.issuer.admin_token,
            "hosts": [self.host],
            "provider": self.description(idempotent=idempotent),
            **change,
        }
        return {k: v for k, v in doc.items() if v is not None}

    def admin_secret(self, *, idempotent: bool = True, **change: Any) -> str:
        """A new admin secret (change: fields to replace; None removes one)."""
        doc = self.admin_doc(idempotent=idempotent, **change)
        return str(self.sm.create_secret(Name=unique("api-admin"), SecretString=json.dumps(doc))["ARN"])

    def shared_admin_secret(self, *, idempotent: bool = True) -> str:
        if idempotent not in self._admin_arns:
            self._admin_arns[idempotent] = self.admin_secret(idempotent=idempotent)
        return self._admin_arns[idempotent]

    def verify_secret(self, realm: str, **change: Any) -> str:
        url = f"{self.issuer.url}/services/{realm}/me"
        doc = {"hosts": [self.host], "verify": {"url": url, "auth": {"type": "header", "name": "X-Api-Key"}}, **change}
        arn = str(self.sm.create_secret(Name=unique("api-verify"), SecretString=json.dumps(doc))["ARN"])
        self._verify_urls[arn] = url
        return arn

    # -- rotated secrets --------------------------------------------------------------------
    def label_prefix(self, arn: str, prefix: str = "sm") -> str:
        """The prefix of every label of the secret's keys: <prefix>-<hash of its ARN>-."""
        return str(self.config.label_prefix(prefix, arn))

    def prefix_of_key(self, key_id: str) -> str:
        """The label prefix of an issued key: its label up to the second '-'."""
        label = self.issuer.key(key_id).label
        return "-".join(label.split("-")[:2]) + "-"

    def generated_secret(self, realm: str) -> dict[str, Any]:
        key = self.module.KeyFormat(**KEY_FORMAT).generate().reveal()
        return {
            "mode": "generated",
            "key": key,
            "generate": dict(KEY_FORMAT),
            "verify_secret_arn": self.verify_secret(realm),
            "note": "fields the function does not know are kept",
        }

    def issued_secret(self, *, idempotent: bool = True, admin_arn: str | None = None) -> dict[str, Any]:
        """A new-format issued secret; its first key gets the secret's label once stored (store)."""
        initial = self.issuer.issue("unlabelled-initial")
        return {
            "mode": "issued",
            "key": initial.secret,
            "key_id": initial.id,
            "provider": {"admin_secret_arn": admin_arn or self.shared_admin_secret(idempotent=idempotent)},
            "note": "fields the function does not know are kept",
        }

    def legacy_provider(self, label_prefix: str | None = None, *, idempotent: bool = True) -> dict[str, Any]:
        """The rotated secret's "provider" in the format before this one: the whole description."""
        provider = {"admin_secret_arn": self.shared_admin_secret(idempotent=idempotent)}
        provider.update(self.description(idempotent=idempotent))
        if label_prefix is not None:
            provider["label_prefix"] = label_prefix
        return provider

    def store(self, sm: Any, doc: dict[str, Any], *, label_initial: bool = True, prefix: str = "sm") -> str:
        """Create the secret; an issued secret's first key is then labelled as the secret's
        (<label prefix><32 characters>), as its owner would create it, so that the function
        revokes it once it is two rotations old."""
        arn = str(sm.create_secret(Name=unique("api-key"), SecretString=json.dumps(doc))["ARN"])
        if doc.get("mode") == "issued" and label_initial and self.issuer.key(str(doc.get("key_id"))) is not None:
            self.issuer.relabel(str(doc["key_id"]), self.label_prefix(arn, prefix) + "initial-" + uuid.uuid4().hex)
        return arn

    def new_secret(self, sm: Any, strategy: str) -> tuple[str, dict[str, Any]]:
        if strategy == "generated":
            realm = unique("svc")
            doc = self.generated_secret(realm)
            arn = self.store(sm, doc)
            self.issuer.add_realm(realm, lambda: self.held_keys(arn))
            return arn, doc
        doc = self.issued_secret()
        return self.store(sm, doc), doc

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
        if doc.get("mode") == "generated":
            url = self._verify_urls[doc["verify_secret_arn"]]
        else:
            url = f"{self.issuer.url}/v1/me"
        response = self.http.request("GET", url, headers={"X-Api-Key": doc["key"]}, timeout=5.0, retries=False)
        return response.status == 200

    def check_rotated(self, strategy: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        assert after["key"] != before["key"]
        assert self.works(before), "the key applications held until now works until the next rotation"
        assert after["note"] == before["note"]
        if strategy == "generated":
            assert self.module.KeyFormat(**KEY_FORMAT).matches(self.module.Sensitive(after["key"]))
            return
        prefix = self.prefix_of_key(after["key_id"])
        alive = {key.id for key in self.issuer.live(prefix)}
        assert alive == {before["key_id"], after["key_id"]}, "alive at the provider: AWSCURRENT and AWSPREVIOUS only"
        assert after["previous_key_id"] == before["key_id"]

    def fault_points(self, handler: RotationFunction) -> list[tuple[object, str]]:
        return [(handler.rotation.http, "request")]  # type: ignore[attr-defined]
