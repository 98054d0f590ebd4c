"""Where the master credential may go: decided by trusted sources only.

The master (superuser) credential is the most powerful secret a rotation function reads,
and the rotated secret is written by many more principals than the master secret. So the
server the master logs in to, and how, never come from the rotated secret:

1. the master secret's own `host` and `port` (written by whoever owns the master); or,
   when it has no host (the secrets RDS and Redshift manage hold only username and
   password), the database that the master secret's system tags name, looked up with
   the RDS or Redshift API, as AWS's own rotation functions do:

   ==========================================  ===============================================
   tag on the master secret                    look-up
   ==========================================  ===============================================
   aws:rds:primaryDBInstanceArn                rds:DescribeDBInstances -> Endpoint
   aws:rds:primaryDBClusterArn                 rds:DescribeDBClusters -> Endpoint (the writer)
   aws:redshift:primaryClusterArn              redshift:DescribeClusters -> Endpoint
   aws:redshift-serverless:namespaceArn        redshift-serverless:ListNamespaces +
                                               ListWorkgroups -> the workgroup's endpoint
   ==========================================  ===============================================

   Tags whose key starts with `aws:` are reserved: only AWS services set them.
2. The rotated secret must name that same server (host and port). Otherwise the rotation
   stops before any login: the rotated secret cannot send the master anywhere.
3. TLS with certificate verification, always, for the master; `"ssl": false` in the
   master secret is honoured only when the operator sets ALLOW_PLAINTEXT_MASTER=true in
   the function's configuration. The rotated secret's `ssl` never applies to the master.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotation_core import settings as config
from rotation_core.credentials import DatabaseSecret, Defaults, MasterSecret
from rotation_core.errors import ConfigurationError, UnreachableError
from rotation_core.observability import logger

if TYPE_CHECKING:
    from rotation_core.protocol import StepContext

RDS_INSTANCE_TAG = "aws:rds:primarydbinstancearn"
RDS_CLUSTER_TAG = "aws:rds:primarydbclusterarn"
REDSHIFT_CLUSTER_TAG = "aws:redshift:primaryclusterarn"
REDSHIFT_NAMESPACE_TAG = "aws:redshift-serverless:namespacearn"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    source: str  # where it was learnt, for messages and logs: "the master secret", "the RDS API"


def _call(step: str, api: str, call: Callable[[], Any]) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            raise ConfigurationError(
                f"{step}: the function may not call {api} (AccessDenied): grant it to the function's role, "
                "or add 'host' and 'port' to the master secret"
            ) from None
        if code.endswith(("NotFound", "NotFoundFault")) or code == "ResourceNotFoundException":
            raise ConfigurationError(
                f"{step}: {api} does not know the database the master secret's system tag names ({code})"
            ) from None
        raise UnreachableError(f"{step}: {api} failed ({code})") from None
    except BotoCoreError as exc:
        raise UnreachableError(f"{step}: {api} could not be reached ({type(exc).__name__})") from None


def _port(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535 else None


def _endpoint(step: str, api: str, address: object, port: object) -> Endpoint:
    checked = _port(port)
    if not isinstance(address, str) or not address or checked is None:
        raise ConfigurationError(f"{step}: {api} returned no endpoint for the master's database (is it available?)")
    return Endpoint(address, checked, api)


def discover(step: str, tags: Mapping[str, str], client: Callable[[str], Any]) -> Endpoint | None:
    """The endpoint of the database the system tags name, or None when there is no such tag."""
    by_key = {key.lower(): value for key, value in tags.items() if key.lower().startswith("aws:")}
    if RDS_INSTANCE_TAG in by_key:
        api = "rds:DescribeDBInstances"
        found = _call(
            step, api, lambda: client("rds").describe_db_instances(DBInstanceIdentifier=by_key[RDS_INSTANCE_TAG])
        )
        instances = found.get("DBInstances") or [{}]
        endpoint = instances[0].get("Endpoint") or {}
        return _endpoint(step, api, endpoint.get("Address"), endpoint.get("Port"))
    if RDS_CLUSTER_TAG in by_key:
        api = "rds:DescribeDBClusters"
        found = _call(
            step, api, lambda: client("rds").describe_db_clusters(DBClusterIdentifier=by_key[RDS_CLUSTER_TAG])
        )
        cluster = (found.get("DBClusters") or [{}])[0]
        return _endpoint(step, api, cluster.get("Endpoint"), cluster.get("Port"))
    if REDSHIFT_CLUSTER_TAG in by_key:
        api = "redshift:DescribeClusters"
        identifier = by_key[REDSHIFT_CLUSTER_TAG].rsplit(":", 1)[-1].removeprefix("cluster/")
        found = _call(step, api, lambda: client("redshift").describe_clusters(ClusterIdentifier=identifier))
        endpoint = (found.get("Clusters") or [{}])[0].get("Endpoint") or {}
        return _endpoint(step, api, endpoint.get("Address"), endpoint.get("Port"))
    if REDSHIFT_NAMESPACE_TAG in by_key:
        return _serverless(step, by_key[REDSHIFT_NAMESPACE_TAG], client("redshift-serverless"))
    return None


def _serverless(step: str, namespace_arn: str, serverless: Any) -> Endpoint:
    api = "redshift-serverless:ListNamespaces"
    namespaces = _call(step, api, lambda: list(_pages(serverless, "list_namespaces", "namespaces")))
    name = next((n.get("namespaceName") for n in namespaces if n.get("namespaceArn") == namespace_arn), None)
    if not name:
        raise ConfigurationError(f"{step}: {api} does not list the namespace the master secret's system tag names")
    api = "redshift-serverless:ListWorkgroups"
    workgroups = _call(step, api, lambda: list(_pages(serverless, "list_workgroups", "workgroups")))
    mine = [w for w in workgroups if w.get("namespaceName") == name]
    if len(mine) != 1:
        raise ConfigurationError(
            f"{step}: the master secret's namespace has {len(mine)} workgroups; add 'host' and 'port' to the "
            "master secret to say which one"
        )
    endpoint = mine[0].get("endpoint") or {}
    return _endpoint(step, api, endpoint.get("address"), endpoint.get("port"))


def _pages(client: Any, operation: str, key: str) -> Any:
    for page in client.get_paginator(operation).paginate():
        yield from page.get(key, [])


@dataclass(frozen=True)
class MasterTarget:
    login: DatabaseSecret  # the master's login, to its own server
    source: str  # where that server was learnt
    replica: bool  # the rotated secret names another server: a replica to prove


def master_login(
    ctx: StepContext, master_arn: str, master: MasterSecret, user: DatabaseSecret, defaults: Defaults
) -> MasterTarget:
    """The master's login: to the server its own secret (or RDS/Redshift) names; TLS
    verified unless the operator allows otherwise. When the rotated secret names another
    server, the target says so: the caller must prove that server a replica of this one
    before anything else, and the master still logs in to its own server only."""
    step = ctx.step
    if master.host is not None:
        endpoint = Endpoint(master.host, master.port or defaults.port, "the master secret")
    else:
        found = discover(step, ctx.other_secret_tags(master_arn), ctx.aws_client)
        if found is None:
            raise ConfigurationError(
                f"{step}: the master secret has no 'host', and no RDS or Redshift system tag names its database: "
                "add 'host' and 'port' to the master secret (the master's server never comes from the rotated secret)"
            )
        endpoint = Endpoint(found.host, master.port or found.port, found.source)
        logger.info("found the master's database", extra={"source": found.source})
    ssl: bool | None = None  # verified TLS
    if master.ssl is False:
        if not ctx.settings.allow_plaintext_master:
            raise ConfigurationError(
                f'{step}: the master secret says "ssl": false; the master credential travels only over verified '
                f"TLS unless the function's configuration sets {config.ALLOW_PLAINTEXT_MASTER}=true"
            )
        ssl = False
    login = master.login(endpoint.host, endpoint.port, user.dbname, ssl=ssl)
    return MasterTarget(login, endpoint.source, replica=not user.same_server(endpoint.host, endpoint.port))


def not_a_replica(step: str, source: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{step}: fields 'host' and 'port' of the rotated secret do not name the master's database (as {source} "
        f"gives it) nor a proven replica of it ({why}): the master credential is used only on its own server"
    )


def rds_replica_of(ctx: StepContext, replica_host: str, writer_host: str) -> bool | None:
    """What the RDS API says: True when replica_host is a read replica, an Aurora reader
    instance or the reader endpoint of the database whose endpoint is writer_host; False
    when it says otherwise; None when the hosts are not RDS endpoints or the API cannot be
    asked (as AWS's functions do, from the instance identifier in the host name)."""
    from botocore.exceptions import BotoCoreError, ClientError

    suffixes = (".rds.amazonaws.com", ".rds.amazonaws.com.cn")
    replica, writer = replica_host.lower().rstrip("."), writer_host.lower().rstrip(".")
    if not (replica.endswith(suffixes) and writer.endswith(suffixes)):
        return None
    identifier = replica.split(".", 1)[0]
    rds = ctx.aws_client("rds")
    try:
        if ".cluster-ro-" in replica:
            cluster = rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
            return bool(
                cluster.get("ReaderEndpoint", "").lower() == replica and cluster.get("Endpoint", "").lower() == writer
            )
        instance = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        if instance.get("DBClusterIdentifier"):  # an Aurora instance: a reader of its cluster
            clusters = rds.describe_db_clusters(DBClusterIdentifier=instance["DBClusterIdentifier"])["DBClusters"]
            return bool(clusters and clusters[0].get("Endpoint", "").lower() == writer)
        source = instance.get("ReadReplicaSourceDBInstanceIdentifier")
        if not source:
            return False
        primary = rds.describe_db_instances(DBInstanceIdentifier=source)["DBInstances"][0]
        return bool((primary.get("Endpoint") or {}).get("Address", "").lower() == writer)
    except (ClientError, BotoCoreError, KeyError, IndexError) as exc:
        logger.warning("the RDS API could not say whether the host is a replica", extra={"error": type(exc).__name__})
        return None
