"""Code as an earlier commit had it, for the benchmarks that time before against after."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_at(rev: str, relpath: str, package: str):
    """The module at ``relpath`` as it was at commit ``rev``, imported inside ``package``
    (so its relative imports resolve against the current package)."""
    source = subprocess.run(["git", "show", f"{rev}:{relpath}"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    name = f"{package}._before_{Path(relpath).stem}"
    module = types.ModuleType(name)
    module.__package__ = package
    module.__file__ = f"{rev}:{relpath}"
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
