"""claw_core is what custom frontends import: it must pull in nothing but the standard library."""

import subprocess
import sys

PROBE = """
import sys
already = set(sys.modules)  # what the interpreter's site hooks loaded before us
import claw_core, claw_core.model, claw_core.errors, claw_core.ports, claw_core.validation
import claw_core.api.contract, claw_core.api.history_routes, claw_core.api.openapi, claw_core.api.router
import claw_core.services.history, claw_core.services.workspaces, claw_core.services.transfer
import claw_core.services.events, claw_core.services.titles, claw_core.services.clock
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
