"""Checks of template.yaml, the SAM template of the rotation functions.

The SAM transform is expanded offline with aws-sam-translator (as `sam validate`
does, with no AWS call), so the assertions are on the real CloudFormation
resources: the IAM roles, the Lambda functions, the layer version. Then a small
evaluator plays CloudFormation's part for a set of parameter values: it
evaluates the Conditions, resolves Ref/Fn::Sub/Fn::Join/Fn::If and drops
AWS::NoValue, so that "this statement exists only when that parameter is set"
is checked on what would be deployed, not on the shape of the YAML.

Every check walks all the functions in the template, so a new engine's function
is checked as soon as it is added.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
import pytest
import yaml
from cfnlint.api import ManualArgs, lint
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import intrinsics_multi_constructor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
PROJECT_ROOT = TEMPLATE_PATH.parent

REGION = "us-east-1"
ACCOUNT = "123456789012"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
STACK = "secrets-manager-rotation"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": URL_SUFFIX,
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0",
}

SECRETS_MANAGER_ROTATION_ACTIONS = {
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:ListSecretVersionIds",  # failure path: find an abandoned rotation's password
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
}
ROTATION_CONDITION_KEY = "secretsmanager:resource/AllowRotationLambdaArn"
RUNTIME = "python3.13"
MEMORY_MB = 128
TIMEOUT_SECONDS = 30

MASTER_ARNS = [
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!cluster-1-AbCdEf",
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pg-master-??????",
]
KMS_ARNS = [f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b6a9c1e-1111-2222-3333-444455556666"]
NO_CA_BUNDLE = {"RedshiftRotationFunction"}
# Each database function reads only the master secrets named by its own parameter.
MASTER_PARAMETERS = {
    "PostgresRotationFunction": "PostgresMasterSecretArns",
    "MySqlRotationFunction": "MySqlMasterSecretArns",
    "RedshiftRotationFunction": "RedshiftMasterSecretArns",
    "ApiKeyRotationFunction": "ApiKeyAdminSecretArns",  # the providers' admin credentials
}
# API keys never list versions (the database functions do, to recover an abandoned rotation).
ROTATION_ACTIONS_BY_FUNCTION = {
    "ApiKeyRotationFunction": SECRETS_MANAGER_ROTATION_ACTIONS - {"secretsmanager:ListSecretVersionIds"},
}
# The read-only calls that find a managed master secret's endpoint from its system tags
# (aws:rds:primaryDBInstanceArn, aws:rds:primaryDBClusterArn, aws:redshift:primaryClusterArn,
# aws:redshift-serverless:namespaceArn), as AWS's own rotation functions do, and recognise
# RDS read replicas and Aurora readers. Resource types from the Service Authorization
# Reference: rds:DescribeDBInstances takes db*, rds:DescribeDBClusters cluster*; Redshift's
# DescribeClusters and Redshift Serverless's ListNamespaces and ListWorkgroups take none.
RDS_LOOKUPS = {
    "LookUpRdsInstances": ("rds:DescribeDBInstances", f"arn:{PARTITION}:rds:{REGION}:{ACCOUNT}:db:*"),
    "LookUpRdsClusters": ("rds:DescribeDBClusters", f"arn:{PARTITION}:rds:{REGION}:{ACCOUNT}:cluster:*"),
}
REDSHIFT_LOOKUP_ACTIONS = [
    "redshift-serverless:ListNamespaces",  # the tag holds the namespace ARN; workgroups name it by name
    "redshift-serverless:ListWorkgroups",
    "redshift:DescribeClusters",
]
DATABASE_LOOKUPS = {"PostgresRotationFunction", "MySqlRotationFunction", "RedshiftRotationFunction"}


def database_lookups(function_id: str, *, with_masters: bool) -> dict[str, dict[str, Any]]:
    """Sid -> statement: the look-ups each function needs (RDS's always, for the replica check;
    Redshift's only with master secrets, the only secrets it looks up)."""
    allow = {"Effect": "Allow"}
    if function_id in {"PostgresRotationFunction", "MySqlRotationFunction"}:
        return {sid: {**allow, "Action": action, "Resource": arn} for sid, (action, arn) in RDS_LOOKUPS.items()}
    if function_id == "RedshiftRotationFunction" and with_masters:
        return {"LookUpRedshiftEndpoints": {**allow, "Action": REDSHIFT_LOOKUP_ACTIONS, "Resource": "*"}}
    return {}


SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
SECURITY_GROUPS = ["sg-0123456789abcdef0", "sg-0123456789abcdef1"]
VPC = "vpc-0123456789abcdef0"
LOGS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1b6a9c1e-1111-2222-3333-444455556666"
TOPIC_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/2b6a9c1e-1111-2222-3333-444455556666"
# Each function's name prefix in the template's parameters and resources.
PREFIXES = {
    "PostgresRotationFunction": "Postgres",
    "MySqlRotationFunction": "MySql",
    "RedshiftRotationFunction": "Redshift",
    "ApiKeyRotationFunction": "ApiKey",
}
# The fleet audit (EnableAudit=true) is a function that rotates nothing: the rotation checks
# below leave it out, tests/test_template_audit.py checks every resource of it.
AUDIT_FUNCTION = "AuditFunction"
AUDIT_ROLES = {"AuditFunctionRole", "AuditScheduleRole"}
AUDIT_RESOURCES = {
    "AuditFunctionLogGroup",
    "AuditFunctionRole",
    AUDIT_FUNCTION,
    "AuditFunctionErrorsAlarm",
    "AuditHighFindingsAlarm",
    "AuditScheduleRole",
    "AuditSchedule",
}


# Parameter sets the policy checks run under: every optional statement off, then on (twice: the
# topic's key created or given, failure events of every secret or not).
EVERYTHING = {
    "PostgresMasterSecretArns": ",".join(MASTER_ARNS),
    "MySqlMasterSecretArns": ",".join(MASTER_ARNS),
    "RedshiftMasterSecretArns": ",".join(MASTER_ARNS),
    "ApiKeyAdminSecretArns": ",".join(MASTER_ARNS),
    "KmsKeyArns": ",".join(KMS_ARNS),
    "SubnetIds": ",".join(SUBNETS),
    "SecurityGroupIds": ",".join(SECURITY_GROUPS),
    "Architecture": "arm64",
    "EnableTracing": "true",
    "LogsKmsKeyArn": LOGS_KEY,
    "CreateSecretsManagerEndpoint": "true",
    "VpcId": VPC,
    "NotificationEmail": "oncall@example.com",
    "RotationEventScope": "all-secrets",
    "EnableAudit": "true",
}
SCENARIOS: dict[str, dict[str, str]] = {
    "defaults": {},
    "everything": EVERYTHING,
    "everything-own-key-all-secrets": {
        **EVERYTHING,
        "NotificationKmsKeyArn": TOPIC_KEY,
        "RotationEventScope": "attached-secrets",
    },
}


# --------------------------------------------------------------------------
# Loading and transforming


class _CloudFormationLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus CloudFormation's short-form tags (!Ref, !Sub, !If...)."""


_CloudFormationLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    loader = _CloudFormationLoader(path.read_text(encoding="utf-8"))
    try:
        template: dict[str, Any] = loader.get_single_data()
    finally:
        loader.dispose()
    return template


def transform(template: dict[str, Any]) -> dict[str, Any]:
    """Expand the SAM transform offline, as `sam validate` does (local code paths become S3 URIs)."""
    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://bucket/{properties[key]}"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    # Managed policies are named by ARN in this template; the map is only consulted for bare names.
    result: dict[str, Any] = translator.translate(template, parameter_values={}, get_managed_policy_map=dict)
    return result


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def cfn_template(sam_template: dict[str, Any]) -> dict[str, Any]:
    return transform(sam_template)


# --------------------------------------------------------------------------
# A small CloudFormation: parameters, conditions and intrinsic functions


class _NoValue:
    """AWS::NoValue: removes the property or list item that holds it."""


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


class ParameterRejected(AssertionError):
    """CloudFormation would refuse the value before doing anything (AllowedValues, AllowedPattern)."""


class RuleViolated(AssertionError):
    """An assertion of the template's Rules section fails: CloudFormation refuses the stack."""


def check_parameter(name: str, spec: dict[str, Any], raw: str) -> None:
    """CloudFormation's parameter constraints. A pattern applies to the whole String, or to each list item."""
    if "AllowedValues" in spec and raw not in [str(v) for v in spec["AllowedValues"]]:
        raise ParameterRejected(f"{name}={raw!r} not in AllowedValues")
    if "AllowedPattern" in spec:
        items = raw.split(",") if spec["Type"] == "CommaDelimitedList" else [raw]
        for item in items:
            if not re.fullmatch(spec["AllowedPattern"], item):
                raise ParameterRejected(f"{name}: {item!r} does not match {spec['AllowedPattern']}")
    if spec["Type"] == "Number":
        number = float(raw)
        if number < spec.get("MinValue", number) or number > spec.get("MaxValue", number):
            raise ParameterRejected(f"{name}={raw} out of range")


class Stack:
    """What CloudFormation would deploy from `template` with the given parameter values.

    Refs to resources become "{Ref:Id}" and Fn::GetAtt "{GetAtt:Id.Attribute}" so that
    they stay visible (and comparable) in the resolved strings. Parameter constraints and
    the Rules section are enforced as CloudFormation does (ParameterRejected, RuleViolated).
    """

    def __init__(self, template: dict[str, Any], overrides: Mapping[str, str]) -> None:
        self.template = template
        self.parameters: dict[str, str | list[str]] = dict(PSEUDO)
        for name, spec in template.get("Parameters", {}).items():
            raw = str(overrides.get(name, spec.get("Default", "")))
            check_parameter(name, spec, raw)
            self.parameters[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
        unknown = set(overrides) - set(template.get("Parameters", {}))
        assert not unknown, f"no such parameters: {unknown}"
        self._check_rules()
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions", {}):
            self._condition(name)
        self.resources = {
            logical_id: self.resolve({key: value for key, value in resource.items() if key != "Condition"})
            for logical_id, resource in template["Resources"].items()
            if self.conditions.get(resource.get("Condition", ""), True)
        }
        self.outputs = {
            name: self.resolve(output["Value"])
            for name, output in template.get("Outputs", {}).items()
            if self.conditions.get(output.get("Condition", ""), True)
        }

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [item for item in (self.resolve(i) for i in node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            intrinsic = self._intrinsics.get(key)
            if intrinsic is not None:
                return intrinsic(self, arg)
            assert not key.startswith("Fn::"), f"the test evaluator does not know {key}"
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        assert name in self.template["Resources"], f"Ref to unknown {name}"
        return f"{{Ref:{name}}}"

    def _get_att(self, arg: str | list[str]) -> str:
        resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        assert resource in self.template["Resources"], f"GetAtt of unknown {resource}"
        return f"{{GetAtt:{resource}.{attribute}}}"

    def _join(self, arg: list[Any]) -> str:
        delimiter, items = arg
        return str(delimiter).join(self._strings(self.resolve(items)))

    def _split(self, arg: list[Any]) -> list[str]:
        delimiter, text = arg
        return str(self.resolve(text)).split(delimiter)

    def _select(self, arg: list[Any]) -> Any:
        index, items = arg
        return self.resolve(items)[int(self.resolve(index))]

    def _if(self, arg: list[Any]) -> Any:
        condition, when_true, when_false = arg
        return self.resolve(when_true if self.conditions[condition] else when_false)

    def _equals(self, arg: list[Any]) -> bool:
        left, right = (self.resolve(a) for a in arg)
        return bool(left == right)

    def _not(self, arg: list[Any]) -> bool:
        return not self.resolve(arg[0])

    def _and(self, arg: list[Any]) -> bool:
        return all(self.resolve(a) for a in arg)

    def _or(self, arg: list[Any]) -> bool:
        return any(self.resolve(a) for a in arg)

    def _condition(self, name: str) -> bool:
        """A condition's value, evaluated on first use (conditions may refer to others, in any order)."""
        if name not in self.conditions:
            value = self.resolve(self.template["Conditions"][name])
            assert isinstance(value, bool), f"condition {name} is not a boolean"
            self.conditions[name] = value
        return self.conditions[name]

    def _each_member_equals(self, arg: list[Any]) -> bool:
        items, value = (self.resolve(a) for a in arg)
        return all(item == value for item in as_list(items))

    def _each_member_in(self, arg: list[Any]) -> bool:
        items, allowed = (self.resolve(a) for a in arg)
        return all(item in as_list(allowed) for item in as_list(items))

    def _contains(self, arg: list[Any]) -> bool:
        items, value = (self.resolve(a) for a in arg)
        return value in as_list(items)

    def _check_rules(self) -> None:
        for name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule["Assertions"]:
                if not self.resolve(assertion["Assert"]):
                    raise RuleViolated(f"{name}: {assertion.get('AssertDescription', '')}")

    def _sub(self, arg: str | list[Any]) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        values = {name: self.resolve(value) for name, value in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            if name in self.parameters:
                value = self.parameters[name]
                assert isinstance(value, str), f"${{{name}}} is a list"
                return value
            if "." in name:
                return str(self.resolve({"Fn::GetAtt": name.split(".", 1)}))
            return str(self.resolve({"Ref": name}))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    @staticmethod
    def _strings(items: Any) -> list[str]:
        assert isinstance(items, list), items
        return [str(item) for item in items]

    _intrinsics: ClassVar[dict[str, Callable[[Stack, Any], Any]]] = {
        "Ref": _ref,
        "Fn::GetAtt": _get_att,
        "Fn::Sub": _sub,
        "Fn::Join": _join,
        "Fn::Split": _split,
        "Fn::Select": _select,
        "Fn::If": _if,
        "Fn::Equals": _equals,
        "Fn::Not": _not,
        "Fn::And": _and,
        "Fn::Or": _or,
        "Condition": _condition,
        "Fn::EachMemberEquals": _each_member_equals,
        "Fn::EachMemberIn": _each_member_in,
        "Fn::Contains": _contains,
    }

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == resource_type}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def function_arn(function_name: str) -> str:
    return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{function_name}"


def role_of(stack: Stack, function: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    role = function["Properties"]["Role"]
    match = re.fullmatch(r"\{GetAtt:(\w+)\.Arn\}", role)
    assert match, f"the role is not a role of this template: {role}"
    role_id = match.group(1)
    assert stack.resources[role_id]["Type"] == "AWS::IAM::Role"
    return role_id, stack.resources[role_id]


def statements_of(stack: Stack, role_id: str) -> list[dict[str, Any]]:
    """Every statement that grants the role something: inline and attached (AWS::IAM::Policy) ones."""
    role = stack.resources[role_id]["Properties"]
    documents = [policy["PolicyDocument"] for policy in role.get("Policies", [])]
    documents += [
        resource["Properties"]["PolicyDocument"]
        for resource in stack.resources.values()
        if resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
        and f"{{Ref:{role_id}}}" in resource["Properties"].get("Roles", [])
    ]
    return [statement for document in documents for statement in as_list(document["Statement"])]


def grants(action_pattern: str, action: str) -> bool:
    """Whether an IAM Action element (with its * and ? wildcards) covers `action`."""
    return fnmatch.fnmatchcase(action.lower(), action_pattern.lower())


def _rotation_statement_problems(
    statement: dict[str, Any], own_arn: str, rotation_actions: set[str] = SECRETS_MANAGER_ROTATION_ACTIONS
) -> list[str]:
    """A statement conditioned on AllowRotationLambdaArn: AWS's rotation grant, for this function only."""
    problems: list[str] = []
    condition = statement["Condition"]
    rotation_arn = condition["StringEquals"][ROTATION_CONDITION_KEY]
    if rotation_arn != own_arn:
        problems.append(f"conditioned on another function: {rotation_arn}")
    if set(as_list(statement["Action"])) != rotation_actions:
        problems.append(f"rotation statement grants {statement['Action']}")
    expected = f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:*"
    if as_list(statement["Resource"]) != [expected]:
        problems.append(f"rotation statement on {statement['Resource']}")
    if condition != {"StringEquals": {ROTATION_CONDITION_KEY: rotation_arn}}:
        problems.append(f"unexpected extra conditions {condition}")
    return problems


# What a statement without the rotation condition may grant on the master (or admin) secrets:
# reading the value, and reading the system tags that say which database a managed one is of.
MASTER_ACTIONS = (["secretsmanager:GetSecretValue"], ["secretsmanager:DescribeSecret"])
# A master secret ARN may match the six-character random suffix with ??????, and nothing else.
_ARN_WITHOUT_SUFFIX = re.compile(r"(arn:[^*?]+:secret:[^*?]+)-([A-Za-z0-9]{6}|\?{6})")


def wildcard_problems(resources: list[str]) -> list[str]:
    """Wildcards in secret ARNs beyond the random suffix's ??????."""
    return [f"wildcard secret: {r}" for r in resources if not _ARN_WITHOUT_SUFFIX.fullmatch(r)]


def _master_statement_problems(statement: dict[str, Any], master_arns: list[str]) -> list[str]:
    """Any other statement naming secretsmanager: GetSecretValue, or DescribeSecret, on the listed
    master secrets only, named without wildcards."""
    problems: list[str] = []
    actions = as_list(statement["Action"])
    resources = as_list(statement["Resource"])
    if actions not in MASTER_ACTIONS:
        problems.append(f"unconditioned statement grants {actions}")
    if not master_arns or resources != master_arns:
        problems.append(f"unconditioned statement on {resources}, master secrets: {master_arns}")
    problems += wildcard_problems(resources)
    return problems


def secrets_manager_problems(
    statement: dict[str, Any],
    own_arn: str,
    master_arns: list[str],
    rotation_actions: set[str] = SECRETS_MANAGER_ROTATION_ACTIONS,
) -> list[str]:
    """What is wrong with one statement from the point of view of Secrets Manager access."""
    if "NotAction" in statement or "NotResource" in statement:
        return ["NotAction/NotResource"]
    if statement.get("Effect") != "Allow":
        return []
    actions = as_list(statement["Action"])
    problems = []
    if any(grants(a, "secretsmanager:GetRandomPassword") for a in actions):
        problems.append("grants secretsmanager:GetRandomPassword")
    if not any(grants(a, "secretsmanager:x") or a.startswith("secretsmanager:") for a in actions):
        return problems
    if ROTATION_CONDITION_KEY in statement.get("Condition", {}).get("StringEquals", {}):
        return problems + _rotation_statement_problems(statement, own_arn, rotation_actions)
    return problems + _master_statement_problems(statement, master_arns)


def functions_of(stack: Stack) -> dict[str, dict[str, Any]]:
    """The rotation functions (the audit is checked in tests/test_template_audit.py)."""
    functions = {lid: f for lid, f in stack.of_type("AWS::Lambda::Function").items() if lid != AUDIT_FUNCTION}
    assert functions, "the template has no function"
    return functions


def master_arns_for(stack: Stack, function_id: str) -> list[str]:
    """The other secrets a function may read: its engine's master (or admin) secret parameter."""
    value = stack.parameters.get(MASTER_PARAMETERS.get(function_id, ""), [""])
    assert isinstance(value, list)
    return [arn for arn in value if arn]


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def stack(request: pytest.FixtureRequest, cfn_template: dict[str, Any]) -> Stack:
    return Stack(cfn_template, SCENARIOS[request.param])


# --------------------------------------------------------------------------
# The checkers themselves catch what they are meant to catch


def test_checker_flags_unconditioned_wildcard_and_random_password() -> None:
    own = function_arn(f"{STACK}-postgres")
    wildcard = {
        "Effect": "Allow",
        "Action": sorted(SECRETS_MANAGER_ROTATION_ACTIONS),
        "Resource": f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:*",
    }
    assert secrets_manager_problems(wildcard, own, [])
    assert secrets_manager_problems({"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}, own, [])
    assert secrets_manager_problems({"Effect": "Allow", "Action": "*", "Resource": "*"}, own, [])
    random_password = {"Effect": "Allow", "Action": "secretsmanager:GetRandomPassword", "Resource": "*"}
    assert "grants secretsmanager:GetRandomPassword" in secrets_manager_problems(random_password, own, [])
    other = {**wildcard, "Condition": {"StringEquals": {ROTATION_CONDITION_KEY: function_arn("someone-else")}}}
    assert secrets_manager_problems(other, own, [])
    assert (
        secrets_manager_problems({**other, "Condition": {"StringEquals": {ROTATION_CONDITION_KEY: own}}}, own, []) == []
    )
    master = f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-1234-??????"
    read = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": [master]}
    assert secrets_manager_problems(read, own, [master]) == []
    for wildcard in ("*", master.replace("rds!db-1234", "rds!*"), master.replace("-??????", "*")):
        assert wildcard_problems([wildcard]), wildcard
        assert secrets_manager_problems({**read, "Resource": [wildcard]}, own, [wildcard]), wildcard


def test_evaluator_resolves_conditions_and_no_value() -> None:
    template = {
        "Parameters": {"Items": {"Type": "CommaDelimitedList", "Default": ""}},
        "Conditions": {"HasItems": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Items"}]}, ""]}]}},
        "Resources": {
            "R": {
                "Type": "T",
                "Properties": {"L": ["a", {"Fn::If": ["HasItems", {"Ref": "Items"}, {"Ref": "AWS::NoValue"}]}]},
            }
        },
    }
    assert Stack(template, {}).resources["R"]["Properties"]["L"] == ["a"]
    assert Stack(template, {"Items": "x,y"}).resources["R"]["Properties"]["L"] == ["a", ["x", "y"]]


# --------------------------------------------------------------------------
# The template as written


def test_cfn_lint_reports_nothing() -> None:
    matches = lint(TEMPLATE_PATH.read_text(encoding="utf-8"), config=ManualArgs(regions=[REGION], include_checks=["I"]))
    assert [str(m) for m in matches] == []


def test_transform_succeeds_and_leaves_no_sam_resource(cfn_template: dict[str, Any]) -> None:
    types = {resource["Type"] for resource in cfn_template["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types), types
    assert "Transform" not in cfn_template


def test_code_locations_exist(sam_template: dict[str, Any]) -> None:
    resources = sam_template["Resources"]
    layer = resources["RotationCoreLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/rotation_core/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    assert layer["Properties"]["RetentionPolicy"] == "Delete"
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert (PROJECT_ROOT / "layers/rotation_core/requirements.txt").is_file()
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function":
            code_uri = resource["Properties"]["CodeUri"]
            assert (PROJECT_ROOT / code_uri / "requirements.txt").is_file(), logical_id
            module, _, handler = resource["Properties"]["Handler"].partition(".")
            assert (module, handler) == ("app", "lambda_handler"), logical_id


def test_parameters_defaults_match_aws(sam_template: dict[str, Any]) -> None:
    parameters = sam_template["Parameters"]
    # AWS's PostgreSQL default: : / @ " ' and a backslash; this is the YAML quoting test.
    assert parameters["ExcludeCharacters"]["Default"] == ":/@\"'\\"
    assert parameters["PasswordLength"] == {**parameters["PasswordLength"], "Type": "Number", "Default": 32}
    for name in ("ExcludeNumbers", "ExcludePunctuation", "ExcludeUppercase", "ExcludeLowercase"):
        assert parameters[name]["Default"] == "false", name
        assert parameters[name]["AllowedValues"] == ["true", "false"], name
    assert parameters["RequireEachIncludedType"]["Default"] == "true"
    assert parameters["RotationStrategy"]["AllowedValues"] == ["auto", "single-user", "alternating-users"]
    assert parameters["RotationStrategy"]["Default"] == "auto"
    assert parameters["ConnectTimeout"]["Default"] == 5
    assert parameters["DbCaBundle"]["Default"] == ""
    assert parameters["MetricsNamespace"]["Default"] == "SecretsManagerRotation"
    assert parameters["Architecture"]["Default"] == "x86_64"
    for name in (*MASTER_PARAMETERS.values(), "KmsKeyArns", "SubnetIds", "SecurityGroupIds"):
        assert parameters[name]["Type"] == "CommaDelimitedList", name
        assert parameters[name]["Default"] == "", name
    # Everything operational is off or minimal by default.
    assert parameters["EnableTracing"]["Default"] == "false"
    assert parameters["CreateSecretsManagerEndpoint"]["Default"] == "false"
    assert parameters["RotationEventScope"]["Default"] == "attached-secrets"
    for name in ("VpcId", "NotificationEmail", "NotificationKmsKeyArn", "LogsKmsKeyArn"):
        assert parameters[name]["Default"] == "", name


def test_every_parameter_is_in_the_console_groups(sam_template: dict[str, Any]) -> None:
    groups = sam_template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(sam_template["Parameters"]), "each parameter in exactly one group"


def test_defaults_deploy_the_functions_alarms_and_topic_and_attach_nothing(cfn_template: dict[str, Any]) -> None:
    """Only the optional resources are left out by default; secrets are attached by attach.yaml."""
    assert Stack(cfn_template, {}).of_type("AWS::SecretsManager::RotationSchedule") == {}
    optional = {
        "RotationEventRule",
        "NotificationEmailSubscription",
        "SecretsManagerEndpoint",
        "SecretsManagerEndpointSecurityGroup",
        *AUDIT_RESOURCES,
    }
    assert optional <= set(cfn_template["Resources"])
    assert set(cfn_template["Resources"]) - set(Stack(cfn_template, {}).resources) == optional
    everything = Stack(cfn_template, SCENARIOS["everything"]).resources
    assert set(everything) == set(cfn_template["Resources"]), "every resource can be switched on"


# --------------------------------------------------------------------------
# Functions


def test_functions_run_python_313_at_128_mb_with_the_layer(stack: Stack) -> None:
    layers = stack.of_type("AWS::Lambda::LayerVersion")
    assert len(layers) == 1
    ((layer_id, layer),) = layers.items()
    assert layer_id.startswith("RotationCoreLayer")
    assert layer["Properties"]["CompatibleRuntimes"] == [RUNTIME]
    architecture = stack.parameters["Architecture"]
    assert layer["Properties"]["CompatibleArchitectures"] == [architecture]
    for logical_id, function in functions_of(stack).items():
        properties = function["Properties"]
        assert properties["Runtime"] == RUNTIME, logical_id
        assert properties["MemorySize"] == MEMORY_MB, logical_id
        assert properties["Timeout"] == TIMEOUT_SECONDS, logical_id
        assert properties["Architectures"] == [architecture], logical_id
        assert properties["Layers"] == [f"{{Ref:{layer_id}}}"], logical_id
        assert properties["Handler"] == "app.lambda_handler", logical_id


def test_function_names_are_explicit_and_fit(stack: Stack) -> None:
    functions = functions_of(stack)
    names = [function["Properties"]["FunctionName"] for function in functions.values()]
    assert functions["PostgresRotationFunction"]["Properties"]["FunctionName"] == f"{STACK}-postgres"
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name), name


def test_postgres_function_environment(cfn_template: dict[str, Any]) -> None:
    stack = Stack(cfn_template, {})
    variables = stack.resources["PostgresRotationFunction"]["Properties"]["Environment"]["Variables"]
    assert variables == {
        "PASSWORD_LENGTH": "32",
        "EXCLUDE_CHARACTERS": ":/@\"'\\",
        "EXCLUDE_NUMBERS": "false",
        "EXCLUDE_PUNCTUATION": "false",
        "EXCLUDE_UPPERCASE": "false",
        "EXCLUDE_LOWERCASE": "false",
        "REQUIRE_EACH_INCLUDED_TYPE": "true",
        "ROTATION_STRATEGY": "auto",
        "DB_CA_BUNDLE": "",
        "CONNECT_TIMEOUT": "5",
        "SECRETS_MANAGER_ENDPOINT": f"https://secretsmanager.{REGION}.{URL_SUFFIX}",
        "POWERTOOLS_SERVICE_NAME": "postgres-rotation",
        "POWERTOOLS_METRICS_NAMESPACE": "SecretsManagerRotation",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "TRUSTED_SECRET_ARNS": "",
    }


@pytest.mark.parametrize(
    ("function_id", "parameter"),
    [
        ("PostgresRotationFunction", "PostgresMasterSecretArns"),
        ("MySqlRotationFunction", "MySqlMasterSecretArns"),
        ("RedshiftRotationFunction", "RedshiftMasterSecretArns"),
        ("ApiKeyRotationFunction", "ApiKeyAdminSecretArns"),
    ],
)
def test_rotated_secrets_may_name_only_the_secrets_the_function_may_read(
    cfn_template: dict[str, Any], function_id: str, parameter: str
) -> None:
    """TRUSTED_SECRET_ARNS holds exactly the ARNs the role may read besides rotated secrets:
    a rotated secret cannot name another rotated secret as its master, admin or verify secret."""
    arns = [
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:one-AbCdEf",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:two-??????",
    ]
    stack = Stack(cfn_template, {parameter: ",".join(arns)})
    variables = stack.resources[function_id]["Properties"]["Environment"]["Variables"]
    assert variables["TRUSTED_SECRET_ARNS"] == ",".join(arns)
    from rotation_core import settings

    assert settings.load({"TRUSTED_SECRET_ARNS": variables["TRUSTED_SECRET_ARNS"]}).trusted_secret_arns == set(arns)


def test_environment_follows_parameters(cfn_template: dict[str, Any]) -> None:
    stack = Stack(
        cfn_template,
        {
            "PasswordLength": "40",
            "ExcludeCharacters": "abc",
            "ExcludePunctuation": "true",
            "RequireEachIncludedType": "false",
            "RotationStrategy": "alternating-users",
            "DbCaBundle": "/opt/python/rds-global-bundle.pem",
            "ConnectTimeout": "9",
            "MetricsNamespace": "Other",
            "LogLevel": "DEBUG",
        },
    )
    for logical_id, function in functions_of(stack).items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert {
            key: variables[key]
            for key in (
                "PASSWORD_LENGTH",
                "EXCLUDE_CHARACTERS",
                "EXCLUDE_PUNCTUATION",
                "REQUIRE_EACH_INCLUDED_TYPE",
                "ROTATION_STRATEGY",
                "DB_CA_BUNDLE",
                "CONNECT_TIMEOUT",
                "POWERTOOLS_METRICS_NAMESPACE",
                "POWERTOOLS_LOG_LEVEL",
            )
        } == {
            "PASSWORD_LENGTH": "40",
            "EXCLUDE_CHARACTERS": "abc",
            "EXCLUDE_PUNCTUATION": "true",
            "REQUIRE_EACH_INCLUDED_TYPE": "false",
            "ROTATION_STRATEGY": "alternating-users",
            # redshift-connector takes no CA file: that function keeps DB_CA_BUNDLE empty
            "DB_CA_BUNDLE": "" if logical_id in NO_CA_BUNDLE else "/opt/python/rds-global-bundle.pem",
            "CONNECT_TIMEOUT": "9",
            "POWERTOOLS_METRICS_NAMESPACE": "Other",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
        }, logical_id


def test_each_function_has_its_own_service_name(stack: Stack) -> None:
    names = [
        f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] for f in functions_of(stack).values()
    ]
    assert len(set(names)) == len(names)
    assert all(name.endswith("-rotation") for name in names), names


def test_secrets_manager_may_invoke_each_function_from_this_account_only(stack: Stack) -> None:
    permissions = stack.of_type("AWS::Lambda::Permission")
    assert "PostgresRotationFunctionInvokePermission" in permissions
    for logical_id in functions_of(stack):
        names = {f"{{Ref:{logical_id}}}", f"{{GetAtt:{logical_id}.Arn}}"}
        own = [p["Properties"] for p in permissions.values() if p["Properties"]["FunctionName"] in names]
        assert len(own) == 1, logical_id
        assert {key: value for key, value in own[0].items() if key != "FunctionName"} == {
            "Action": "lambda:InvokeFunction",
            "Principal": "secretsmanager.amazonaws.com",
            "SourceAccount": ACCOUNT,
            # Secrets Manager invokes with the secret's ARN as aws:SourceArn: any secret of this
            # account and Region (an exact ARN would tie the function to one secret).
            "SourceArn": f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:*",
        }, logical_id


def test_vpc_config_only_with_both_subnets_and_security_groups(cfn_template: dict[str, Any]) -> None:
    # One without the other is refused (Rules) rather than silently running outside the VPC.
    for half in ({"SubnetIds": ",".join(SUBNETS)}, {"SecurityGroupIds": ",".join(SECURITY_GROUPS)}):
        with pytest.raises(RuleViolated, match="both SubnetIds and SecurityGroupIds"):
            Stack(cfn_template, half)
    cases = [
        ({}, None),
        (
            {"SubnetIds": ",".join(SUBNETS), "SecurityGroupIds": ",".join(SECURITY_GROUPS)},
            {"SubnetIds": SUBNETS, "SecurityGroupIds": SECURITY_GROUPS},
        ),
    ]
    for overrides, expected in cases:
        stack = Stack(cfn_template, overrides)
        for logical_id, function in functions_of(stack).items():
            assert function["Properties"].get("VpcConfig") == expected, (logical_id, overrides)
            role_id, role = role_of(stack, function)
            ec2_statements = [
                s for s in statements_of(stack, role_id) if any(a.startswith("ec2:") for a in as_list(s["Action"]))
            ]
            managed = role["Properties"].get("ManagedPolicyArns", [])
            has_vpc_permissions = bool(ec2_statements) or any("AWSLambdaVPCAccessExecutionRole" in a for a in managed)
            assert has_vpc_permissions == (expected is not None), (logical_id, overrides)
            if ec2_statements:
                actions = {a for s in ec2_statements for a in as_list(s["Action"])}
                assert actions >= {
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DeleteNetworkInterface",
                }
                assert all(a.startswith("ec2:") for a in actions)


def test_outputs_give_function_and_layer_arns(stack: Stack) -> None:
    (layer_id,) = stack.of_type("AWS::Lambda::LayerVersion")
    values = set(stack.outputs.values())
    assert f"{{Ref:{layer_id}}}" in values
    for logical_id in functions_of(stack):
        assert f"{{GetAtt:{logical_id}.Arn}}" in values


# --------------------------------------------------------------------------
# IAM


def test_each_function_has_its_own_lambda_role(stack: Stack) -> None:
    role_ids = []
    for function in functions_of(stack).values():
        role_id, role = role_of(stack, function)
        role_ids.append(role_id)
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    assert len(set(role_ids)) == len(role_ids), "roles are shared between functions"


def test_no_broad_managed_policies(stack: Stack) -> None:
    for function in functions_of(stack).values():
        _, role = role_of(stack, function)
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert arn.endswith(
                ("service-role/AWSLambdaBasicExecutionRole", "service-role/AWSLambdaVPCAccessExecutionRole")
            ), arn


def test_secrets_manager_statements_are_least_privilege(stack: Stack) -> None:
    for logical_id, function in functions_of(stack).items():
        own_arn = function_arn(function["Properties"]["FunctionName"])
        role_id, _ = role_of(stack, function)
        statements = statements_of(stack, role_id)
        actions = ROTATION_ACTIONS_BY_FUNCTION.get(logical_id, SECRETS_MANAGER_ROTATION_ACTIONS)
        problems = [
            (statement.get("Sid"), problem)
            for statement in statements
            for problem in secrets_manager_problems(statement, own_arn, master_arns_for(stack, logical_id), actions)
        ]
        assert problems == [], logical_id
        rotation = [s for s in statements if ROTATION_CONDITION_KEY in s.get("Condition", {}).get("StringEquals", {})]
        assert len(rotation) == 1, logical_id
        assert set(as_list(rotation[0]["Action"])) == actions


def test_no_statement_anywhere_grants_random_password_or_unconditioned_secrets(stack: Stack) -> None:
    """Also covers statements of roles or policies no function uses (they must not exist)."""
    for resource in stack.resources.values():
        documents: list[dict[str, Any]] = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])]
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents = [resource["Properties"]["PolicyDocument"]]
        for document in documents:
            for statement in as_list(document["Statement"]):
                actions = as_list(statement.get("Action", []))
                assert not any(grants(a, "secretsmanager:GetRandomPassword") for a in actions), statement
                reads_secrets = any(grants(a, "secretsmanager:GetSecretValue") for a in actions)
                if reads_secrets and any("*" in r for r in as_list(statement["Resource"])):
                    conditions = statement.get("Condition", {}).get("StringEquals", {})
                    assert ROTATION_CONDITION_KEY in conditions, statement


@pytest.mark.parametrize(("function_id", "parameter"), sorted(MASTER_PARAMETERS.items()))
def test_master_secret_read_exists_only_when_arns_are_given(
    cfn_template: dict[str, Any], function_id: str, parameter: str
) -> None:
    def master_statements(stack: Stack, of: str = function_id) -> list[dict[str, Any]]:
        role_id, _ = role_of(stack, stack.resources[of])
        return [
            s
            for s in statements_of(stack, role_id)
            if "secretsmanager:GetSecretValue" in as_list(s["Action"]) and "Condition" not in s
        ]

    assert master_statements(Stack(cfn_template, {})) == []
    with_masters = master_statements(Stack(cfn_template, {parameter: ",".join(MASTER_ARNS)}))
    assert len(with_masters) == 1
    assert as_list(with_masters[0]["Action"]) == ["secretsmanager:GetSecretValue"]
    assert with_masters[0]["Resource"] == MASTER_ARNS
    one = master_statements(Stack(cfn_template, {parameter: MASTER_ARNS[0]}))
    assert one[0]["Resource"] == [MASTER_ARNS[0]]
    # Other optional grants, and other engines' master secrets, do not switch it on.
    others = {"KmsKeyArns": KMS_ARNS[0], "SubnetIds": SUBNETS[0], "SecurityGroupIds": SECURITY_GROUPS[0]}
    others.update({p: MASTER_ARNS[0] for p in MASTER_PARAMETERS.values() if p != parameter})
    assert master_statements(Stack(cfn_template, others)) == []


@pytest.mark.parametrize("parameter", sorted(MASTER_PARAMETERS.values()))
@pytest.mark.parametrize(
    "value",
    [
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:*",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!*",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/*-??????",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pg-master-*",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pg-master-?????",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pgmaster",  # partial: IAM matches nothing
        f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:pg-master-AbCdEf",
        "*",
        "pg-master",
        f"{MASTER_ARNS[0]},arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:*",
    ],
)
def test_master_secrets_are_never_named_by_wildcard(cfn_template: dict[str, Any], parameter: str, value: str) -> None:
    """Any secret a function rotates may name any listed master in its masterarn: a wildcard
    would hand the function (and so whoever writes a rotated secret) every matching master."""
    with pytest.raises(ParameterRejected):
        Stack(cfn_template, {parameter: value})


def test_no_statement_reads_master_secrets_by_wildcard(stack: Stack) -> None:
    """GetSecretValue and DescribeSecret without the rotation condition: listed ARNs only, no wildcard.
    (The audit's role describes every secret and reads none: tests/test_template_audit.py.)"""
    for role_id in set(stack.of_type("AWS::IAM::Role")) - AUDIT_ROLES:
        for statement in statements_of(stack, role_id):
            actions = as_list(statement["Action"])
            reads = [
                a
                for a in actions
                if grants(a, "secretsmanager:GetSecretValue") or grants(a, "secretsmanager:DescribeSecret")
            ]
            if not reads or ROTATION_CONDITION_KEY in statement.get("Condition", {}).get("StringEquals", {}):
                continue
            assert wildcard_problems(as_list(statement["Resource"])) == [], (role_id, statement.get("Sid"))


@pytest.mark.parametrize("function_id", sorted(DATABASE_LOOKUPS))
def test_master_secret_tags_and_redshift_lookups_only_with_master_secrets(
    cfn_template: dict[str, Any], function_id: str
) -> None:
    parameter = MASTER_PARAMETERS[function_id]
    for overrides, with_masters in (({}, False), ({parameter: ",".join(MASTER_ARNS)}, True)):
        stack = Stack(cfn_template, overrides)
        role_id, _ = role_of(stack, stack.resources[function_id])
        statements = {s["Sid"]: normalized(s) for s in statements_of(stack, role_id)}
        tags = statements.get("ReadMasterSecretTags")
        if with_masters:
            assert tags == {"Effect": "Allow", "Action": "secretsmanager:DescribeSecret", "Resource": MASTER_ARNS}
        else:
            assert tags is None
        lookups = {sid: s for sid, s in statements.items() if sid.startswith("LookUp")}
        assert lookups == {
            sid: normalized(s) for sid, s in database_lookups(function_id, with_masters=with_masters).items()
        }


def test_database_lookups_are_read_only_and_in_this_account_and_region(stack: Stack) -> None:
    """Every rds:, redshift: or redshift-serverless: grant is a Describe or List call; the RDS ones,
    which support resource-level permissions, name only this account's instances and clusters here."""
    for role_id in stack.of_type("AWS::IAM::Role"):
        for statement in statements_of(stack, role_id):
            actions = as_list(statement["Action"])
            services = {a.split(":", 1)[0] for a in actions}
            if not services & {"rds", "redshift", "redshift-serverless"}:
                continue
            assert services <= {"rds", "redshift", "redshift-serverless"}, statement
            assert all(a.split(":", 1)[1].startswith(("Describe", "List")) for a in actions), statement
            assert "Condition" not in statement and statement["Effect"] == "Allow"
            if services == {"rds"}:
                (action,) = actions
                kind = {"rds:DescribeDBInstances": "db", "rds:DescribeDBClusters": "cluster"}[action]
                assert as_list(statement["Resource"]) == [f"arn:{PARTITION}:rds:{REGION}:{ACCOUNT}:{kind}:*"]


def test_kms_decrypt_only_for_listed_keys_through_secrets_manager(cfn_template: dict[str, Any]) -> None:
    def kms_statements(stack: Stack) -> list[dict[str, Any]]:
        found = []
        for role_id, resource in stack.of_type("AWS::IAM::Role").items():
            if role_id in AUDIT_ROLES:  # its key is the topic's: tests/test_template_audit.py
                continue
            for policy in resource["Properties"].get("Policies", []):
                found += [
                    s
                    for s in as_list(policy["PolicyDocument"]["Statement"])
                    if any(grants(a, "kms:Decrypt") for a in as_list(s["Action"]))
                ]
        return found

    assert kms_statements(Stack(cfn_template, {})) == []
    statements = kms_statements(Stack(cfn_template, {"KmsKeyArns": ",".join(KMS_ARNS)}))
    assert statements
    for statement in statements:
        assert statement["Resource"] == KMS_ARNS
        assert "kms:Decrypt" in as_list(statement["Action"])
        assert all(a.startswith("kms:") and "*" not in a for a in as_list(statement["Action"]))
        assert statement["Condition"] == {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}}


def test_logs_only_to_the_functions_own_log_group(stack: Stack) -> None:
    for logical_id, function in functions_of(stack).items():
        name = function["Properties"]["FunctionName"]
        log_groups = [
            lid
            for lid, group in stack.of_type("AWS::Logs::LogGroup").items()
            if group["Properties"]["LogGroupName"] == f"/aws/lambda/{name}"
        ]
        assert len(log_groups) == 1, logical_id
        role_id, role = role_of(stack, function)
        logs = [s for s in statements_of(stack, role_id) if any(a.startswith("logs:") for a in as_list(s["Action"]))]
        expected = f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{{Ref:{log_groups[0]}}}:*"
        for statement in logs:
            assert as_list(statement["Resource"]) == [expected], logical_id
            assert set(as_list(statement["Action"])) <= {"logs:CreateLogStream", "logs:PutLogEvents"}
        # Logging is granted inline (scoped as above) or by AWS's basic execution policy.
        managed = role["Properties"].get("ManagedPolicyArns", [])
        assert logs or any(a.endswith("service-role/AWSLambdaBasicExecutionRole") for a in managed)


def test_no_wildcard_actions(stack: Stack) -> None:
    for role_id in stack.of_type("AWS::IAM::Role"):
        for statement in statements_of(stack, role_id):
            for action in as_list(statement["Action"]):
                assert "*" not in action, (role_id, action)


# --------------------------------------------------------------------------
# Dependencies


def _references(node: Any) -> Iterator[str]:
    """Logical ids (and pseudo parameters) a piece of template refers to."""
    if isinstance(node, list):
        for item in node:
            yield from _references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else value.split(".", 1)[0]
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from (name.split(".", 1)[0] for name in _SUB_VARIABLE.findall(text))
                if isinstance(value, list):
                    yield from _references(value[1])
            else:
                yield from _references(value)


def dependency_graph(template: dict[str, Any]) -> dict[str, set[str]]:
    resources = template["Resources"]
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends_on = as_list(resource.get("DependsOn", []))
        refs = set(_references({k: v for k, v in resource.items() if k != "DependsOn"})) | set(depends_on)
        graph[logical_id] = {ref for ref in refs if ref in resources}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for neighbour in sorted(graph[node]):
            cycle = visit(neighbour)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"Role": {"Function"}, "Function": {"Role"}}) == ["Function", "Role", "Function"]
    assert find_cycle({"Role": set(), "Function": {"Role"}}) is None


def test_no_circular_dependency(cfn_template: dict[str, Any]) -> None:
    graph = dependency_graph(cfn_template)
    assert find_cycle(graph) is None
    functions = {lid for lid, r in cfn_template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
    for logical_id, resource in cfn_template["Resources"].items():
        if resource["Type"] in {"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            assert not graph[logical_id] & functions, f"{logical_id} refers to {graph[logical_id] & functions}"


def test_rotation_condition_names_the_function_by_its_name_not_a_reference(cfn_template: dict[str, Any]) -> None:
    """The unresolved condition value is built from the same expression as FunctionName."""
    resources = cfn_template["Resources"]
    for function in (
        r for lid, r in resources.items() if r["Type"] == "AWS::Lambda::Function" and lid != AUDIT_FUNCTION
    ):
        name = function["Properties"]["FunctionName"]
        assert isinstance(name, dict), "FunctionName must be set explicitly"
        assert name.keys() == {"Fn::Sub"}
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        documents = [p["PolicyDocument"] for p in resources[role_id]["Properties"]["Policies"]]
        values = [
            s["Condition"]["StringEquals"][ROTATION_CONDITION_KEY]
            for d in documents
            for s in d["Statement"]
            if ROTATION_CONDITION_KEY in s.get("Condition", {}).get("StringEquals", {})
        ]
        prefix = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
        assert values == [{"Fn::Sub": prefix + name["Fn::Sub"]}]


# --------------------------------------------------------------------------
# Least privilege, exactly: every statement of every function's role


def expected_statements(stack: Stack, function_id: str) -> dict[str, dict[str, Any]]:
    """Sid -> the whole statement each role must have, given the parameters; nothing else may be there."""
    function = stack.resources[function_id]["Properties"]
    name = function["FunctionName"]
    log_group = next(
        lid
        for lid, group in stack.of_type("AWS::Logs::LogGroup").items()
        if group["Properties"]["LogGroupName"] == f"/aws/lambda/{name}"
    )
    allow = {"Effect": "Allow"}
    expected: dict[str, dict[str, Any]] = {
        "WriteOwnLogs": {
            **allow,
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{{Ref:{log_group}}}:*",
        },
        "RotateSecretsThatNameThisFunction": {
            **allow,
            "Action": sorted(ROTATION_ACTIONS_BY_FUNCTION.get(function_id, SECRETS_MANAGER_ROTATION_ACTIONS)),
            "Resource": f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:*",
            "Condition": {"StringEquals": {ROTATION_CONDITION_KEY: function_arn(name)}},
        },
    }
    masters = master_arns_for(stack, function_id)
    if masters:
        sid = "ReadProviderAdminSecrets" if function_id == "ApiKeyRotationFunction" else "ReadMasterSecrets"
        expected[sid] = {**allow, "Action": "secretsmanager:GetSecretValue", "Resource": masters}
        if function_id in DATABASE_LOOKUPS:
            # The system tags of a master secret RDS or Redshift manages name its database.
            expected["ReadMasterSecretTags"] = {**allow, "Action": "secretsmanager:DescribeSecret", "Resource": masters}
    expected.update(database_lookups(function_id, with_masters=bool(masters)))
    keys = [key for key in stack.parameters["KmsKeyArns"] if key]
    if keys:
        expected["UseSecretKeysThroughSecretsManager"] = {
            **allow,
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": keys,
            "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}},
        }
    if function.get("VpcConfig"):
        expected["ManageVpcNetworkInterfaces"] = {
            **allow,
            # Lambda creates the network interfaces, so they cannot be named in advance.
            "Action": [
                "ec2:AssignPrivateIpAddresses",
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSubnets",
                "ec2:UnassignPrivateIpAddresses",
            ],
            "Resource": "*",
        }
    if function["TracingConfig"]["Mode"] == "Active":
        expected["WriteTraces"] = {
            **allow,
            # X-Ray has no resource-level permissions for these actions.
            "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
            "Resource": "*",
        }
    return expected


def normalized(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement with its Sid removed and Action lists sorted, for comparison."""
    result = {key: value for key, value in statement.items() if key != "Sid"}
    if isinstance(result.get("Action"), list):
        result["Action"] = sorted(result["Action"])
    return result


def test_each_role_has_exactly_the_expected_statements(stack: Stack) -> None:
    for function_id, function in functions_of(stack).items():
        role_id, role = role_of(stack, function)
        assert "ManagedPolicyArns" not in role["Properties"], role_id
        assert not role["Properties"].get("PermissionsBoundary"), role_id
        statements = statements_of(stack, role_id)
        sids = [statement.get("Sid") for statement in statements]
        assert len(set(sids)) == len(sids), f"{role_id}: every statement has its own Sid: {sids}"
        actual = {statement["Sid"]: normalized(statement) for statement in statements}
        assert actual == expected_statements(stack, function_id), function_id


def test_the_exact_check_fails_on_any_extra_grant(cfn_template: dict[str, Any]) -> None:
    """Add a statement (or widen one) in a copy of the template: the comparison above must fail."""
    broken = copy.deepcopy(cfn_template)
    role = broken["Resources"]["PostgresRotationFunctionRole"]["Properties"]
    role["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Sid": "Extra", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
    )
    stack = Stack(broken, {})
    role_id, _ = role_of(stack, stack.resources["PostgresRotationFunction"])
    actual = {s["Sid"]: normalized(s) for s in statements_of(stack, role_id)}
    assert actual != expected_statements(stack, "PostgresRotationFunction")
    own = function_arn(stack.resources["PostgresRotationFunction"]["Properties"]["FunctionName"])
    extra = next(s for s in statements_of(stack, role_id) if s["Sid"] == "Extra")
    assert secrets_manager_problems(extra, own, []), "a wildcard secret resource is reported"


@pytest.mark.parametrize(
    ("parameter", "value", "sid"),
    [
        ("EnableTracing", "true", "WriteTraces"),
        ("KmsKeyArns", KMS_ARNS[0], "UseSecretKeysThroughSecretsManager"),
    ],
)
def test_optional_grants_follow_their_parameter(
    cfn_template: dict[str, Any], parameter: str, value: str, sid: str
) -> None:
    for overrides, present in (({}, False), ({parameter: value}, True)):
        stack = Stack(cfn_template, overrides)
        for function in functions_of(stack).values():
            role_id, _ = role_of(stack, function)
            assert (sid in {s.get("Sid") for s in statements_of(stack, role_id)}) == present, (role_id, overrides)


# --------------------------------------------------------------------------
# Alarms, failed-rotation events, the notification topic


def topic_id(stack: Stack) -> str:
    (topic,) = stack.of_type("AWS::SNS::Topic")
    return topic


def test_one_errors_alarm_per_function_to_the_topic(stack: Stack) -> None:
    alarms = stack.of_type("AWS::CloudWatch::Alarm")
    topic = f"{{Ref:{topic_id(stack)}}}"
    for function_id in functions_of(stack):
        own = [
            a["Properties"]
            for a in alarms.values()
            if a["Properties"]["Dimensions"] == [{"Name": "FunctionName", "Value": f"{{Ref:{function_id}}}"}]
        ]
        assert len(own) == 1, function_id
        alarm = own[0]
        assert alarm["AlarmName"].startswith(f"{STACK}-"), "the topic policy lets this stack's alarms publish"
        assert {key: value for key, value in alarm.items() if key not in ("AlarmName", "AlarmDescription")} == {
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": f"{{Ref:{function_id}}}"}],
            "Statistic": "Sum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            # No invocation is no error; no OKActions: the alarm clears by itself once the
            # period passes, which says nothing about the secret.
            "TreatMissingData": "notBreaching",
            "AlarmActions": [topic],
        }, function_id
    audit_alarms = {"AuditFunctionErrorsAlarm", "AuditHighFindingsAlarm"} & set(alarms)
    assert len(alarms) == len(functions_of(stack)) + len(audit_alarms)


def test_topic_is_encrypted_with_a_key_alarms_and_eventbridge_may_use(cfn_template: dict[str, Any]) -> None:
    created = Stack(cfn_template, {})
    (key_id,) = created.of_type("AWS::KMS::Key")
    topic = created.resources[topic_id(created)]["Properties"]
    assert topic["KmsMasterKeyId"] == f"{{Ref:{key_id}}}"
    key = created.resources[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert [normalized(s) for s in key["KeyPolicy"]["Statement"]] == [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{PARTITION}:iam::{ACCOUNT}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        },
    ]
    given = Stack(cfn_template, {"NotificationKmsKeyArn": TOPIC_KEY})
    assert given.of_type("AWS::KMS::Key") == {}
    assert given.resources[topic_id(given)]["Properties"]["KmsMasterKeyId"] == TOPIC_KEY
    for alias in ("alias/aws/sns", "aws/sns"):
        with pytest.raises(ParameterRejected):
            Stack(cfn_template, {"NotificationKmsKeyArn": alias})


def test_topic_policy_lets_only_this_stacks_alarms_and_rule_publish(stack: Stack) -> None:
    topic = f"{{Ref:{topic_id(stack)}}}"
    ((_, policy),) = stack.of_type("AWS::SNS::TopicPolicy").items()
    assert policy["Properties"]["Topics"] == [topic]
    expected = [
        {
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic,
            "Condition": {
                "ArnLike": {"aws:SourceArn": f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:{STACK}-*"},
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
            },
        }
    ]
    # This stack's rule and the attach stacks' rules (attach.yaml): rules of this account and Region only.
    expected.append(
        {
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic,
            "Condition": {
                "ArnLike": {"aws:SourceArn": f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:rule/*"},
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
            },
        }
    )
    expected.append(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": topic,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    assert [normalized(s) for s in policy["Properties"]["PolicyDocument"]["Statement"]] == expected


def service_statement_problems(stack: Stack) -> list[str]:
    """Allow statements to an AWS service principal, in key and topic policies, without
    aws:SourceAccount = this account (a confused deputy: another account's alarm or rule)."""
    documents = [(key_id, key["Properties"]["KeyPolicy"]) for key_id, key in stack.of_type("AWS::KMS::Key").items()]
    documents += [
        (policy_id, policy["Properties"]["PolicyDocument"])
        for policy_id, policy in stack.of_type("AWS::SNS::TopicPolicy").items()
    ]
    problems = []
    for resource_id, document in documents:
        for statement in as_list(document["Statement"]):
            principal = statement.get("Principal")
            if statement["Effect"] != "Allow" or not (isinstance(principal, dict) and "Service" in principal):
                continue
            account = statement.get("Condition", {}).get("StringEquals", {}).get("aws:SourceAccount")
            if account != ACCOUNT:
                problems.append(f"{resource_id} {statement.get('Sid')}: aws:SourceAccount is {account}")
    return problems


def test_service_principals_act_only_for_this_account(stack: Stack) -> None:
    assert service_statement_problems(stack) == []
    # The check itself: the same stack with the condition removed from one statement.
    broken = copy.deepcopy(stack)
    ((_, policy),) = broken.of_type("AWS::SNS::TopicPolicy").items()
    del policy["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]["StringEquals"]
    assert service_statement_problems(broken)


def test_email_subscription_only_when_an_address_is_given(cfn_template: dict[str, Any]) -> None:
    assert Stack(cfn_template, {}).of_type("AWS::SNS::Subscription") == {}
    stack = Stack(cfn_template, {"NotificationEmail": "oncall@example.com"})
    ((_, subscription),) = stack.of_type("AWS::SNS::Subscription").items()
    assert subscription["Properties"] == {
        "TopicArn": f"{{Ref:{topic_id(stack)}}}",
        "Protocol": "email",
        "Endpoint": "oncall@example.com",
    }
    with pytest.raises(ParameterRejected):
        Stack(cfn_template, {"NotificationEmail": "not an address"})


ROTATION_EVENTS = {
    "source": ["aws.secretsmanager"],
    "detail-type": ["AWS Service Event via CloudTrail"],
    "detail": {
        "eventSource": ["secretsmanager.amazonaws.com"],
        "eventName": ["RotationFailed", "RotationAbandoned"],
    },
}


def test_failed_rotation_events_of_every_secret_reach_the_topic_on_request(cfn_template: dict[str, Any]) -> None:
    """attached-secrets (the default): the attach stacks' rules forward their secrets' events (attach.yaml)."""
    assert Stack(cfn_template, {}).of_type("AWS::Events::Rule") == {}
    everyone = Stack(cfn_template, {"RotationEventScope": "all-secrets"})
    ((_, rule),) = everyone.of_type("AWS::Events::Rule").items()
    assert rule["Properties"]["EventPattern"] == ROTATION_EVENTS
    assert rule["Properties"]["Targets"] == [{"Id": "notification-topic", "Arn": f"{{Ref:{topic_id(everyone)}}}"}]
    assert rule["Properties"].get("State", "ENABLED") == "ENABLED"


# --------------------------------------------------------------------------
# Network, tracing, logs


def test_secrets_manager_endpoint_only_on_request_and_only_https_from_the_functions(
    cfn_template: dict[str, Any],
) -> None:
    vpc = {"SubnetIds": ",".join(SUBNETS), "SecurityGroupIds": ",".join(SECURITY_GROUPS)}
    assert Stack(cfn_template, vpc).of_type("AWS::EC2::VPCEndpoint") == {}
    with pytest.raises(RuleViolated, match="needs VpcId"):
        Stack(cfn_template, {**vpc, "CreateSecretsManagerEndpoint": "true"})
    with pytest.raises(RuleViolated):
        Stack(cfn_template, {"CreateSecretsManagerEndpoint": "true", "VpcId": VPC})
    stack = Stack(cfn_template, {**vpc, "CreateSecretsManagerEndpoint": "true", "VpcId": VPC})
    ((_, endpoint),) = stack.of_type("AWS::EC2::VPCEndpoint").items()
    ((group_id, group),) = stack.of_type("AWS::EC2::SecurityGroup").items()
    assert endpoint["Properties"] == {
        "VpcEndpointType": "Interface",
        "ServiceName": f"com.amazonaws.{REGION}.secretsmanager",
        "VpcId": VPC,
        "SubnetIds": SUBNETS,
        "SecurityGroupIds": [f"{{Ref:{group_id}}}"],
        "PrivateDnsEnabled": True,
    }
    assert group["Properties"]["VpcId"] == VPC
    ingress = [
        {k: v for k, v in rule.items() if k != "Description"} for rule in group["Properties"]["SecurityGroupIngress"]
    ]
    assert ingress == [
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "SourceSecurityGroupId": SECURITY_GROUPS[0]}
    ]
    egress = [
        {k: v for k, v in rule.items() if k != "Description"} for rule in group["Properties"]["SecurityGroupEgress"]
    ]
    assert egress == [{"IpProtocol": "icmp", "FromPort": 252, "ToPort": 86, "CidrIp": "255.255.255.255/32"}]
    assert all(rule["Description"] for rule in group["Properties"]["SecurityGroupIngress"])


def test_tracing_is_off_by_default_and_on_together(cfn_template: dict[str, Any]) -> None:
    for value, mode, disabled in (("false", "PassThrough", "true"), ("true", "Active", "false")):
        stack = Stack(cfn_template, {"EnableTracing": value})
        for function_id, function in functions_of(stack).items():
            properties = function["Properties"]
            assert properties["TracingConfig"] == {"Mode": mode}, function_id
            assert properties["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == disabled, function_id


def test_log_groups_use_the_given_key(cfn_template: dict[str, Any]) -> None:
    for overrides, key in (({}, None), ({"LogsKmsKeyArn": LOGS_KEY}, LOGS_KEY)):
        groups = Stack(cfn_template, overrides).of_type("AWS::Logs::LogGroup")
        assert len(groups) == len(PREFIXES)
        for group in groups.values():
            assert group["Properties"].get("KmsKeyId") == key
            assert group["Properties"]["RetentionInDays"] == "365"


# --------------------------------------------------------------------------
# Publishing and the security checks' suppressions


def test_serverless_application_repository_metadata(sam_template: dict[str, Any]) -> None:
    """What `sam publish` sends; the patterns are the Serverless Application Repository API's."""
    app = sam_template["Metadata"]["AWS::ServerlessRepo::Application"]
    assert re.fullmatch(r"[a-zA-Z0-9\-]{1,140}", app["Name"])
    assert re.fullmatch(r"[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?", app["Author"]) and len(app["Author"]) <= 127
    assert 1 <= len(app["Description"]) <= 256
    assert 1 <= len(app["Labels"]) <= 10
    assert all(re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", label) for label in app["Labels"])
    assert app["SpdxLicenseId"] == "MIT-0"
    assert "MIT No Attribution" in (PROJECT_ROOT / app["LicenseUrl"]).read_text(encoding="utf-8")
    assert (PROJECT_ROOT / app["ReadmeUrl"]).is_file()
    assert "LicenseBody" not in app and "ReadmeBody" not in app
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{app["SemanticVersion"]}"' in pyproject, "one version for the project and the application"
    # The Serverless Application Repository accepts the AWS SAM transform only.
    assert sam_template["Transform"] == "AWS::Serverless-2016-10-31"


# Each suppressed checkov check, where it may be suppressed; the reason is in the template.
CHECKOV_SUPPRESSIONS = {
    "CKV_AWS_115": "AWS::Serverless::Function",  # function-level concurrency limit
    "CKV_AWS_116": "AWS::Serverless::Function",  # dead-letter queue
    "CKV_AWS_173": "AWS::Serverless::Function",  # environment variables encrypted with a customer key
    "CKV_AWS_117": "AWS::Serverless::Function",  # in a VPC (the audit only: it calls AWS APIs only)
}


def test_checkov_suppressions_are_few_and_explained(sam_template: dict[str, Any]) -> None:
    for logical_id, resource in sam_template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert CHECKOV_SUPPRESSIONS.get(skip["id"]) == resource["Type"], (logical_id, skip["id"])
            assert len(skip.get("comment", "").split()) >= 15, f"{logical_id} {skip['id']}: say why"
