"""Load a function's app.py the way Lambda does (the layer on the path), under a unique name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load(engine: str) -> ModuleType:
    name = f"{engine}_app"
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "functions" / engine / "app.py"
    # Lambda puts the function's own folder on the path (/var/task): its helper modules import.
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
