"""Every command the README and docs/ show, run or checked here, so that none can rot.

A command is a line of a ```bash block (continuation lines joined, comments dropped), or an
inline `code span` that starts with a program this project documents (bin/rotate, make, sam,
aws). Each is handled by its program:

- bin/rotate: parsed by the command's own parser; every full command of a block (and every
  inline one that parses) is then run for real, in the order shown, against a local PostgreSQL
  and the Secrets Manager emulator, with the secrets the docs name, and its outcome compared
  with OUTCOMES below. A newly documented command fails this test until its outcome is added.
- make: the target exists and `make -n` accepts the command (variables too: make build ARCH=...);
  each VAR=value is one the Makefile or its scripts read. `make demo` and `make sandbox` are also
  run end to end (make demo by hand and CI's demo step, make sandbox by tests/test_sandbox.py),
  `make test` is CI's command (.ci/run).
- sam: every option is one `sam <command> --help` lists; a deploy runs until it needs AWS
  credentials (so sam accepted the template, samconfig.toml's environment and the parameters), and
  its --parameter-overrides are accepted by the template's constraints; `sam local invoke` names a
  function of template.yaml and a valid event file. `sam deploy --guided` is run by
  tests/test_attach_template.py.
- aws: the operation and every option exist in botocore's model of the service (AWS CLI options
  are the input members' names in kebab case), required members are given, JSON and shorthand
  values name real members.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from rotation_cli import paths
from rotation_cli.cli import build_parser
from tests.cli.conftest import run_bin
from tests.engines import PostgresHarness, new_password, unique
from tests.support.sam import NO_CREDENTIALS, SAM, sam_without_credentials

ROOT = paths.ROOT
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = re.compile(
    r"^(?:[A-Z_]+=\S+ )*(bin/rotate|make|sam|\.venv-sam/bin/sam|aws|\.venv/bin/python -m rotation_cli)( |$)"
)


@dataclass(frozen=True)
class Shown:
    where: str  # file:line
    text: str
    block: bool  # in a fenced block (a command to run), or an inline span (a mention, or a command)

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def _placeholders(line: str) -> str:
    """`<AWSPENDING version id>` -> `<AWSPENDING_version_id>`: one word, as a reader types one value."""
    return re.sub(r"<([^<>\n]+)>", lambda m: "<" + m.group(1).replace(" ", "_") + ">", line)


def _block_commands(path: Path, text: str) -> list[Shown]:
    shown = []
    for match in re.finditer(r"^```(bash|sh|shell)\n(.*?)^```", text, re.S | re.M):
        first = text[: match.start()].count("\n") + 2
        joined = re.sub(r"\\\n\s*", " ", match.group(2))
        for number, line in enumerate(joined.splitlines()):
            words = shlex.split(_placeholders(line), comments=True)
            if words:
                shown.append(Shown(f"{path.name}:{first + number}", shlex.join(words), block=True))
    return shown


def _inline_commands(path: Path, text: str) -> list[Shown]:
    prose = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
    shown = []
    for match in re.finditer(r"`([^`\n]+)`", prose):
        span = _placeholders(match.group(1).strip())
        if PROGRAMS.match(span) and " " in span and not span.startswith(("aws:", "aws/", "aws-")):
            line = prose[: match.start()].count("\n") + 1
            shown.append(Shown(f"{path.name}:{line}", span, block=False))
    return shown


def documented() -> list[Shown]:
    shown: list[Shown] = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        shown += _block_commands(path, text) + _inline_commands(path, text)
    return shown


def program_of(shown: Shown) -> tuple[dict[str, str], str, list[str]]:
    """(leading VAR=value assignments, program, arguments)."""
    words = shlex.split(re.sub(r"\[(--[a-z-]+)\]", r"\1", shown.text.replace("…", "")))
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words[:3] == [".venv/bin/python", "-m", "rotation_cli"]:
        return env, "bin/rotate", words[3:]
    program = "sam" if words[0] == ".venv-sam/bin/sam" else words[0]
    return env, program, words[1:]


def test_the_docs_show_commands_of_every_program() -> None:
    """The extraction itself: a README or docs/ edit that hides commands from this test fails it."""
    programs = {program_of(s)[1] for s in documented()}
    assert programs == {"bin/rotate", "make", "sam", "aws"}
    assert len([s for s in documented() if s.block]) >= 15


# -- make -------------------------------------------------------------------------------------
def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))


def _read_by_the_build(variable: str) -> bool:
    sources = [ROOT / "Makefile", *(ROOT / "scripts").glob("*"), *(ROOT / "tests").rglob("*.py")]
    return any(re.search(rf"\b{variable}\b", p.read_text(encoding="utf-8")) for p in sources if p.is_file())


@pytest.mark.parametrize("shown", [s for s in documented() if program_of(s)[1] == "make"], ids=str)
def test_make_commands_exist_and_are_accepted(shown: Shown) -> None:
    env, _, words = program_of(shown)
    targets = [w for w in words if "=" not in w and not w.startswith("-")] or ["all"]  # `make -n`: the default
    variables = dict(w.split("=", 1) for w in words if "=" in w)
    assert targets and set(targets) <= _make_targets(), f"{shown}: no such make target"
    for variable in [*env, *variables]:
        assert _read_by_the_build(variable), f"{shown}: nothing reads {variable}"
    resolved = {k: ("https://example.com/bundle.pem" if v.startswith("<") else v) for k, v in variables.items()}
    done = subprocess.run(
        ["make", "-n", *targets, *(f"{k}={v}" for k, v in resolved.items())],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{shown}\n{done.stderr}"


def test_ci_runs_the_readmes_test_command() -> None:
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().endswith("exec make test")


# -- sam --------------------------------------------------------------------------------------
@cache
def _sam_help(*command: str) -> str:
    done = subprocess.run(
        [str(SAM), *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert done.returncode == 0, f"sam {' '.join(command)}: {done.stderr}"
    return done.stdout


def _sam_command(words: list[str]) -> tuple[list[str], list[str]]:
    command = [words[0]]
    if words[0] == "local" and len(words) > 1:
        command.append(words[1])
    return command, words[len(command) :]


def _options(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if w.startswith("-")]


def _parameter_overrides(words: list[str]) -> dict[str, str]:
    if "--parameter-overrides" not in words:
        return {}
    given = {}
    for word in words[words.index("--parameter-overrides") + 1 :]:
        if word.startswith("-"):
            break
        key, _, value = word.partition("=")
        given[key] = value
    return given


@pytest.mark.parametrize("shown", [s for s in documented() if program_of(s)[1] == "sam"], ids=str)
def test_sam_commands_use_real_options_and_parameters(shown: Shown, tmp_path: Path) -> None:
    if not SAM.exists():
        pytest.skip("the SAM CLI is installed by `make test` (.venv-sam)")
    from tests.test_template import Stack, load_template

    _, _, words = program_of(shown)
    command, rest = _sam_command(words)
    help_text = _sam_help(*command)
    for option in _options(rest):
        assert re.search(rf"(?<![\w-]){re.escape(option)}\b", help_text), f"{shown}: sam {command} has no {option}"
    template_path = ROOT / ("attach.yaml" if "attach" in rest else "template.yaml")
    overrides = _parameter_overrides(rest)
    if overrides:
        Stack(load_template(template_path), overrides)  # ParameterRejected / unknown names fail here
    if command == ["local", "invoke"] and rest:
        function, event = rest[0], rest[rest.index("-e") + 1]
        resource = load_template()["Resources"][function]
        assert resource["Type"] == "AWS::Serverless::Function"
        doc = json.loads((ROOT / event).read_text(encoding="utf-8"))
        assert set(doc) == {"Step", "SecretId", "ClientRequestToken"}
    if command == ["deploy"] and "--guided" not in rest and rest:
        _deploy_until_credentials(shown, rest, tmp_path)


def _deploy_until_credentials(shown: Shown, rest: list[str], tmp_path: Path) -> None:
    """Run the deploy with no AWS credentials: it stops at its first AWS call, after sam has
    read samconfig.toml's environment, the template and the parameters."""
    done = sam_without_credentials(["deploy", *rest, "--debug", "--region", "us-east-1"], tmp_path)
    output = done.stdout + done.stderr
    assert NO_CREDENTIALS in output, f"{shown}\n{output[-3000:]}"
    template = "attach.yaml" if "--config-env" in rest and "attach" in rest else "template.yaml"
    assert template in output, f"{shown}: sam did not read {template}"


# -- aws --------------------------------------------------------------------------------------
# Options the AWS CLI adds to these commands (awscli/customizations/ec2/secgroupsimplify.py).
CLI_CUSTOMIZATIONS = {("ec2", "authorize-security-group-ingress"): {"--protocol", "--port", "--source-group", "--cidr"}}


def _kebab(name: str) -> str:
    from botocore import xform_name

    return xform_name(name).replace("_", "-")


def _shorthand_keys(value: str) -> list[str]:
    depth, keys, token = 0, [], ""
    for char in value + ",":
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            keys.append(token.split("=", 1)[0])
            token = ""
        else:
            token += char
    return keys


@pytest.mark.parametrize("shown", [s for s in documented() if program_of(s)[1] == "aws"], ids=str)
def test_aws_commands_match_the_service_model(shown: Shown) -> None:
    import botocore.session

    _, _, words = program_of(shown)
    service, operation = words[0], words[1]
    model = botocore.session.get_session().get_service_model(service)
    names = {_kebab(name): name for name in model.operation_names}
    assert operation in names, f"{shown}: {service} has no {operation}"
    shape = model.operation_model(names[operation]).input_shape
    members = {_kebab(name): name for name in shape.members}
    extra = CLI_CUSTOMIZATIONS.get((service, operation), set())
    given = set()
    for index, option in enumerate(words[2:], start=2):
        if not option.startswith("--"):
            continue
        name = option[2:]
        if option in extra:
            given.add(option)
            continue
        negated = name.removeprefix("no-")
        if name not in members and negated in members and shape.members[members[negated]].type_name == "boolean":
            given.add(members[negated])
            continue
        assert name in members, f"{shown}: {operation} has no option {option}"
        given.add(members[name])
        value = words[index + 1] if index + 1 < len(words) else ""
        member = shape.members[members[name]]
        if member.type_name == "structure" and value.startswith("{"):
            assert set(json.loads(value)) <= set(member.members), f"{shown}: {option} {value}"
        elif member.type_name == "structure":
            assert set(_shorthand_keys(value)) <= set(member.members), f"{shown}: {option} {value}"
        elif member.type_name == "list" and member.member.type_name == "structure":
            assert set(_shorthand_keys(value)) <= set(member.member.members), f"{shown}: {option} {value}"
    missing = set(shape.required_members) - given
    if shown.block and not extra & given:
        assert not missing, f"{shown}: missing {missing}"


# -- bin/rotate -------------------------------------------------------------------------------
@pytest.mark.parametrize("shown", [s for s in documented() if program_of(s)[1] == "bin/rotate"], ids=str)
def test_rotate_commands_name_real_commands_and_options(shown: Shown) -> None:
    _, _, words = program_of(shown)
    parser = build_parser()
    subcommands = {
        name for action in parser._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices
    }
    if not words or words[0].startswith("<"):
        return  # `bin/rotate <command> …`: the program itself
    assert words[0] in subcommands, f"{shown}: no command {words[0]}"
    if shown.block:
        parser.parse_args(_with_values(words, {}))  # SystemExit(2) on an unknown option or a missing value


DOC_ARN_PREFIX = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
PENDING_PLACEHOLDER = "<AWSPENDING_version_id>"
# The outcome of every full bin/rotate command the docs show, run in this order against the
# emulator with the secrets they name (exit code, a phrase of the output).
OUTCOMES = {
    "bin/rotate rotate prod/app/postgres --local --engine postgres": (0, "rotation succeeded"),
    # After `rotate --local` on the emulator, the secret names a stand-in function that does not exist.
    "bin/rotate rotate prod/app/postgres --remote": (1, "does not exist: attach a deployed one"),
    "bin/rotate status prod/app/postgres": (0, "diagnosis"),
    "bin/rotate recover prod/app/postgres": (0, "nothing to recover"),
    "bin/rotate recover prod/app/postgres --apply": (0, "nothing to recover"),
    "bin/rotate attach prod/app/postgres --function "
    "arn:aws:lambda:us-east-1:123456789012:function:secrets-manager-rotation-postgres "
    "--schedule 'cron(0 3 ? * SUN *)' --duration 2h --no-rotate-now": (0, "attached"),
    "bin/rotate events arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/app/postgres-AbCdEf "
    "--token '<AWSPENDING_version_id>' --engine postgres": (0, "wrote"),
    "bin/rotate invoke --engine postgres -e events/postgres/createSecret.json": (0, "createSecret  ok"),
    "bin/rotate rotate sandbox/postgres/single --local --engine postgres": (0, "rotation succeeded"),
    # The audit commands, in an account holding one secret that does not rotate (_audited_account).
    "bin/rotate audit": (0, "audited 1 secret in 1 Region of 1 account: 0 critical, 0 high, 1 medium, 1 low"),
    "bin/rotate audit --region us-east-1 --region eu-west-1 --max-age 90d --require-cmk": (
        0,
        "audited 1 secret in 2 Regions of 1 account: 0 critical, 0 high, 1 medium, 2 low",
    ),
    "bin/rotate audit --all-regions --policy audit.toml --fail-on high --sarif audit.sarif": (
        0,
        "missing required tags: app, env, owner",
    ),
    "bin/rotate audit --assume-role arn:aws:iam::111122223333:role/SecretsAudit "
    "--assume-role arn:aws:iam::444455556666:role/SecretsAudit": (0, "audited 2 secrets"),  # moto: one account for both
    "bin/rotate audit --list-checks": (0, "SecretsManager.1  secretsmanager-rotation-enabled-check"),
    "bin/rotate audit --region us-east-1 --max-age 90d --require-tags app,owner --fail-on high": (
        0,
        "missing required tags: app, owner",
    ),
}


def _with_values(words: list[str], values: dict[str, str]) -> list[str]:
    return [
        values.get(word, "00000000-0000-4000-8000-000000000000" if word == PENDING_PLACEHOLDER else word)
        for word in words
    ]


@pytest.fixture
def documented_function(make_function: Any) -> str:
    """The function docs/rotate.md attaches, as the stack names it, held by moto."""
    return str(make_function(name="secrets-manager-rotation-postgres"))


@contextlib.contextmanager
def _in_account(account: str) -> Iterator[None]:
    """moto serves every request from MOTO_ACCOUNT_ID while it is set (this process runs it)."""
    saved = os.environ.get("MOTO_ACCOUNT_ID")
    os.environ["MOTO_ACCOUNT_ID"] = account
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = saved


def _audited_account(sm: Any, folder: Path) -> str:
    """The audit commands run in an account of their own, holding one secret that does not
    rotate, with the policy file docs/audit.md shows written where `--policy audit.toml` reads it."""
    from tests.audit.conftest import new_account

    account = new_account()
    with _in_account(account):
        secret = json.dumps({"username": "app", "password": new_password()})
        sm.create_secret(Name="prod/app/postgres", SecretString=secret)
    text = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    policy = re.search(r"^```toml\n(.*?)^```", text, re.S | re.M)
    assert policy, "docs/audit.md shows a policy file"
    (folder / "audit.toml").write_text(policy.group(1))
    return account


def test_every_documented_rotate_command_runs_as_shown(
    pg: PostgresHarness,
    sm: Any,
    moto_endpoint: str,
    documented_function: str,
    tmp_path: Path,
) -> None:
    from rotation_cli.driver import start_rotation

    full = []
    for shown in documented():
        _, program, words = program_of(shown)
        if program != "bin/rotate" or not words or words[0].startswith("<"):
            continue
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # argparse's usage text for a mention
                build_parser().parse_args(_with_values(words, {}))
        except SystemExit:
            assert not shown.block, f"{shown}: does not parse"
            continue  # an inline mention (`bin/rotate rotate --local`), checked above
        full.append((shown, words))
    shown_texts = {shlex.join(["bin/rotate", *words]) for _, words in full}
    assert shown_texts == set(OUTCOMES), "a documented command without an expected outcome, or one no longer shown"

    # The secrets the docs name, for real.
    values: dict[str, str] = {}
    for name in ("prod/app/postgres", "sandbox/postgres/single"):
        username, password = unique("app"), new_password()
        pg.create_user(username, password)
        arn = sm.create_secret(Name=name, SecretString=json.dumps(pg.secret(username, password)))["ARN"]
        values[f"{DOC_ARN_PREFIX}{name}-AbCdEf"] = arn
    env = {**os.environ, "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint, "AWS_ENDPOINT_URL": moto_endpoint}
    audit_account = _audited_account(sm, tmp_path)
    for shown, words in full:
        argv = _with_values(words, values)
        if words[0] == "invoke":  # as docs/local.md says: the sample event, with your secret and version
            sample = json.loads((ROOT / "events/postgres/createSecret.json").read_text(encoding="utf-8"))
            secret = values[f"{DOC_ARN_PREFIX}prod/app/postgres-AbCdEf"]
            event = tmp_path / "events/postgres/createSecret.json"
            event.parent.mkdir(parents=True, exist_ok=True)
            token = start_rotation(sm, secret)
            event.write_text(json.dumps({**sample, "SecretId": secret, "ClientRequestToken": token}))
        with _in_account(audit_account) if words[0] == "audit" else contextlib.nullcontext():
            done = run_bin([str(ROOT / "bin" / "rotate"), *argv], env=env, cwd=str(tmp_path))
        code, phrase = OUTCOMES[shlex.join(["bin/rotate", *words])]
        assert (done.code, phrase in done.out + done.err) == (code, True), f"{shown}\n{done}"
