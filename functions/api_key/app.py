"""API key rotation function: keys the function generates, or keys an HTTP provider issues.

The rotation, top to bottom, and the handler. The rotation protocol (events, stages,
Secrets Manager) lives in rotation_core; beside this file: provider_config.py (the
secrets' formats), provider_client.py (the HTTP calls), key_format.py (generated keys).
docs/api-keys.md is the reference, with the migration from the older format.

Trust model
-----------
Many principals may write the rotated secret (PutSecretValue); few own the provider
account. So the rotated secret holds only the key, its ids and a reference to a secret that
only the provider's owners write; everything that decides where the admin credential or a
key is sent, and what the admin calls do, is read from that secret. Its ``hosts`` lists
the hosts and ports every call may go to.

The rotated secret (JSON; fields this function does not know are kept and written back)
----------------------------------------------------------------------------------------
generated: the function makes the next key with the ``secrets`` module::

    {"mode": "generated", "key": "sk_live_...",
     "generate": {"prefix": "sk_live_", "length": 40, "alphabet": "base62"},
     "verify_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:billing-verify-AbCdEf"}

  ``generate`` is optional (defaults: no prefix, 40 characters of base62; alphabets base62,
  hex, base64url, base32; at least 128 random bits). ``verify_secret_arn`` is optional:
  testSecret calls the endpoint that secret describes with the pending key; without it,
  testSecret checks the pending key's format. The services that accept the key read it
  from Secrets Manager and accept AWSCURRENT, AWSPENDING and AWSPREVIOUS.

issued: a provider's admin API issues and revokes keys::

    {"mode": "issued", "key": "...", "key_id": "k_123", "previous_key_id": "k_122",
     "provider": {"admin_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:acme-admin-AbCdEf"}}

  ``key_id`` (required) is the provider's id of the key; the function writes
  ``previous_key_id``, the id of the key this version replaced.

The admin secret (issued keys; written by the provider's owners only)::

    {"token": "...", "hosts": ["api.acme.example"],
     "provider": {
       "admin_auth": {"type": "bearer"},
       "label_prefix": "sm",
       "issue":  {"method": "POST", "url": "https://api.acme.example/v1/keys",
                  "body": {"name": "{label}"}, "key_path": "data.secret", "id_path": "data.id",
                  "idempotency_header": "Idempotency-Key"},
       "list":   {"method": "GET", "url": "https://api.acme.example/v1/keys?prefix={label_prefix}",
                  "items_path": "data", "id_path": "id", "label_path": "name"},
       "revoke": {"method": "DELETE", "url": "https://api.acme.example/v1/keys/{key_id}"},
       "verify": {"method": "GET", "url": "https://api.acme.example/v1/me",
                  "auth": {"type": "header", "name": "X-Api-Key"}}}}

  ``"username"`` and ``"password"`` instead of ``"token"`` for basic. ``hosts``: ``host``
  (the scheme's default port) or ``host:port``. ``label_prefix`` is optional (1 to 32
  letters, digits or ``_``; default ``sm``).

The verify secret (generated keys; written by the service's owners only)::

    {"hosts": ["billing.internal.example.com"],
     "verify": {"method": "GET", "url": "https://billing.internal.example.com/v1/ping",
                "auth": {"type": "bearer"}}}

Endpoints: ``method`` (GET, POST, PUT, PATCH, DELETE; defaults POST for issue, DELETE for
revoke, GET otherwise), ``url``, optional ``body`` (JSON) and ``headers`` (static, non-secret;
never Host, Content-Length, Transfer-Encoding, Connection or Accept-Encoding). Placeholders,
in the path, query and body only: issue ``{label}``, list ``{label_prefix}``, revoke and an
issued key's verify ``{key_id}``. ``*_path`` are dotted paths into the JSON response.
``auth`` (verify: how the key is presented; default bearer) and ``admin_auth``:
``{"type": "bearer"}``, ``{"type": "header", "name": "X-Api-Key", "prefix": ""}`` or
``{"type": "basic", "username": "api"}``. URLs are https; http only to loopback addresses,
for tests. Redirects are not followed.

Older format: a rotated secret that still describes the provider (``provider.issue``,
``provider.label_prefix``... or, generated, ``verify``) is refused unless the trusted secret
carries the description; then the rotated secret's copy is ignored and a warning names the
fields to remove.

Issued keys: labels, idempotency and cleanup
---------------------------------------------
Every key the function issues is labelled ``<label_prefix>-<10 hex digits of the SHA-256 of
the secret's ARN>-<ClientRequestToken>``: unique to the secret, and no rotated secret can
choose another's. The function revokes only keys the provider lists under this secret's
labels: neither ``key_id`` nor ``previous_key_id`` (which the rotated secret's writers
could forge) can make it revoke any other key.

- createSecret reads the token's AWSPENDING value first: retried after the key was issued
  and stored, it keeps that key and calls no provider. Retried after a key was issued but
  not stored: with
  ``idempotency_header`` the label goes in that header and the provider answers the retry
  with the key it issued the first time; without it, createSecret first revokes the listed
  keys carrying this rotation's label (issued, never stored, so held by no one).
- testSecret checks that the provider lists the pending key under its label, then calls
  ``verify`` with the pending key.
- finishSecret, after AWSCURRENT moved: revokes every key listed under this secret's
  labels that is neither AWSCURRENT, AWSPREVIOUS nor a rotation in progress: the key two
  rotations old and the orphans of failed attempts. A revoke answered 404 or 410 is a
  success. Invoked again once the token is AWSCURRENT, it runs the same cleanup.
"""

from __future__ import annotations

from key_format import KeyFormat
from provider_client import Http, ProviderCalls, require_safe_urllib3
from provider_config import (
    ISSUED,
    ApiKeySecret,
    Endpoint,
    Provider,
    key_id_of_version,
    parse,
    parse_admin,
    parse_verify,
)

from rotation_core import ConfigurationError, Rotation, Sensitive, StepContext, rotation_handler
from rotation_core import settings as config
from rotation_core.observability import logger
from rotation_core.protocol import PENDING, PREVIOUS

__all__ = ["ApiKeyRotation", "KeyFormat", "Sensitive", "lambda_handler", "parse"]


def _warn_older_format(secret: ApiKeySecret, trusted: str) -> None:
    if secret.legacy:
        logger.warning(
            "deprecated: the rotated secret still holds fields of the older format; the function ignores them "
            f"and uses the {trusted} secret's description: remove them (docs/api-keys.md, migration)",
            extra={"fields": list(secret.legacy)},
        )


class ApiKeyRotation(Rotation):
    name = "api_key"

    def __init__(self) -> None:
        self.http = Http()  # reused by every invocation of the execution environment

    def _calls(self, ctx: StepContext) -> ProviderCalls:
        return ProviderCalls(self.http, ctx.step, config.http_settings(ctx.env), ctx.seconds_left())

    @staticmethod
    def _provider(ctx: StepContext, secret: ApiKeySecret) -> tuple[Provider, dict[str, str]]:
        """The provider's description and the admin credential's headers, from the admin secret."""
        if secret.admin_secret_arn is None:  # pragma: no cover - parse() requires it for issued keys
            raise ConfigurationError("the secret is missing the field 'provider.admin_secret_arn'")
        text = ctx.other_secret(secret.admin_secret_arn, "admin", across_steps=True)
        provider, credential = parse_admin(text, ctx.arn, secret.legacy)
        _warn_older_format(secret, "admin")
        return provider, provider.admin_auth.headers(credential)

    @staticmethod
    def _verify(ctx: StepContext, secret: ApiKeySecret) -> Endpoint | None:
        """A generated key's verify endpoint, from the verify secret (None: none)."""
        if secret.verify_secret_arn is None:
            return None
        endpoint = parse_verify(ctx.other_secret(secret.verify_secret_arn, "verify", across_steps=True))
        _warn_older_format(secret, "verify")
        return endpoint

    def create(self, ctx: StepContext) -> str:
        require_safe_urllib3()
        current = parse(ctx.current(), "current", ctx.arn)
        if current.mode != ISSUED:
            self._verify(ctx, current)  # a bad verify secret fails here, before anything is stored
            return current.with_key(current.key_format.generate())
        stored = ctx.pending_if_any()
        if stored is not None:
            # An earlier attempt of this step issued and stored a key: keep it. (The protocol
            # stores nothing again; a generated key needs no such read, PutSecretValue keeps
            # the first value.)
            return stored
        provider, admin = self._provider(ctx, current)
        calls = self._calls(ctx)
        label = provider.label(ctx.token)
        if provider.issue.idempotency_header is None:
            # A key an earlier attempt of this step issued but could not store: held by no one.
            for key_id, key_label in calls.listed(provider, admin):
                if key_label == label:
                    calls.revoke(provider, admin, key_id)
        key, key_id = calls.issue(provider, admin, label)
        return current.with_key(key, key_id)

    def set(self, ctx: StepContext) -> None:
        """Nothing to set: an issued key is valid from the moment it is issued, and the
        services that accept a generated key read it from Secrets Manager."""

    def test(self, ctx: StepContext) -> None:
        require_safe_urllib3()
        pending = parse(ctx.pending(), "pending", ctx.arn)
        calls = self._calls(ctx)
        if pending.mode == ISSUED:
            provider, admin = self._provider(ctx, pending)
            listed = dict(calls.listed(provider, admin))
            if listed.get(pending.key_id or "") != provider.label(ctx.token):
                raise ConfigurationError(
                    "testSecret: the provider's 'list' response does not show the pending key under its label: "
                    "check fields 'provider.list.items_path', 'id_path' and 'label_path' of the admin secret"
                )
            calls.verify(provider.verify, pending.key, pending.key_id)
            return
        verify = self._verify(ctx, pending)
        if verify is not None:
            calls.verify(verify, pending.key, None)
        elif not pending.key_format.matches(pending.key):
            raise ConfigurationError("testSecret: the pending key does not match the format in field 'generate'")

    def finished(self, ctx: StepContext, previous_version: str | None) -> None:
        self._revoke_retired(ctx, previous_version)

    def already_finished(self, ctx: StepContext) -> None:
        self._revoke_retired(ctx, ctx.meta.holding(PREVIOUS))

    def _revoke_retired(self, ctx: StepContext, previous_version: str | None) -> None:
        """Revoke the keys the provider lists under this secret's labels that it no longer
        holds: neither AWSCURRENT (the token's version), AWSPREVIOUS nor a rotation in
        progress. Ids written in the secret only ever spare a key. Idempotent."""
        require_safe_urllib3()
        current = parse(ctx.version(ctx.token), "current", ctx.arn)
        if current.mode != ISSUED:
            return
        keep = {current.key_id, current.previous_key_id}
        if previous_version is not None and previous_version != ctx.token:
            keep.add(key_id_of_version(ctx.version(previous_version)))
        provider, admin = self._provider(ctx, current)
        in_progress = {
            provider.label(version)
            for version, stages in ctx.meta.versions.items()
            if PENDING in stages and version != ctx.token
        }
        calls = self._calls(ctx)
        retired = {
            key_id
            for key_id, label in calls.listed(provider, admin)
            if provider.owns(label) and label not in in_progress
        }
        for key_id in sorted(k for k in retired - keep if k is not None):
            calls.revoke(provider, admin, key_id)


lambda_handler = rotation_handler(ApiKeyRotation())
