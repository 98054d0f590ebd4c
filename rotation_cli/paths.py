"""Where the project's pieces are, and how a function is loaded the way Lambda loads it.

A function is any folder functions/<engine>/ whose app.py defines `lambda_handler`; the
layers (layers/<name>/) go on sys.path as Lambda mounts them under /opt/python. The
module is registered as "<engine>_app" (the name tests/support/functions.py uses too), so
one process never imports the same function twice.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "functions"
LAYERS_DIR = ROOT / "layers"
#: Deployable units under functions/ that rotate nothing: the fleet audit (functions/audit,
#: whose fleet_audit package `rotate audit` imports). They are never offered as an engine.
NOT_ROTATION_FUNCTIONS = frozenset({"audit"})
AUDIT_DIR = FUNCTIONS_DIR / "audit"

_HANDLER = re.compile(r"^lambda_handler\s*(?::[^=]*)?=", re.MULTILINE)
_DEF_HANDLER = re.compile(r"^def lambda_handler\s*\(", re.MULTILINE)


class FunctionNotFoundError(LookupError):
    """No functions/<engine>/app.py with a lambda_handler."""


def ensure_layers_on_path() -> None:
    """Put every layer folder (layers/<name>/, holding the layer's packages) on sys.path."""
    if not LAYERS_DIR.is_dir():
        return
    for layer in sorted(p for p in LAYERS_DIR.iterdir() if p.is_dir()):
        path = str(layer)
        if path not in sys.path:
            sys.path.insert(0, path)


def ensure_audit_on_path() -> None:
    """Put functions/audit on sys.path: fleet_audit imports as it does in the function."""
    path = str(AUDIT_DIR)
    if AUDIT_DIR.is_dir() and path not in sys.path:
        sys.path.append(path)


def engines() -> list[str]:
    """The rotation functions of this repository: functions/<engine>/app.py defining lambda_handler."""
    if not FUNCTIONS_DIR.is_dir():
        return []
    found = []
    for app in sorted(FUNCTIONS_DIR.glob("*/app.py")):
        if app.parent.name in NOT_ROTATION_FUNCTIONS:
            continue
        text = app.read_text(encoding="utf-8", errors="replace")
        if _HANDLER.search(text) or _DEF_HANDLER.search(text):
            found.append(app.parent.name)
    return found


def load_function(engine: str) -> ModuleType:
    """Import functions/<engine>/app.py with the layers on the path, once per process."""
    available = engines()
    if engine not in available:
        listed = ", ".join(available) or "none"
        raise FunctionNotFoundError(f"no function '{engine}' in {FUNCTIONS_DIR} (functions found: {listed})")
    ensure_layers_on_path()
    name = f"{engine}_app"
    if name in sys.modules:
        return sys.modules[name]
    folder = FUNCTIONS_DIR / engine
    # Lambda puts the function's own folder on the path (/var/task): helper modules next to
    # app.py and vendored packages import as they would there.
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / "app.py")
    if spec is None or spec.loader is None:  # pragma: no cover - a file that exists always has a spec
        raise FunctionNotFoundError(f"cannot load {folder / 'app.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
