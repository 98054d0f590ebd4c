"""Where the master's database is found for the secrets RDS and Redshift manage: the
look-ups against moto's RDS and Redshift (the real API shapes), and the refusals."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from rotation_core import ConfigurationError
from rotation_core.targets import discover
from tests.engines import unique


def clients(endpoint: str) -> Any:
    return lambda service: boto3.client(service, endpoint_url=endpoint)


def test_rds_instance_and_cluster_endpoints(moto_endpoint: str) -> None:
    rds = boto3.client("rds", endpoint_url=moto_endpoint)
    name = unique("orders").replace("_", "-")
    instance = rds.create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="m",
        AllocatedStorage=20,
    )["DBInstance"]
    found = discover("setSecret", {"aws:rds:primaryDBInstanceArn": instance["DBInstanceArn"]}, clients(moto_endpoint))
    described = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["Endpoint"]
    assert found is not None and (found.host, found.port) == (described["Address"], described["Port"])
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=name + "-c", Engine="aurora-mysql", MasterUsername="m", MasterUserPassword="x" * 12
    )["DBCluster"]
    found = discover("setSecret", {"AWS:RDS:primaryDBClusterArn": cluster["DBClusterArn"]}, clients(moto_endpoint))
    assert found is not None and (found.host, found.port) == (cluster["Endpoint"], cluster["Port"])
    assert found.source == "rds:DescribeDBClusters"


def test_redshift_cluster_endpoint(moto_endpoint: str) -> None:
    redshift = boto3.client("redshift", endpoint_url=moto_endpoint)
    name = unique("warehouse").replace("_", "-")
    redshift.create_cluster(
        ClusterIdentifier=name, NodeType="dc2.large", MasterUsername="m", MasterUserPassword="Xx1" * 4
    )
    arn = f"arn:aws:redshift:us-east-1:123456789012:cluster:{name}"
    found = discover("setSecret", {"aws:redshift:primaryClusterArn": arn}, clients(moto_endpoint))
    endpoint = redshift.describe_clusters(ClusterIdentifier=name)["Clusters"][0]["Endpoint"]
    assert found is not None and (found.host, found.port) == (endpoint["Address"], endpoint["Port"])


class Serverless:
    def __init__(self, workgroups: list[dict[str, Any]]) -> None:
        self.pages = {
            "list_namespaces": [{"namespaces": [{"namespaceArn": "arn:ns", "namespaceName": "analytics"}]}],
            "list_workgroups": [{"workgroups": workgroups}],
        }

    def get_paginator(self, operation: str) -> Any:
        pages = self.pages[operation]
        return type("Paginator", (), {"paginate": lambda _self: iter(pages)})()


def test_redshift_serverless_workgroup_of_the_namespace() -> None:
    one = [{"namespaceName": "analytics", "endpoint": {"address": "wg.example", "port": 5439}}]
    found = discover("setSecret", {"aws:redshift-serverless:namespaceArn": "arn:ns"}, lambda _: Serverless(one))
    assert found is not None and (found.host, found.port) == ("wg.example", 5439)
    with pytest.raises(ConfigurationError, match="2 workgroups"):
        discover("setSecret", {"aws:redshift-serverless:namespaceArn": "arn:ns"}, lambda _: Serverless(one * 2))


def test_only_reserved_system_tags_count() -> None:
    assert discover("setSecret", {"rds:primaryDBInstanceArn": "arn", "host": "evil"}, lambda _: None) is None


def test_refusals_name_the_call_and_what_to_do() -> None:
    class Denied:
        def describe_db_instances(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DescribeDBInstances")

    with pytest.raises(ConfigurationError, match=r"rds:DescribeDBInstances \(AccessDenied\).*'host' and 'port'"):
        discover("setSecret", {"aws:rds:primaryDBInstanceArn": "arn"}, lambda _: Denied())

    class Missing:
        def describe_db_instances(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "DBInstanceNotFound", "Message": "no"}}, "DescribeDBInstances")

    with pytest.raises(ConfigurationError, match="does not know the database"):
        discover("setSecret", {"aws:rds:primaryDBInstanceArn": "arn"}, lambda _: Missing())


class FakeRds:
    """DescribeDBInstances / DescribeDBClusters as RDS answers them (fields AWS's functions read)."""

    def __init__(self) -> None:
        self.instances = {
            "orders-replica": {"ReadReplicaSourceDBInstanceIdentifier": "orders"},
            "orders": {"Endpoint": {"Address": "orders.abc.us-east-1.rds.amazonaws.com"}},
            "lonely": {},
            "aurora-2": {"DBClusterIdentifier": "shop"},
        }
        self.clusters = {
            "shop": {
                "Endpoint": "shop.cluster-abc.us-east-1.rds.amazonaws.com",
                "ReaderEndpoint": "shop.cluster-ro-abc.us-east-1.rds.amazonaws.com",
            }
        }

    def describe_db_instances(self, DBInstanceIdentifier: str) -> Any:  # noqa: N803 - boto3's name
        return {"DBInstances": [self.instances[DBInstanceIdentifier]]}

    def describe_db_clusters(self, DBClusterIdentifier: str) -> Any:  # noqa: N803 - boto3's name
        return {"DBClusters": [self.clusters[DBClusterIdentifier]]}


class Ctx:
    def __init__(self) -> None:
        self.rds = FakeRds()

    def aws_client(self, service: str) -> Any:
        assert service == "rds"
        return self.rds


@pytest.mark.parametrize(
    ("replica", "writer", "verdict"),
    [
        ("orders-replica.abc.us-east-1.rds.amazonaws.com", "orders.abc.us-east-1.rds.amazonaws.com", True),
        ("orders-replica.abc.us-east-1.rds.amazonaws.com", "other.abc.us-east-1.rds.amazonaws.com", False),
        ("lonely.abc.us-east-1.rds.amazonaws.com", "orders.abc.us-east-1.rds.amazonaws.com", False),
        ("aurora-2.abc.us-east-1.rds.amazonaws.com", "shop.cluster-abc.us-east-1.rds.amazonaws.com", True),
        ("shop.cluster-ro-abc.us-east-1.rds.amazonaws.com", "shop.cluster-abc.us-east-1.rds.amazonaws.com", True),
        ("shop.cluster-ro-abc.us-east-1.rds.amazonaws.com", "orders.abc.us-east-1.rds.amazonaws.com", False),
        ("replica.example.internal", "orders.abc.us-east-1.rds.amazonaws.com", None),  # not RDS: cannot tell
        ("unknown.abc.us-east-1.rds.amazonaws.com", "orders.abc.us-east-1.rds.amazonaws.com", None),  # API error
    ],
)
def test_rds_says_whether_a_host_is_a_replica(replica: str, writer: str, verdict: bool | None) -> None:
    from rotation_core.targets import rds_replica_of

    assert rds_replica_of(Ctx(), replica, writer) is verdict  # type: ignore[arg-type]
