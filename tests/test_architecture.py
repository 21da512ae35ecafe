"""ARCHITECTURE.md stays true: every module and name it mentions exists, and the
import directions it states hold."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "ARCHITECTURE.md").read_text()
TODAY = PAGE.split("## Target layout")[0]  # the planned layout is not in the tree yet
CODE = re.findall(r"`([^`\n]+)`", TODAY)
PATHS = sorted({c for c in CODE if re.fullmatch(r"pulsing_(daemon|cli)/[\w/]+\.py", c)})
PACKAGE = ROOT / "pulsing_daemon"


def _ours(name: str) -> bool:
    """A dotted name whose first part is one of the daemon's modules or packages."""
    first = name.split(".")[0]
    return (PACKAGE / f"{first}.py").exists() or (PACKAGE / first / "__init__.py").exists()


NAMES = sorted({c for c in CODE if re.fullmatch(r"[a-z_]+(\.[A-Za-z_]+)+", c) and _ours(c)})
# The rooms that must never import the HTTP layer.
CORE = [
    "batching",
    "cell",
    "cell_errors",
    "cell_status",
    "config",
    "config_classes",
    "config_keys",
    "config_tables",
    "deadline",
    "envelope",
    "exceptions",
    "hosts/base",
    "hosts/child",
    "hosts/framing",
    "hosts/inline",
    "hosts/ops",
    "hosts/process",
    "hosts/registry",
    "hosts/threads",
    "idempotency",
    "journal",
    "keyspec",
    "policy",
    "running",
    "states",
    "streams",
    "supervisor",
    "wakeup",
    "wire",
]


def test_the_page_names_modules_and_names() -> None:
    assert len(PATHS) >= 20 and len(NAMES) >= 20
    assert "## Target layout" in PAGE and "hosts/" in PAGE


@pytest.mark.parametrize("path", PATHS)
def test_every_module_on_the_page_exists(path: str) -> None:
    assert (ROOT / path).is_file(), f"ARCHITECTURE.md names {path}, which does not exist"


@pytest.mark.parametrize("name", NAMES)
def test_every_name_on_the_page_exists(name: str) -> None:
    parts = name.split(".")
    # The longest leading part that is a module (``hosts.threads``), then attributes.
    cut = max(n for n in range(1, len(parts) + 1) if _is_module(parts[:n]))
    target = importlib.import_module("pulsing_daemon." + ".".join(parts[:cut]))
    for attr in parts[cut:]:
        assert hasattr(target, attr), f"ARCHITECTURE.md names {name}, which does not exist"
        target = getattr(target, attr)


def _is_module(parts: list[str]) -> bool:
    path = PACKAGE.joinpath(*parts)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "pulsing_daemon":
                found.update(f"pulsing_daemon.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", CORE)
def test_the_core_never_imports_the_http_layer(module: str) -> None:
    imported = _imports(ROOT / "pulsing_daemon" / f"{module}.py")
    assert not {name for name in imported if name.split(".")[0] == "aiohttp"}
    assert "pulsing_daemon.http" not in imported and "pulsing_daemon.server" not in imported


@pytest.mark.parametrize("module", ["wire", "exceptions"])
def test_the_shared_modules_import_no_other_room(module: str) -> None:
    imported = _imports(ROOT / "pulsing_daemon" / f"{module}.py")
    ours = {name for name in imported if name.startswith("pulsing_daemon")}
    assert ours <= {"pulsing_daemon.exceptions"}


def test_the_cli_imports_only_the_shared_modules_at_start_up() -> None:
    """Top-level imports only: a command may import more of the daemon when it runs."""
    for path in sorted((ROOT / "pulsing_cli").rglob("*.py")):
        ours = {n for n in _imports(path, top_level_only=True) if n.startswith("pulsing_daemon")}
        assert ours <= {"pulsing_daemon.exceptions", "pulsing_daemon.wire"}, path


def test_supervision_never_probes_a_host() -> None:
    """What a host can do is declared on ActorHost, not found out with hasattr/getattr."""
    source = (PACKAGE / "cell.py").read_text()
    assert not re.search(r"\b(hasattr|getattr)\(\s*(self\.)?host\b", source)


@pytest.mark.parametrize("module", ["http", "ops_routes", "log_routes"])
def test_handlers_talk_to_the_supervisor_only(module: str) -> None:
    """No handler reaches past the Supervisor into a cell (issue 12, item 5)."""
    source = (PACKAGE / f"{module}.py").read_text()
    assert not re.search(r"\bcells?\b", source), f"{module}.py touches a cell"
    assert "pulsing_daemon.cell" not in _imports(PACKAGE / f"{module}.py")
