"""The lock of what `sam build` deploys: every package of every function and of the layer.

Each deployable unit of template.yaml (a function's CodeUri, the layer's ContentUri) has a
requirements.txt (name==version pins: the whole set the build installs, transitive
dependencies included) and, beside it, a requirements.lock that this script writes:

    .venv/bin/python scripts/deploy_lock.py lock      # after changing a pin (downloads wheels)
    .venv/bin/python scripts/deploy_lock.py verify .aws-sam/build   # after `sam build`

A lock is a pip requirements file (`pip install --require-hashes -r requirements.lock`
works): each pin with the sha256 of every wheel the build may install (CPython 3.13,
manylinux x86_64 and aarch64 at the glibc levels AWS SAM's Python builder accepts, or the
one py3-none-any wheel), and, per wheel, a comment with the digest of the files the wheel
installs (its RECORD), which is what `verify` can compare once the wheel is unpacked.

Why the build is checked afterwards instead of trusting --hash lines in requirements.txt:
AWS SAM's Python builder (aws-lambda-builders' PythonPipBuilder) first runs
`pip download -r requirements.txt` for the build machine's platform, which would check the
hashes, and then fetches the wheels of the Lambda platform (every aarch64 wheel of an arm64
build on an x86_64 machine, any wheel the build machine's pick did not fit) with
`pip download --no-deps --only-binary=:all: --platform ... NAME==VERSION`, without the
requirements file: those downloads are never checked. And requirements-dev.txt includes
the functions' requirements.txt files, so one --hash line there would put the whole
development install in pip's hash-checking mode. So requirements.txt keeps plain pins (one
source of truth for the versions; tests check the lock agrees), and `verify` checks what the
build produced, whatever the platform and whatever cache it came from:

- every *.dist-info in a built unit is a locked name==version, its files match their RECORD
  hashes, and the RECORD is the one of a locked wheel (so the files are that wheel's files);
- every locked package is there;
- every other file is either the unit's own source (same bytes as in the repository) or a
  .pyc compiled from a verified .py (same code object), so nothing unlisted runs; the one
  exception is the layer's Amazon RDS CA bundle (python/rotation_core/rds-ca-bundle.pem,
  added by `make build`: scripts/fetch_rds_ca.py), data that must hold PEM CA certificates
  and nothing else.

The Redshift function, built by its own Makefile with `pip install --no-deps`, installs from
its lock with --require-hashes: its wheels are pure Python, the same for both architectures.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.util
import io
import marshal
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser as EmailParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
LOCK_NAME = "requirements.lock"
PYTHON_VERSION = "3.13"
ABI = "cp313"
# AWS SAM's Python builder (aws-lambda-builders DependencyBuilder._COMPATIBLE_PLATFORMS, for
# python3.13: glibc up to 2.34): a wheel is deployable only with one of these platform tags.
PLATFORMS = {
    "x86_64": [
        "manylinux1_x86_64",
        "manylinux2010_x86_64",
        "manylinux2014_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux_2_28_x86_64",
        "manylinux_2_34_x86_64",
    ],
    "aarch64": [
        "manylinux2014_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux_2_28_aarch64",
        "manylinux_2_34_aarch64",
    ],
}
# Files installers add to a .dist-info folder that are not part of the wheel.
INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}

HEADER = """\
# Lock of the packages `sam build` deploys in {unit} ({source}/): generated from
# requirements.txt by `.venv/bin/python scripts/deploy_lock.py lock`; do not edit by hand.
#
# The hashes are checked after the build (`make build`, tests/test_packaging.py:
# scripts/deploy_lock.py verify), not by --hash lines in requirements.txt: AWS SAM's Python
# builder downloads the Lambda platform's wheels (all of an arm64 build on x86_64, any wheel
# the build machine's own pick does not fit) with `pip download --no-deps --platform ...
# NAME==VERSION`, without the requirements file, so pip never checks their hashes; and
# requirements-dev.txt includes the requirements.txt files, where one --hash would force
# hashes on every development package. requirements.txt keeps the pins (one source of truth:
# a test checks this file agrees). Each pin lists the sha256 of every wheel the build may
# install (CPython 3.13, manylinux x86_64 and aarch64 up to glibc 2.34, or py3-none-any);
# each `# wheel` line gives that wheel's file digest (sha256 of its sorted RECORD entries),
# which `verify` compares with the unpacked files. This file is also a pip requirements file
# (`pip install --require-hashes -r requirements.lock`).
"""


# --------------------------------------------------------------------------
# Units, pins and lock files


@dataclass(frozen=True)
class Unit:
    """A deployable folder of template.yaml: a function's CodeUri or the layer's ContentUri."""

    logical_id: str
    source: Path
    #: False when the build installs exactly the pins (`pip install --no-deps`, Makefile)
    resolves_dependencies: bool

    @property
    def requirements(self) -> Path:
        return self.source / "requirements.txt"

    @property
    def lock(self) -> Path:
        return self.source / LOCK_NAME


def units(template: Path = TEMPLATE) -> list[Unit]:
    import yaml  # the project's virtual environment has it; the build check needs it anyway

    class Loader(yaml.SafeLoader):
        """Safe loading, with CloudFormation's short-form tags (!Ref...) kept as plain values."""

    def ignore(_loader: yaml.SafeLoader, _suffix: str, _node: yaml.Node) -> None:
        return None

    Loader.add_multi_constructor("!", ignore)
    resources: dict[str, Any] = yaml.load(template.read_text(encoding="utf-8"), Loader=Loader)["Resources"]  # noqa: S506
    found = []
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        location = {
            "AWS::Serverless::Function": properties.get("CodeUri"),
            "AWS::Serverless::LayerVersion": properties.get("ContentUri"),
        }.get(resource["Type"])
        if isinstance(location, str):
            makefile = resource.get("Metadata", {}).get("BuildMethod") == "makefile"
            found.append(Unit(logical_id, template.parent / location.rstrip("/"), not makefile))
    return found


def canonical(name: str) -> str:
    """PEP 503 name: PyMySQL, pymysql and py_mysql are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)\s*(?:\\)?\s*$")


def read_pins(requirements: Path) -> dict[str, tuple[str, str]]:
    """canonical name -> (name as written, version), from name==version lines; anything else
    but comments and blank lines is refused (the deployed set must be exactly pinned)."""
    pins: dict[str, tuple[str, str]] = {}
    for number, raw in enumerate(requirements.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("--hash="):
            continue
        match = _PIN.match(line)
        if not match:
            raise ValueError(f"{requirements}:{number}: not a name==version pin")
        pins[canonical(match.group(1))] = (match.group(1), match.group(2))
    return pins


@dataclass(frozen=True)
class Wheel:
    filename: str
    sha256: str  # hex, of the wheel file (pip's --hash)
    files: str  # hex, sha256 of the wheel's sorted RECORD entries (see files_digest)


@dataclass
class Locked:
    name: str
    version: str
    hashes: list[str] = field(default_factory=list)
    wheels: list[Wheel] = field(default_factory=list)


_WHEEL_LINE = re.compile(r"^\s*# wheel (\S+\.whl) sha256:([0-9a-f]{64}) files:([0-9a-f]{64})\s*$")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def read_lock(lock: Path) -> dict[str, Locked]:
    """canonical name -> Locked, from a file written by `lock`."""
    entries: dict[str, Locked] = {}
    current: Locked | None = None
    for raw in lock.read_text(encoding="utf-8").splitlines():
        wheel = _WHEEL_LINE.match(raw)
        if wheel:
            if current is None:
                raise ValueError(f"{lock}: a wheel line before any pin")
            current.wheels.append(Wheel(wheel.group(1), wheel.group(2), wheel.group(3)))
            continue
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match:
            current = Locked(match.group(1), match.group(2))
            entries[canonical(current.name)] = current
        elif current is not None and _HASH.search(line):
            current.hashes += _HASH.findall(line)
        else:
            raise ValueError(f"{lock}: unexpected line {raw!r}")
    return entries


# --------------------------------------------------------------------------
# Digests


def record_hash(data: bytes) -> str:
    """A file's hash as a wheel's RECORD writes it (PEP 376/427)."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def files_digest(rows: list[list[str]], dist_info: str) -> str:
    """sha256 of the wheel's own RECORD entries (path,hash), sorted: the same for the wheel and
    for its unpacked copy, whichever installer added INSTALLER, REQUESTED or rewrote RECORD."""
    entries = sorted(
        f"{row[0]},{row[1]}" for row in rows if len(row) >= 2 and row[1] and not _installer_file(row[0], dist_info)
    )
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def _installer_file(path: str, dist_info: str) -> bool:
    folder, _, name = path.rpartition("/")
    return folder == dist_info and name in INSTALLER_FILES


def parse_record(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text)) if row]


def wheel_files_digest(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (record,) = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/RECORD")]
        rows = parse_record(archive.read(record).decode("utf-8"))
        for row in rows:  # the RECORD must describe the wheel it came in
            if len(row) >= 2 and row[1] and record_hash(archive.read(row[0])) != row[1]:
                raise SystemExit(f"{wheel.name}: {row[0]} differs from the wheel's RECORD")
    return files_digest(rows, record.split("/", 1)[0])


# --------------------------------------------------------------------------
# lock: download every deployable wheel of every pin and write the lock files


def _download(name: str, version: str, platforms: list[str], work: Path) -> Path | None:
    """The wheel pip picks for these platform tags (None: no wheel fits). pip matches each
    tag exactly (manylinux2014/2010 also take the older legacy tags), as SAM's builder does."""
    into = Path(tempfile.mkdtemp(dir=work))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--abi",
            ABI,
            *(arg for platform in platforms for arg in ("--platform", platform)),
            "--dest",
            str(into),
            f"{name}=={version}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = list(into.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        return None
    return wheels[0]


def _pure(wheel: Path) -> bool:
    return wheel.name.endswith("-any.whl")


def _candidates(name: str, version: str, work: Path) -> dict[str, tuple[str, Path]]:
    """wheel file name -> (machine, wheel): every wheel a build for either architecture may
    install. The build machine's own pick may be any wheel of a Lambda platform tag, so each
    tag is asked alone; a package whose best wheel is pure has no platform wheel to find."""
    found: dict[str, tuple[str, Path]] = {}
    for machine, platforms in PLATFORMS.items():
        best = _download(name, version, ["any", *platforms], work)
        if best is None:
            continue
        found.setdefault(best.name, (machine, best))
        if _pure(best):
            continue
        for platform in platforms:
            wheel = _download(name, version, [platform], work)
            if wheel is not None:
                found.setdefault(wheel.name, (machine, wheel))
    return found


def _requires(wheel: Path, machine: str) -> set[str]:
    """The canonical names the wheel requires on Lambda (CPython 3.13, Linux, `machine`)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        message = EmailParser().parsestr(archive.read(metadata).decode("utf-8"))
    environment = {
        "python_version": PYTHON_VERSION,
        "python_full_version": f"{PYTHON_VERSION}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
        "extra": "",
    }
    names = set()
    for text in message.get_all("Requires-Dist") or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            names.add(canonical(requirement.name))
    return names


def lock_unit(unit: Unit, work: Path) -> str:
    pins = read_pins(unit.requirements)
    lines = [HEADER.format(unit=unit.logical_id, source=unit.source.relative_to(ROOT))]
    for key in sorted(pins):
        name, version = pins[key]
        wheels = _candidates(name, version, work)
        machines = {m for m in PLATFORMS if any(m in w or w.endswith("-any.whl") for w in wheels)}
        if machines != set(PLATFORMS):
            raise SystemExit(
                f"{name}=={version}: no wheel for CPython {PYTHON_VERSION} on {sorted(set(PLATFORMS) - machines)}"
            )
        if unit.resolves_dependencies:  # pip resolves them at build time: they must be pinned too
            for machine, wheel in wheels.values():
                missing = _requires(wheel, machine) - set(pins)
                if missing:
                    raise SystemExit(f"{unit.requirements}: {name} needs {sorted(missing)}: pin them too")
        entries = [
            Wheel(w.name, hashlib.sha256(w.read_bytes()).hexdigest(), wheel_files_digest(w))
            for _, w in sorted(wheels.values(), key=lambda item: item[1].name)
        ]
        hashes = sorted({entry.sha256 for entry in entries})
        lines.append(f"{name}=={version} \\")
        lines.extend(f"    --hash=sha256:{h}" + (" \\" if n < len(hashes) - 1 else "") for n, h in enumerate(hashes))
        lines.extend(f"    # wheel {e.filename} sha256:{e.sha256} files:{e.files}" for e in entries)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# verify: the built units against their locks


def _sha256_file(path: Path) -> str:
    return record_hash(path.read_bytes())


def _pyc_problem(pyc: Path, source: Path) -> str | None:
    """None when the .pyc holds the code compiled from `source` by this Python."""
    data = pyc.read_bytes()
    if data[:4] != importlib.util.MAGIC_NUMBER:
        return "compiled by another Python version"
    flags = int.from_bytes(data[4:8], "little")
    source_bytes = source.read_bytes()
    if flags & 1 and data[8:16] != importlib.util.source_hash(source_bytes):
        return "compiled from another source"
    try:
        code = marshal.loads(data[16:])  # noqa: S302 - a file of the build being checked, never run
    except (EOFError, ValueError, TypeError):
        return "not a code object"
    if code != compile(source_bytes, str(source), "exec", dont_inherit=True):
        return "its code differs from the source's"
    return None


def verify_unit(unit: Unit, built: Path) -> list[str]:
    """Problems of one built unit (empty: it holds exactly the locked wheels and its own source)."""
    if not unit.lock.is_file():
        return [f"{unit.logical_id}: no {LOCK_NAME} in {unit.source.relative_to(ROOT)}"]
    lock = read_lock(unit.lock)
    problems: list[str] = []
    verified: set[Path] = set()  # files whose content is vouched for
    found: set[str] = set()
    for dist_info in sorted(p for p in built.rglob("*.dist-info") if p.is_dir()):
        site = dist_info.parent
        label = f"{unit.logical_id}: {dist_info.relative_to(built)}"
        metadata = EmailParser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
        key, version = canonical(str(metadata["Name"])), str(metadata["Version"])
        found.add(key)
        entry = lock.get(key)
        if entry is None:
            problems.append(f"{label}: {metadata['Name']} is not in {LOCK_NAME}")
        elif entry.version != version:
            problems.append(f"{label}: version {version}, locked {entry.version}")
        rows = parse_record((dist_info / "RECORD").read_text(encoding="utf-8"))
        for row in rows:
            path = (site / row[0]).resolve()
            if not path.is_relative_to(built.resolve()):
                problems.append(f"{label}: RECORD names {row[0]}, outside the unit")
                continue
            if len(row) < 2 or not row[1]:
                if path != (dist_info / "RECORD").resolve():
                    problems.append(f"{label}: {row[0]} has no hash in RECORD")
                continue
            if not path.is_file():
                problems.append(f"{label}: {row[0]} is missing")
            elif _sha256_file(path) != row[1]:
                problems.append(f"{label}: {row[0]} differs from its RECORD hash")
            else:
                verified.add(path)
        verified.add((dist_info / "RECORD").resolve())
        if entry is not None and files_digest(rows, dist_info.name) not in {w.files for w in entry.wheels}:
            problems.append(f"{label}: its files are not those of any locked wheel")
    problems += [
        f"{unit.logical_id}: {lock[key].name} is locked but not in the build" for key in sorted(set(lock) - found)
    ]
    problems += _unaccounted(unit, built, verified)
    return problems


def _own_source(unit: Unit, built: Path, path: Path) -> bool:
    """Whether the file is a copy of the unit's own source (a layer's lands under python/)."""
    relative = path.relative_to(built)
    candidates = [relative]
    if relative.parts[:1] == ("python",):
        candidates.append(Path(*relative.parts[1:]))
    return any((unit.source / c).is_file() and (unit.source / c).read_bytes() == path.read_bytes() for c in candidates)


def _layer_trust() -> Any:
    """rotation_core.trust, from the layer's source: where the RDS CA bundle goes, what it may hold."""
    layer = str(ROOT / "layers" / "rotation_core")
    if layer not in sys.path:
        sys.path.append(layer)
    from rotation_core import trust

    return trust


def _is_rds_ca_bundle(unit: Unit, built: Path, path: Path) -> bool:
    """Whether the file is the Amazon RDS CA bundle that `make build` adds to the layer
    (scripts/fetch_rds_ca.py): data, not code, so checked for what it holds instead."""
    if not (unit.source / "rotation_core" / "trust.py").is_file():
        return False
    return path.relative_to(built).parts == tuple(_layer_trust().BUNDLE_IN_LAYER)


def _rds_ca_bundle_problem(path: Path) -> str | None:
    """None when the file holds PEM CA certificates and nothing else."""
    try:
        _layer_trust().parse_ca_bundle(path.read_bytes())
    except ValueError as exc:
        return f"not an RDS CA bundle: {exc}"
    return None


def _unaccounted(unit: Unit, built: Path, verified: set[Path]) -> list[str]:
    problems = []
    pycs = []
    for path in sorted(built.rglob("*")):
        label = f"{unit.logical_id}: {path.relative_to(built)}"
        if path.is_symlink():
            problems.append(f"{label}: a symbolic link")
        elif not path.is_file() or path.resolve() in verified:
            continue
        elif path.suffix == ".pyc" and path.parent.name == "__pycache__":
            pycs.append(path)
        elif _own_source(unit, built, path):
            verified.add(path.resolve())
        elif _is_rds_ca_bundle(unit, built, path):
            problem = _rds_ca_bundle_problem(path)
            if problem:
                problems.append(f"{label}: {problem}")
            else:
                verified.add(path.resolve())
        else:
            problems.append(f"{label}: neither from a locked wheel nor the function's own source")
    for pyc in pycs:  # once every .py is known
        label = f"{unit.logical_id}: {pyc.relative_to(built)}"
        module = pyc.name.split(".", 1)[0]
        source = pyc.parent.parent / f"{module}.py"
        if source.resolve() not in verified:
            problems.append(f"{label}: compiled from no verified source")
            continue
        problem = _pyc_problem(pyc, source)
        if problem:
            problems.append(f"{label}: {problem}")
    return problems


def verify_build(build: Path, template: Path = TEMPLATE) -> list[str]:
    """Problems of a `sam build` folder (holding the built template.yaml); empty when it holds
    exactly the locked wheels and the units' own source."""
    problems = []
    for unit in units(template):
        built = build / unit.logical_id
        if not built.is_dir():
            problems.append(f"{unit.logical_id}: not built in {build}")
            continue
        problems += verify_unit(unit, built)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("lock", help="write every unit's requirements.lock from its requirements.txt")
    check = commands.add_parser("verify", help="check a `sam build` folder against the locks")
    check.add_argument("build", type=Path, nargs="?", default=ROOT / ".aws-sam" / "build")
    args = parser.parse_args(argv)
    if args.command == "lock":
        with tempfile.TemporaryDirectory() as cache:
            for unit in units():
                unit.lock.write_text(lock_unit(unit, Path(cache)), encoding="utf-8")
                print(f"wrote {unit.lock.relative_to(ROOT)}")
        return 0
    if not args.build.is_dir():
        print(f"deploy_lock: no build folder {args.build} (run sam build first)", file=sys.stderr)
        return 2
    problems = verify_build(args.build)
    for problem in problems:
        print(f"deploy_lock: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"deploy_lock: {args.build} holds exactly the locked packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
