"""Packaging proof: what `sam build` produces rotates a secret, and nothing else is needed.

`sam build` (no container, Python 3.13 first on PATH) builds template.yaml into a
temporary folder, run from a temporary working directory so that the repository's own
.aws-sam (build, cache and dependency folders) is never touched. Then, for every function
of the built template, a secret is rotated end to end through the BUILT artifacts only:
an isolated interpreter (`python3.13 -I -S`: no user site, no site-packages, no
PYTHON* variables) whose sys.path holds nothing but

- the function's build folder (Lambda's /var/task),
- the layers' build folders merged as Lambda mounts them (/opt/python, and
  /opt/python/lib/python3.13/site-packages),
- a folder with boto3, botocore and what they import (jmespath, s3transfer, urllib3,
  dateutil, six), standing in for the runtime's copy (/var/runtime),

plus the standard library. It imports the Handler named by the built template and invokes
it for the four steps, against moto's server and the real test database, with the
environment the template gives the function (parameter defaults). A missing dependency,
a file left out of a layer or a wrong handler path fails the rotation, and so this test;
test_the_proof_catches_broken_packages checks that on purposely broken copies. Each
function's deployed size (function plus layers, unzipped) is printed and must stay under
Lambda's 250 MB limit.

Both builds (x86_64 and arm64) are checked against the hash locks (requirements.lock beside
each requirements.txt; scripts/deploy_lock.py): every installed package is a locked wheel,
unchanged, and nothing else but the units' own source is there. A package the runtime also
has (urllib3, which the API key function bundles for its fixed decompression limits) must be
imported from the function's own copy.
"""

from __future__ import annotations

import email.parser
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from samtranslator.yaml_helper import yaml_parse

from devtools.tls import generate_ca, generate_server_tls
from scripts import deploy_lock, fetch_rds_ca
from tests.conftest import TARGETS
from tests.support import rotations
from tests.support.ca_server import BundleServer

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
MB = 1024 * 1024
LIMIT_BYTES = 250 * MB  # Lambda: function and layers, unzipped
# What the Python runtime provides in /var/runtime, and the functions must not ship.
RUNTIME_MODULES = ("boto3", "botocore", "jmespath", "s3transfer", "urllib3", "dateutil", "six")
BUILD_TIMEOUT = 600


def _python313() -> Path:
    found = subprocess.run(
        [str(ROOT / "scripts" / "python313.sh")], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not found:
        pytest.fail("Python 3.13 not found (scripts/python313.sh): the packaging proof needs it")
    return Path(found)


def _source_functions() -> dict[str, str]:
    """Function logical id -> engine (the folder of its CodeUri), from template.yaml."""
    template = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))
    functions = {}
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Serverless::Function":
            code_uri = str(resource.get("Properties", {}).get("CodeUri", ""))
            functions[name] = Path(code_uri.rstrip("/")).name
    return functions


FUNCTIONS = _source_functions()
#: The functions that rotate secrets (the fleet audit, functions/audit, rotates none: it is run
#: through its build by test_built_audit_function_audits_the_region).
ROTATION_FUNCTIONS = {name: engine for name, engine in FUNCTIONS.items() if engine != "audit"}


@dataclass
class Build:
    folder: Path
    template: dict[str, Any]
    python: Path
    runtime: Path  # the stand-in for /var/runtime
    seconds: float

    def function(self, name: str) -> dict[str, Any]:
        resource = self.template["Resources"].get(name)
        assert resource is not None, f"{name} is missing from the built template"
        return dict(resource["Properties"])

    def layer_folders(self, name: str) -> list[Path]:
        layers = list(self.template.get("Globals", {}).get("Function", {}).get("Layers", []))
        layers += list(self.function(name).get("Layers", []))
        folders = []
        for layer in layers:
            assert isinstance(layer, dict) and "Ref" in layer, f"{name}: layer {layer} is not a layer of this template"
            content = self.template["Resources"][layer["Ref"]]["Properties"]["ContentUri"]
            folders.append(self.folder / content)
        return folders

    def handler(self, name: str) -> str:
        handler = self.function(name).get("Handler") or self.template.get("Globals", {}).get("Function", {}).get(
            "Handler"
        )
        assert handler, f"{name} has no Handler"
        return str(handler)

    def environment(self, name: str) -> dict[str, str]:
        """The function's environment variables, parameters resolved to their defaults."""
        parameters = self.template.get("Parameters", {})
        merged = dict(self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
        merged.update(self.function(name).get("Environment", {}).get("Variables", {}))
        env = {}
        for key, item in merged.items():
            if isinstance(item, str | int | float):
                env[key] = str(item)
            elif isinstance(item, dict) and set(item) == {"Ref"} and "Default" in parameters.get(item["Ref"], {}):
                env[key] = str(parameters[item["Ref"]]["Default"])
        return env


def _size(folder: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(folder):
        for file in files:
            path = Path(base) / file
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def _sam_build(work: Path, python: Path, *overrides: str) -> None:
    """`sam build` of template.yaml into work/build, with parameter overrides (Name=Value)."""
    if not SAM.exists():
        pytest.skip(f"{SAM} is missing: `make sam-venv` installs the SAM CLI (make test does)")
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}", "SAM_CLI_TELEMETRY": "0"}
    # cwd=work: sam keeps its dependency folders in ./.aws-sam/deps, so never in the repository's.
    done = subprocess.run(
        [
            str(SAM),
            "build",
            "--template-file",
            str(TEMPLATE),
            "--base-dir",
            str(ROOT),
            "--build-dir",
            str(work / "build"),
            "--cache-dir",
            str(work / "cache"),
            "--cached",
            "--parallel",
            *(["--parameter-overrides", *overrides] if overrides else []),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"sam build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    import time

    work = tmp_path_factory.mktemp("sam-build")
    python = _python313()
    started = time.monotonic()
    _sam_build(work, python)
    runtime = work / "var-runtime"
    runtime.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in RUNTIME_MODULES:
        source = site / name if (site / name).is_dir() else site / f"{name}.py"
        assert source.exists(), f"{name} is not installed in {site}"
        (runtime / source.name).symlink_to(source)
    template = yaml.safe_load((work / "build" / "template.yaml").read_text(encoding="utf-8"))
    return Build(work / "build", template, python, runtime, time.monotonic() - started)


# The code the isolated interpreter runs: it sees only the paths it is given.
RUNNER = r"""
import importlib, json, sys, time
config = json.loads(sys.argv[1])
sys.path[:0] = config["path"]
results = {"steps": [], "outside": [], "imported": {}}

class Context:
    function_name = config["function"]
    function_version = "$LATEST"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + config["function"]
    log_group_name = "/aws/lambda/" + config["function"]
    log_stream_name = "packaging-proof"
    def __init__(self, n):
        self.aws_request_id = "00000000-0000-0000-0000-%012d" % n
    def get_remaining_time_in_millis(self):
        return 30000

def finish(code):
    ours, stdlib = tuple(config["path"]), tuple(config["stdlib"])
    for name, module in sorted(sys.modules.items()):
        where = getattr(module, "__file__", None)
        if not where or where.startswith(ours):
            continue
        if not where.startswith(stdlib) or "site-packages" in where:
            results["outside"].append(name + ": " + where)
    for name in config["report"]:
        module = sys.modules.get(name)
        results["imported"][name] = getattr(module, "__file__", None) if module else None
    with open(config["out"], "w") as out:
        json.dump(results, out)
    sys.exit(code)

module_name, _, attribute = config["handler"].rpartition(".")
try:
    handler = getattr(importlib.import_module(module_name), attribute)
except Exception as exc:
    error = type(exc).__name__ + ": " + str(exc)
    results["steps"].append({"step": "import " + config["handler"], "ok": False, "error": error})
    finish(1)
for n, event in enumerate(config["events"]):
    try:
        handler(event, Context(n))
    except Exception as exc:
        results["steps"].append({"step": event["Step"], "ok": False, "error": type(exc).__name__ + ": " + str(exc)})
        finish(1)
    results["steps"].append({"step": event["Step"], "ok": True})
finish(0)
"""


@dataclass
class Run:
    returncode: int
    steps: list[dict[str, Any]]
    outside: list[str]
    imported: dict[str, str | None]
    output: str

    @property
    def ok(self) -> bool:
        return (
            self.returncode == 0 and all(step["ok"] for step in self.steps) and len(self.steps) == len(rotations.STEPS)
        )


def run_built(
    build: Build,
    name: str,
    work: Path,
    events: list[dict[str, Any]],
    extra_env: dict[str, str],
    *,
    function_folder: Path | None = None,
    layer_folders: list[Path] | None = None,
    handler: str | None = None,
) -> Run:
    """Invoke the built handler for the events, in an isolated Python 3.13, as Lambda would."""
    task = function_folder or build.folder / build.function(name)["CodeUri"]
    opt = work / "opt"
    for layer in layer_folders if layer_folders is not None else build.layer_folders(name):
        shutil.copytree(layer, opt, dirs_exist_ok=True, symlinks=True)
    python_dir = opt / "python"
    paths = [str(task), str(python_dir / "lib" / "python3.13" / "site-packages"), str(python_dir), str(build.runtime)]
    prefix = Path(build.python).resolve().parent.parent / "lib"
    stdlib = [str(prefix / "python3.13"), str(prefix / "python313.zip")]
    out = work / "result.json"
    config = {
        "path": paths,
        "handler": handler or build.handler(name),
        "function": name,
        "events": events,
        "out": str(out),
        "stdlib": stdlib,
        "report": ["rotation_core", "aws_lambda_powertools", "psycopg2", "pymysql", *RUNTIME_MODULES],
    }
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(work),
        "TZ": "UTC",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "LAMBDA_TASK_ROOT": str(task),
        **build.environment(name),
        **extra_env,
    }
    done = subprocess.run(
        [str(build.python), "-I", "-S", "-c", RUNNER, json.dumps(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=work,
    )
    results = json.loads(out.read_text()) if out.exists() else {"steps": [], "outside": [], "imported": {}}
    return Run(done.returncode, results["steps"], results["outside"], results["imported"], done.stdout + done.stderr)


# ELF e_machine values: what the native libraries of a build were compiled for.
ELF_MACHINES = {"x86_64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
# The functions whose dependencies are native (psycopg2-binary; cryptography for MySQL's
# caching_sha2_password); the others and the layer are pure Python, so one build serves both.
NATIVE = {"postgres", "mysql"}


def _elf_machines(folder: Path) -> dict[str, int]:
    """Relative path -> e_machine of every ELF file under folder (shared libraries and extensions)."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as file:
                header = file.read(20)
            if header[:4] == b"\x7fELF":
                assert header[4] == 2 and header[5] == 1, f"{path}: not a 64-bit little-endian ELF"
                found[str(path.relative_to(folder))] = int.from_bytes(header[18:20], "little")
    return found


def _check_architecture(build_folder: Path, template: dict[str, Any], architecture: str) -> None:
    resources = template["Resources"]
    for name, engine in FUNCTIONS.items():
        machines = _elf_machines(build_folder / resources[name]["Properties"]["CodeUri"])
        if engine in NATIVE:
            assert machines, f"{name}: no native library found, the check would prove nothing"
        else:
            assert machines == {}, f"{name} is meant to be pure Python: {sorted(machines)}"
        wrong = {path: machine for path, machine in machines.items() if machine != ELF_MACHINES[architecture]}
        assert not wrong, f"{name}: not built for {architecture}: {wrong}"
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            assert _elf_machines(build_folder / resource["Properties"]["ContentUri"]) == {}, f"{name} is pure Python"


def test_default_build_is_for_x86_64(build: Build) -> None:
    _check_architecture(build.folder, build.template, "x86_64")


def test_arm64_build_has_aarch64_native_libraries(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`sam build --parameter-overrides Architecture=arm64`: SAM's Python builder fetches aarch64 wheels."""
    work = tmp_path_factory.mktemp("sam-build-arm64")
    _sam_build(work, _python313(), "Architecture=arm64")
    template = yaml.safe_load((work / "build" / "template.yaml").read_text(encoding="utf-8"))
    _check_architecture(work / "build", template, "arm64")
    # The aarch64 wheels come from pip downloads that check no hash: the lock is the check.
    assert deploy_lock.verify_build(work / "build") == []


def test_the_architecture_check_catches_a_wrong_build(build: Build) -> None:
    with pytest.raises(AssertionError, match="not built for arm64"):
        _check_architecture(build.folder, build.template, "arm64")


def _fixture_for(engine: str) -> str | None:
    for fixture in TARGETS:
        if fixture in (f"{engine}_harness", f"{engine}_target"):
            return fixture
    return None


def _bundled_runtime_modules(folders: list[Path]) -> set[str]:
    """The runtime's modules (RUNTIME_MODULES) that these function or layer folders bundle."""
    roots = [root for folder in folders for root in (folder, folder / "python")]
    return {m for m in RUNTIME_MODULES if any((r / m).is_dir() or (r / f"{m}.py").is_file() for r in roots)}


def _runtime_copies_used(run: Run, build: Build, bundled: set[str]) -> list[str]:
    """Bundled modules the function imported from the runtime's copy instead of its own."""
    return [
        f"{m}: {run.imported.get(m)}"
        for m in sorted(bundled)
        if run.imported.get(m) is None or str(run.imported[m]).startswith(str(build.runtime))
    ]


def test_build_is_quick_and_ships_no_boto3(build: Build) -> None:
    assert set(FUNCTIONS) <= set(build.template["Resources"]), "every function of template.yaml is built"
    for name in FUNCTIONS:
        folders = [build.folder / build.function(name)["CodeUri"], *build.layer_folders(name)]
        for folder in folders:
            shipped = [m for m in ("boto3", "botocore") if (folder / m).exists() or (folder / "python" / m).exists()]
            assert not shipped, f"{folder.name} bundles {shipped}: the Lambda runtime provides them"


def test_deployed_sizes_are_under_the_limit(build: Build, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"sam build: {build.seconds:.1f} s"]
    for name in FUNCTIONS:
        function = _size(build.folder / build.function(name)["CodeUri"])
        layers = sum(_size(folder) for folder in build.layer_folders(name))
        total = function + layers
        lines.append(
            f"{name}: {total / MB:.1f} MB deployed, unzipped "
            f"(function {function / MB:.1f} MB + layers {layers / MB:.1f} MB; limit {LIMIT_BYTES / MB:.0f} MB)"
        )
        assert total <= LIMIT_BYTES, f"{name} is {total} bytes unzipped, over Lambda's 250 MB"
    with capsys.disabled():
        sys.stdout.write("\n" + "\n".join("  packaging: " + line for line in lines) + "\n")


@pytest.mark.parametrize("name", sorted(ROTATION_FUNCTIONS))
def test_built_function_rotates_a_secret(
    name: str, build: Build, request: pytest.FixtureRequest, sm: Any, tmp_path: Path
) -> None:
    engine = FUNCTIONS[name]
    fixture = _fixture_for(engine)
    if fixture is None:
        pytest.skip(
            f"no Target fixture for the {engine} function in tests/conftest.py TARGETS "
            f"(expected {engine}_harness or {engine}_target)"
        )
    target = request.getfixturevalue(fixture)
    for number, strategy in enumerate(TARGETS[fixture]):
        arn, before = target.new_secret(sm, strategy)
        token = rotations.start_rotation(sm, arn)
        run_dir = tmp_path / f"{strategy}-{number}"
        run_dir.mkdir()
        events = [rotations.event(arn, token, step) for step in rotations.STEPS]
        # The function reads AWS's SECRETS_MANAGER_ENDPOINT, as deployed; boto3's own
        # variables are not set in its environment.
        run = run_built(
            build, name, run_dir, events, {**target.env(), "SECRETS_MANAGER_ENDPOINT": sm.meta.endpoint_url}
        )
        assert run.ok, f"{name} ({strategy}) failed through its built artifacts: {run.steps}\n{run.output[-3000:]}"
        assert not run.outside, f"{name} imported modules from outside its package: {run.outside}"
        bundled = _bundled_runtime_modules([build.folder / build.function(name)["CodeUri"], *build.layer_folders(name)])
        assert _runtime_copies_used(run, build, bundled) == [], f"{name} must use the copies it bundles"
        assert run.imported["rotation_core"] is not None
        assert str(run_dir / "opt") in str(run.imported["rotation_core"]), "rotation_core came from the layer"
        assert str(build.runtime) in str(run.imported["botocore"]), "botocore came from the runtime's copy"
        assert "AWSCURRENT" in rotations.stages(sm, arn)[token]
        after = json.loads(rotations.value(sm, arn, "AWSCURRENT"))
        assert after != before
        assert target.works(after), f"{name} ({strategy}): the new credential works"
        target.check_rotated(strategy, before, after)


def _first_built_function(build: Build) -> str:
    """A function that bundles dependencies (so "missing dependency" has one to remove)."""
    candidates = [name for name in sorted(ROTATION_FUNCTIONS) if _fixture_for(FUNCTIONS[name]) is not None]
    for name in candidates:
        folder = build.folder / build.function(name)["CodeUri"]
        if any(path.is_dir() and not path.name.startswith("__") for path in folder.iterdir()):
            return name
    if candidates:
        return candidates[0]
    pytest.skip("no function with a Target fixture")


@pytest.mark.parametrize("breakage", ["wrong handler", "file left out of the layer", "missing dependency"])
def test_the_proof_catches_broken_packages(
    breakage: str, build: Build, request: pytest.FixtureRequest, sm: Any, tmp_path: Path
) -> None:
    """The same run on a purposely broken copy of the built artifacts must fail."""
    name = _first_built_function(build)
    fixture = _fixture_for(FUNCTIONS[name])
    assert fixture is not None
    target = request.getfixturevalue(fixture)
    arn, _ = target.new_secret(sm, TARGETS[fixture][0])
    token = rotations.start_rotation(sm, arn)
    work = tmp_path
    task = work / "task"
    shutil.copytree(build.folder / build.function(name)["CodeUri"], task, symlinks=True)
    bundled = _bundled_runtime_modules([task, *build.layer_folders(name)])
    layers = []
    for number, folder in enumerate(build.layer_folders(name)):
        copy = work / f"layer{number}"
        shutil.copytree(folder, copy, symlinks=True)
        layers.append(copy)
    handler = None
    if breakage == "wrong handler":
        handler = build.handler(name).replace("lambda_handler", "lambda_handlr")
    elif breakage == "file left out of the layer":
        removed = [p for layer in layers for p in layer.rglob("rotation_core/strategies.py")]
        removed += [p for layer in layers for p in layer.rglob("rotation_core/protocol.py")]
        assert removed, "the layer holds rotation_core"
        for path in removed:
            path.unlink()
    else:
        # Everything sam build added to the function's own files: its dependencies.
        source = ROOT / "functions" / FUNCTIONS[name]
        vendored = [p for p in task.iterdir() if not (source / p.name).exists() and p.name != "__pycache__"]
        if not vendored:
            pytest.skip(f"{name} ships no dependency of its own")
        for path in vendored:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    events = [rotations.event(arn, token, step) for step in rotations.STEPS]
    run_dir = work / "run"
    run_dir.mkdir()
    run = run_built(
        build,
        name,
        run_dir,
        events,
        {**target.env(), "SECRETS_MANAGER_ENDPOINT": sm.meta.endpoint_url},
        function_folder=task,
        layer_folders=layers,
        handler=handler,
    )
    # A dependency the runtime also has (urllib3) is still found there: the proof is that the
    # function used the copy the build bundles.
    assert not run.ok or _runtime_copies_used(run, build, bundled), f"the proof did not notice: {breakage}"
    if run.ok:
        return
    assert "AWSCURRENT" not in rotations.stages(sm, arn)[token]


# --------------------------------------------------------------------------
# The fleet audit function, through its build

AUDIT_RUNNER = r"""
import importlib, json, sys
config = json.loads(sys.argv[1])
sys.path[:0] = config["path"]
module_name, _, attribute = config["handler"].rpartition(".")
handler = getattr(importlib.import_module(module_name), attribute)
out = {"result": handler({}, None), "outside": [], "imported": {}}
ours, stdlib = tuple(config["path"]), tuple(config["stdlib"])
for name, module in sorted(sys.modules.items()):
    where = getattr(module, "__file__", None)
    if not where or where.startswith(ours):
        continue
    if not where.startswith(stdlib) or "site-packages" in where:
        out["outside"].append(name + ": " + where)
for name in config["report"]:
    module = sys.modules.get(name)
    out["imported"][name] = getattr(module, "__file__", None) if module else None
with open(config["out"], "w") as handle:
    json.dump(out, handle, default=str)
"""


def test_built_audit_function_audits_the_region(
    build: Build, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduled audit, from its build folder and the built layer only, against moto: it
    audits the Region, prints its metrics (EMF) and sends its summary to the topic."""
    import secrets

    import boto3

    from devtools.audit_fleet import Fleet

    account = str(100_000_000_000 + secrets.randbelow(899_999_999_999))
    monkeypatch.setenv("MOTO_ACCOUNT_ID", account)  # moto serves this test from an account of its own
    fleet = Fleet(moto_endpoint, account)
    fleet.secret("app/open", tags={"app": "a"})
    fleet.resource_policy(
        "app/open", {"Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
    )
    fleet.secret("app/kept", tags={"app": "a"})
    fleet.rotate("app/kept", fleet.function("kept-rotation", engine="postgres"))
    sns, sqs = boto3.client("sns", endpoint_url=moto_endpoint), boto3.client("sqs", endpoint_url=moto_endpoint)
    topic = sns.create_topic(Name="notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    name = next(n for n, engine in FUNCTIONS.items() if engine == "audit")
    task = build.folder / build.function(name)["CodeUri"]
    opt = tmp_path / "opt"
    for layer in build.layer_folders(name):
        shutil.copytree(layer, opt, dirs_exist_ok=True, symlinks=True)
    python_dir = opt / "python"
    paths = [str(task), str(python_dir / "lib" / "python3.13" / "site-packages"), str(python_dir), str(build.runtime)]
    prefix = Path(build.python).resolve().parent.parent / "lib"
    out = tmp_path / "result.json"
    config = {
        "path": paths,
        "handler": build.handler(name),
        "out": str(out),
        "stdlib": [str(prefix / "python3.13"), str(prefix / "python313.zip")],
        "report": ["fleet_audit", "rotation_core", "aws_lambda_powertools", *RUNTIME_MODULES],
    }
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "LAMBDA_TASK_ROOT": str(task),
        **build.environment(name),  # AUDIT_POLICY, AUDIT_NOTIFY_ON, POWERTOOLS_*: the template's defaults
        "AWS_ENDPOINT_URL": moto_endpoint,  # every service of the function: moto's server
        "NOTIFICATION_TOPIC_ARN": topic,
    }
    done = subprocess.run(
        [str(build.python), "-I", "-S", "-c", AUDIT_RUNNER, json.dumps(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    assert env["AUDIT_POLICY"] == "{}" and env["AUDIT_NOTIFY_ON"] == "high"
    result = results["result"]
    assert result["summary"]["secrets"] == 2
    assert result["metrics"]["PublicPolicy"] == 1 and result["metrics"]["HighSeverityFindings"] == 1
    assert result["notified"] is True
    assert '"PublicPolicy"' in done.stdout and '"_aws"' in done.stdout, "EMF on stdout"
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert "public-policy" in json.loads(message["Body"])["Message"]
    assert results["outside"] == [], f"imported from outside its package: {results['outside']}"
    assert str(task) in str(results["imported"]["fleet_audit"]), "fleet_audit from the function's own folder"
    assert str(opt) in str(results["imported"]["aws_lambda_powertools"]), "Powertools from the layer"
    assert str(opt) in str(results["imported"]["rotation_core"])
    assert str(build.runtime) in str(results["imported"]["botocore"]), "boto3 and botocore: the runtime's"


# --------------------------------------------------------------------------
# The API key function's urllib3

# 2.6.0 fixed the decompression bombs CVE-2025-66471 (streaming API) and CVE-2025-66418
# (unbounded Content-Encoding chain); 2.6.3 and 2.7.0 fixed later bypasses. The function
# reads whatever a provider (named by the secret's writer) answers.
MIN_URLLIB3 = (2, 7, 0)


def _dist_version(folder: Path, name: str) -> str:
    (dist_info,) = [p for p in folder.glob("*.dist-info") if deploy_lock.canonical(p.name.split("-", 1)[0]) == name]
    return str(email.parser.Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))["Version"])


def test_api_key_function_bundles_a_urllib3_without_the_decompression_flaws(build: Build) -> None:
    from packaging.requirements import Requirement
    from packaging.version import Version

    name = next(n for n, engine in FUNCTIONS.items() if engine == "api_key")
    task = build.folder / build.function(name)["CodeUri"]
    version = _dist_version(task, "urllib3")
    assert Version(version).release[:3] >= MIN_URLLIB3, f"urllib3 {version} has known decompression flaws"
    # Its own copy wins: the rotation proof above checks the function imports urllib3 from it.
    assert "urllib3" in _bundled_runtime_modules([task])
    # The runtime's botocore imports that copy too (/var/task is first on sys.path): its own
    # requirement for Python 3.13 must accept it (the stand-in is this project's botocore).
    site = Path(sysconfig.get_paths()["purelib"])
    metadata = email.parser.Parser().parsestr(
        (next(site.glob("botocore-*.dist-info")) / "METADATA").read_text(encoding="utf-8")
    )
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    (urllib3,) = [r for r in requirements if r.name == "urllib3" and (r.marker is None or r.marker.evaluate())]
    assert urllib3.specifier.contains(version), (
        f"botocore wants urllib3 {urllib3.specifier}, the function has {version}"
    )


# --------------------------------------------------------------------------
# The hash locks


@pytest.mark.parametrize("unit", deploy_lock.units(), ids=lambda unit: unit.logical_id)
def test_lock_agrees_with_requirements(unit: deploy_lock.Unit) -> None:
    """One source of truth: requirements.txt pins the versions, the lock adds only the hashes."""
    pins = deploy_lock.read_pins(unit.requirements)
    lock = deploy_lock.read_lock(unit.lock)
    assert {key: version for key, (_, version) in pins.items()} == {key: e.version for key, e in lock.items()}, (
        f"{unit.lock.relative_to(ROOT)} is stale: run `.venv/bin/python scripts/deploy_lock.py lock`"
    )
    for key, entry in lock.items():
        assert entry.wheels, key
        assert sorted(entry.hashes) == sorted({w.sha256 for w in entry.wheels}), f"{key}: one --hash per wheel"
        assert all(deploy_lock.canonical(w.filename.split("-", 1)[0]) == key for w in entry.wheels), key
        assert all(f"-{entry.version}-" in w.filename for w in entry.wheels), key
        pure = any(w.filename.endswith("-any.whl") for w in entry.wheels)
        for machine in deploy_lock.PLATFORMS:
            assert pure or any(machine in w.filename for w in entry.wheels), f"{key}: no {machine} wheel locked"


def test_build_holds_exactly_the_locked_packages(build: Build) -> None:
    assert deploy_lock.verify_build(build.folder) == []


def _unit_copy(build: Build, logical_id: str, into: Path) -> tuple[deploy_lock.Unit, Path]:
    (unit,) = [u for u in deploy_lock.units() if u.logical_id == logical_id]
    copy = into / logical_id
    shutil.copytree(build.folder / logical_id, copy, symlinks=True)
    assert deploy_lock.verify_unit(unit, copy) == [], "the untouched copy passes"
    return unit, copy


def _set_record_hash(dist_info: Path, relative: str, data: bytes) -> None:
    record = dist_info / "RECORD"
    rows = deploy_lock.parse_record(record.read_text(encoding="utf-8"))
    for row in rows:
        if row[0] == relative:
            row[1], row[2] = deploy_lock.record_hash(data), str(len(data))
    record.write_text("".join(",".join(row) + "\n" for row in rows), encoding="utf-8")


def _tamper(breakage: str, copy: Path) -> None:
    """One way a build (or its cache) could differ from the locked wheels."""
    if breakage == "file changed":
        path = copy / "psycopg2" / "__init__.py"
        path.write_bytes(path.read_bytes() + b"\nimport os\n")
    elif breakage == "file and RECORD changed":
        path = copy / "psycopg2" / "extras.py"
        data = path.read_bytes() + b"\n# another release\n"
        path.write_bytes(data)
        _set_record_hash(next(copy.glob("psycopg2_binary-*.dist-info")), "psycopg2/extras.py", data)
    elif breakage == "file added":
        (copy / "psycopg2" / "_patch.py").write_text("print('hello')\n", encoding="utf-8")
    elif breakage == "package not locked":
        dist_info = copy / "extra-1.0.dist-info"
        dist_info.mkdir()
        (copy / "extra.py").write_text("X = 1\n", encoding="utf-8")
        (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra\nVersion: 1.0\n", encoding="utf-8")
        data = (copy / "extra.py").read_bytes()
        (dist_info / "RECORD").write_text(
            f"extra.py,{deploy_lock.record_hash(data)},{len(data)}\nextra-1.0.dist-info/RECORD,,\n", encoding="utf-8"
        )
    elif breakage == "package missing":
        shutil.rmtree(next(copy.glob("psycopg2_binary-*.dist-info")))
    elif breakage == "own source changed":
        (copy / "app.py").write_text("lambda_handler = print\n", encoding="utf-8")
    elif breakage == "compiled code replaced":
        source = copy / "scramp" / "core.py"
        pyc = copy / "scramp" / "__pycache__" / "core.cpython-313.pyc"
        header = pyc.read_bytes()[:16]  # still names the real source's hash
        code = compile(source.read_bytes() + b"\nLEAK = True\n", str(source), "exec", dont_inherit=True)
        pyc.write_bytes(header + marshal.dumps(code))
    else:
        raise AssertionError(breakage)


TAMPERING = {
    "file changed": ("PostgresRotationFunction", r"psycopg2/__init__\.py differs from its RECORD hash"),
    "file and RECORD changed": ("PostgresRotationFunction", r"not those of any locked wheel"),
    "file added": ("PostgresRotationFunction", r"psycopg2/_patch\.py: neither from a locked wheel"),
    "package not locked": ("PostgresRotationFunction", r"extra is not in requirements\.lock"),
    "package missing": ("PostgresRotationFunction", r"psycopg2-binary is locked but not in the build"),
    "own source changed": ("PostgresRotationFunction", r"app\.py: neither from a locked wheel"),
    "compiled code replaced": ("RedshiftRotationFunction", r"core\.cpython-313\.pyc: its code differs"),
}


@pytest.mark.parametrize("breakage", sorted(TAMPERING))
def test_the_lock_check_catches_a_tampered_build(breakage: str, build: Build, tmp_path: Path) -> None:
    logical_id, expected = TAMPERING[breakage]
    unit, copy = _unit_copy(build, logical_id, tmp_path)
    _tamper(breakage, copy)
    problems = deploy_lock.verify_unit(unit, copy)
    assert any(re.search(expected, problem) for problem in problems), problems


def test_the_lock_check_catches_a_version_the_lock_does_not_name(build: Build, tmp_path: Path) -> None:
    unit, copy = _unit_copy(build, "MySqlRotationFunction", tmp_path)
    lock = deploy_lock.read_lock(unit.lock)
    other = tmp_path / "requirements.lock"
    other.write_text(
        unit.lock.read_text(encoding="utf-8").replace(f"pymysql=={lock['pymysql'].version}", "pymysql==0.0.1"),
        encoding="utf-8",
    )
    elsewhere = deploy_lock.Unit(unit.logical_id, tmp_path, unit.resolves_dependencies)
    shutil.copy(unit.requirements, tmp_path / "requirements.txt")
    problems = deploy_lock.verify_unit(elsewhere, copy)
    assert any(re.search(r"pymysql-.*: version .*, locked 0\.0\.1", problem) for problem in problems), problems


# --------------------------------------------------------------------------
# The Amazon RDS CA bundle, which `make build` adds to the built layer (scripts/fetch_rds_ca.py)

RDS_BUNDLE_PATH = "/global/global-bundle.pem"


def _layer_with_rds_bundle(build: Build, into: Path, bundle: bytes) -> Path:
    """A copy of the built layer, then the fetch as `make build` runs it, from a local HTTPS
    server with a generated CA standing in for AWS's trust store host."""
    layer = into / "build" / fetch_rds_ca.LAYER_ID
    shutil.copytree(build.folder / fetch_rds_ca.LAYER_ID, layer, symlinks=True)
    with BundleServer(into / "trust-store") as store:
        store.answer(RDS_BUNDLE_PATH, bundle)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NO_PROXY": "127.0.0.1,localhost",
            "SSL_CERT_FILE": store.ca_file,
            fetch_rds_ca.URL_VARIABLE: store.url(RDS_BUNDLE_PATH),
        }
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "fetch_rds_ca.py"), str(layer.parent)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    return layer


def test_the_layer_built_with_the_rds_bundle_trusts_rds_signed_servers(
    build: Build, request: pytest.FixtureRequest, sm: Any, tmp_path: Path
) -> None:
    """The test PostgreSQL server's CA stands in for RDS's (in no system store): the built
    function, deployed with DbCaBundle empty, rotates through it only with the bundle."""
    target = request.getfixturevalue("postgres_harness")
    name = next(n for n, engine in FUNCTIONS.items() if engine == "postgres")
    served = Path(target.info.ca_file).read_bytes() + Path(generate_ca(str(tmp_path), "other-rds-ca.pem")).read_bytes()
    layer = _layer_with_rds_bundle(build, tmp_path, served)

    bundle = layer.joinpath(*fetch_rds_ca._trust().BUNDLE_IN_LAYER)
    assert bundle == layer / "python" / "rotation_core" / "rds-ca-bundle.pem"
    assert bundle.read_bytes() == served
    (unit,) = [u for u in deploy_lock.units() if u.logical_id == fetch_rds_ca.LAYER_ID]
    assert deploy_lock.verify_unit(unit, layer) == [], "the lock check accounts for the bundle"

    for label, layers in (("without the bundle", build.layer_folders(name)), ("with the bundle", [layer])):
        arn, before = target.new_secret(sm, TARGETS["postgres_harness"][0])
        token = rotations.start_rotation(sm, arn)
        run_dir = tmp_path / label.replace(" ", "-")
        run_dir.mkdir()
        env = {
            **target.env(),
            "DB_CA_BUNDLE": "",  # the template's default: the default trust
            "SECRETS_MANAGER_ENDPOINT": sm.meta.endpoint_url,
            "TMPDIR": str(run_dir),  # Lambda's /tmp, where the combined file goes
        }
        events = [rotations.event(arn, token, step) for step in rotations.STEPS]
        run = run_built(build, name, run_dir, events, env, layer_folders=layers)
        if label == "with the bundle":
            assert run.ok, f"{name} with the RDS CA bundle: {run.steps}\n{run.output[-3000:]}"
            assert "AWSCURRENT" in rotations.stages(sm, arn)[token]
            assert target.works(json.loads(rotations.value(sm, arn, "AWSCURRENT")))
            assert [p.name for p in run_dir.glob("rotation-ca-*.pem")], "the combined file is in /tmp"
        else:
            assert not run.ok
            failed = next(step for step in run.steps if not step["ok"])
            assert failed["step"] == "setSecret" and "certificate verify failed" in failed["error"], failed
            assert "AWSCURRENT" not in rotations.stages(sm, arn)[token]
            assert json.loads(rotations.value(sm, arn, "AWSCURRENT")) == before


def test_the_lock_check_refuses_anything_but_ca_certificates_as_the_rds_bundle(build: Build, tmp_path: Path) -> None:
    (unit,) = [u for u in deploy_lock.units() if u.logical_id == fetch_rds_ca.LAYER_ID]
    layer = tmp_path / fetch_rds_ca.LAYER_ID
    shutil.copytree(build.folder / fetch_rds_ca.LAYER_ID, layer, symlinks=True)
    bundle = layer.joinpath(*fetch_rds_ca._trust().BUNDLE_IN_LAYER)
    (tmp_path / "tls").mkdir()
    tls = generate_server_tls(str(tmp_path / "tls"))
    for content, expected in (
        (Path(tls.cert_file).read_bytes(), "certificate 1 is not a CA certificate"),
        (Path(tls.ca_file).read_bytes() + b"import os\n", "not only PEM certificates"),
    ):
        bundle.write_bytes(content)
        problems = deploy_lock.verify_unit(unit, layer)
        prefix = f"{fetch_rds_ca.LAYER_ID}: python/rotation_core/rds-ca-bundle.pem: not an RDS CA bundle: "
        assert len(problems) == 1 and problems[0].startswith(prefix), problems
        assert expected in problems[0]
    # The same bytes anywhere else in the layer are a file nothing accounts for.
    bundle.unlink()
    (layer / "python" / "rds-ca-bundle.pem").write_bytes(Path(tls.ca_file).read_bytes())
    assert deploy_lock.verify_unit(unit, layer) == [
        f"{fetch_rds_ca.LAYER_ID}: python/rds-ca-bundle.pem: neither from a locked wheel nor the function's own source"
    ]
