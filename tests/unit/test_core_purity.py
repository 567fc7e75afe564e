"""claw_core is what custom frontends import: it must pull in nothing but the standard library."""

import subprocess
import sys

PROBE = """
import sys
already = set(sys.modules)  # what the interpreter's site hooks loaded before us
import importlib, pkgutil
import claw_core
for module in pkgutil.walk_packages(claw_core.__path__, "claw_core."):  # every module, as a frontend may import any
    importlib.import_module(module.name)
std = set(sys.stdlib_module_names)
foreign = sorted({m.split(".")[0] for m in set(sys.modules) - already} - std - {"claw_core", "__main__"})
print(",".join(foreign))
"""


def test_importing_claw_core_loads_no_third_party_module() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_claw_core_sources_import_only_the_standard_library() -> None:
    import ast
    import pathlib

    import claw_core

    root = pathlib.Path(claw_core.__file__).parent
    allowed = set(sys.stdlib_module_names) | {"claw_core", "__future__"}
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert offenders == []
