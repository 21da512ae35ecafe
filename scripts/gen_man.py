#!/usr/bin/env python3
r"""Regenerate the man pages in ``man/`` from the templates in ``man/src/``.

The prose of every page (DESCRIPTION, EXAMPLES, EXIT STATUS, NOTES, ...) is written
by hand in ``man/src/NAME.SECTION.in``. The parts that must agree with the code are
generated into blocks the templates mark with roff comments::

    .\" BEGIN GENERATED OPTIONS ask
    .\" END GENERATED OPTIONS

Block kinds:

``COMMANDS``
    every subcommand of ``pulsing`` with its help text and man page (pulsing(1));
``ARGUMENTS WORD...`` / ``OPTIONS [WORD...]``
    the arguments / options of the command ``pulsing WORD...`` (``ask``,
    ``config check``), read from the Typer command tree: names, metavars, help,
    defaults, ranges, environment variables (``OPTIONS`` alone: the global
    options of ``pulsing`` itself);
``KEYS daemon`` / ``KEYS actors`` / ``KEYS daemon.ISOLATION`` / ``KEYS actors.ray`` /
``KEYS notify``
    the config keys, from ``DAEMON_SPECS`` / ``ACTOR_SPECS`` in
    ``pulsing_daemon/config_keys.py`` (with each host's keys) and ``NOTIFY_SPECS`` in
    ``pulsing_daemon/notify.py``
    (name, type, default, description).

``@VERSION@`` is replaced by the package version. Every command must be covered by
some ``OPTIONS`` block, so a new subcommand cannot ship without a page.

Usage::

    python scripts/gen_man.py           # rewrite man/*.1 and man/*.5
    python scripts/gen_man.py --check   # exit 1 when a committed page is stale

Exit status 2 means a template cannot be filled (unknown command, a command
without a page, unbalanced markers).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = ROOT / "man" / "src"
OUT_DIR = ROOT / "man"

if str(ROOT) not in sys.path:  # runnable from anywhere, without an install
    sys.path.insert(0, str(ROOT))

BEGIN = re.compile(r'^\.\\" BEGIN GENERATED (?P<kind>[A-Z]+)(?P<args>(?: [\w.-]+)*)\s*$')
END = re.compile(r'^\.\\" END GENERATED (?P<kind>[A-Z]+)\s*$')

# How an option's value is called on the pages, by parameter name; anything not
# listed here (and without a metavar of its own) is shown as its name in capitals.
METAVARS = {
    "config": "FILE",
    "data": "JSON",
    "endpoint": "URL",
    "idempotency_key": "KEY",
    "interval": "SECONDS",
    "key": "KEY",
    "listen": "ADDRESS",
    "log_level": "LEVEL",
    "resume": "OFFSET",
    "retries": "N",
    "stream_id": "STREAM",
    "timeout": "SECONDS",
    "token": "TOKEN",
}


class GenerationError(Exception):
    """A template cannot be filled (unknown command, unbalanced markers, ...)."""


# --------------------------------------------------------------------------- roff


def escape(text: str) -> str:
    """Plain text -> roff text: backslashes, minus signs, and no control lines."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = [line.strip() for line in text.splitlines()]
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in lines)


def paragraphs(text: str | None) -> list[str]:
    """Help text split on blank lines, each paragraph on one line."""
    if not text:
        return []
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text.strip()) if block]


def bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{escape(text)}\\fR"


def sentence(text: str) -> str:
    """End with a full stop (the case is kept: text may start with a literal value)."""
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


# --------------------------------------------------------------------------- command tree


@dataclass(frozen=True)
class Node:
    path: tuple[str, ...]  # () for the root command
    command: Any
    context: Any

    @property
    def params(self) -> list[Any]:
        """Visible parameters, the help option included (it lives on the context)."""
        return [p for p in self.command.get_params(self.context) if not getattr(p, "hidden", False)]

    @property
    def children(self) -> dict[str, Any]:
        return dict(getattr(self.command, "commands", {}) or {})


def command_tree() -> dict[tuple[str, ...], Node]:
    """Every command of the ``pulsing`` app by path, the root as ``()``."""
    import typer.main

    from pulsing_cli.app import app

    root = typer.main.get_command(app)
    nodes: dict[tuple[str, ...], Node] = {}

    def visit(command: Any, path: tuple[str, ...], parent: Any) -> None:
        context = command.context_class(
            command,
            parent=parent,
            info_name=path[-1] if path else "pulsing",
            **(command.context_settings or {}),
        )
        nodes[path] = Node(path, command, context)
        for name, child in (getattr(command, "commands", {}) or {}).items():
            if not getattr(child, "hidden", False):
                visit(child, (*path, name), context)

    visit(root, (), None)
    return nodes


def leaves(nodes: dict[tuple[str, ...], Node]) -> list[tuple[str, ...]]:
    return [path for path, node in nodes.items() if path and not node.children]


def is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def option_metavar(param: Any) -> str | None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if getattr(param, "metavar", None):
        return str(param.metavar)
    return METAVARS.get(param.name, (param.name or "value").upper())


def argument_metavar(param: Any) -> str:
    """``ACTOR``; ``ARG ...`` for a variadic argument (Typer's ``[ARG]...`` metavar)."""
    name = str(param.metavar or param.name.upper())
    name = name.replace("[", "").replace("]", "")
    name = name.replace("...", "")
    return f"{name} ..." if param.nargs == -1 else name


def option_tag(param: Any) -> str:
    """``\\fB\\-t\\fR, \\fB\\-\\-timeout\\fR \\fISECONDS\\fR``: short forms first."""
    opts = sorted(param.opts, key=lambda opt: opt.startswith("--"))
    names = [bold(opt) for opt in [*opts, *getattr(param, "secondary_opts", [])]]
    metavar = option_metavar(param)
    return ", ".join(names) + (f" {italic(metavar)}" if metavar else "")


def option_facts(param: Any) -> list[str]:
    """Default, range and environment variable, one sentence each."""
    facts: list[str] = []
    show_default = getattr(param, "show_default", None)
    default = param.default
    if isinstance(show_default, str):
        facts.append(f"Default: {escape(show_default)}.")
    elif show_default is not False and not callable(default):
        if getattr(param, "secondary_opts", None) and isinstance(default, bool):
            chosen = param.opts[0] if default else param.secondary_opts[0]
            facts.append(f"Default: {bold(chosen)}.")
        elif not getattr(param, "is_flag", False) and default not in (None, "", (), []):
            facts.append(f"Default: {bold(str(default))}.")
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and high is not None:
        facts.append(f"Between {escape(str(low))} and {escape(str(high))}.")
    elif low is not None:
        facts.append(f"At least {escape(str(low))}.")
    elif high is not None:
        facts.append(f"At most {escape(str(high))}.")
    envvar = getattr(param, "envvar", None)
    if envvar:
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        facts.append(f"Environment: {', '.join(bold(name) for name in names)}.")
    return facts


def item(tag: str, body: Iterable[str]) -> list[str]:
    """A tagged paragraph (``.TP``); further paragraphs keep its indent (``.IP``)."""
    first, *rest = body
    lines = [".TP", tag, first]
    for block in rest:
        lines += [".IP", block]
    return lines


def help_body(text: str | None, facts: list[str]) -> list[str]:
    """The paragraphs of a help text, the facts appended to the last one."""
    blocks = [escape(sentence(p)) for p in paragraphs(text)]
    if facts:
        if blocks:
            blocks[-1] = blocks[-1] + "\n" + "\n".join(facts)
        else:
            blocks = ["\n".join(facts)]
    return blocks or ["(no description)"]


def render_options(node: Node) -> list[str]:
    lines: list[str] = []
    for param in node.params:
        if is_option(param):
            lines += item(option_tag(param), help_body(param.help, option_facts(param)))
    return lines


def render_arguments(nodes: dict[tuple[str, ...], Node], path: tuple[str, ...]) -> list[str]:
    lines: list[str] = []
    for param in nodes[path].params:
        if not is_option(param):
            facts = [] if param.required else ["Optional."]
            lines += item(italic(argument_metavar(param)), help_body(param.help, facts))
    return lines


def page_of(path: tuple[str, ...]) -> str:
    return f"pulsing-{path[0]}"


def render_commands(nodes: dict[tuple[str, ...], Node], pages: set[str]) -> list[str]:
    lines: list[str] = []
    for path in leaves(nodes):
        page = page_of(path)
        if page not in pages:
            raise GenerationError(
                f"`pulsing {' '.join(path)}` has no man page: add man/src/{page}.1.in"
            )
        node = nodes[path]
        first = paragraphs(node.command.help)[:1]
        text = escape(sentence(first[0])) if first else ""
        lines += item(bold(" ".join(path)), [f"{text}\nSee {bold(page)}(1)."])
    return lines


def render_keys(table: str) -> list[str]:
    from pulsing_daemon import config, notify
    from pulsing_daemon.hosts import registry

    specs = {
        "daemon": config.DAEMON_SPECS,
        "actors": config.ACTOR_SPECS,
        "notify": notify.NOTIFY_SPECS,
    }.get(table)
    if specs is None and table.startswith("daemon.") and table[7:] in registry.hosts():
        specs = registry.host_class(table[7:]).keys.daemon  # [daemon.ISOLATION]
    elif specs is None and table == "actors.ray":
        from pulsing_daemon.hosts.ray_runtime import RAY_OPTION_SPECS

        specs = RAY_OPTION_SPECS
    if specs is None:
        raise GenerationError(
            f"KEYS {table}: expected 'daemon', 'actors', 'daemon.ISOLATION', 'actors.ray' "
            "or 'notify'"
        )
    lines: list[str] = []
    for spec in specs:
        if spec.toml_default:
            default = f"default {escape(spec.toml_default)}"
        elif spec.default is None and not spec.nullable:
            default = "required"
        else:
            default = "unset by default"
        tag = f"{bold(spec.name)} ({italic(spec.type)}, {default})"
        lines += item(tag, [escape(sentence(spec.description))])
    return lines


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Page:
    template: Path

    @property
    def name(self) -> str:  # "pulsing-ask.1"
        return self.template.name.removesuffix(".in")

    @property
    def output(self) -> Path:
        return OUT_DIR / self.name


def pages() -> list[Page]:
    return [Page(path) for path in sorted(SRC_DIR.glob("*.in"))]


def blocks(lines: list[str], source: str) -> Iterator[tuple[int, int, str, list[str]]]:
    """(begin index, end index, kind, args) of every generated block of a template."""
    begin: tuple[int, str, list[str]] | None = None
    for index, line in enumerate(lines):
        if opening := BEGIN.match(line):
            if begin is not None:
                raise GenerationError(f"{source}:{index + 1}: nested BEGIN GENERATED")
            begin = (index, opening["kind"], opening["args"].split())
        elif closing := END.match(line):
            if begin is None or begin[1] != closing["kind"]:
                raise GenerationError(f"{source}:{index + 1}: END without matching BEGIN")
            yield begin[0], index, begin[1], begin[2]
            begin = None
    if begin is not None:
        raise GenerationError(f"{source}:{begin[0] + 1}: BEGIN GENERATED without END")


def render_page(
    page: Page,
    nodes: dict[tuple[str, ...], Node],
    page_names: set[str],
    covered: set[tuple[str, ...]],
) -> str:
    """The final page: the template with its generated blocks filled in.

    Adds the command paths whose options it documents to ``covered``.
    """
    from pulsing_daemon import __version__

    source = page.template.relative_to(ROOT).as_posix()
    lines = page.template.read_text(encoding="utf-8").splitlines()
    out = [
        f'.\\" Generated by scripts/gen_man.py from {source}:',
        '.\\" edit the template, then run: python scripts/gen_man.py',
    ]
    position = 0
    for begin, end, kind, args in blocks(lines, source):
        out += lines[position : begin + 1]
        path = tuple(args)
        if kind in ("OPTIONS", "ARGUMENTS") and path not in nodes:
            raise GenerationError(f"{source}:{begin + 1}: no command `pulsing {' '.join(args)}`")
        if kind == "OPTIONS":
            out += render_options(nodes[path])
            covered.add(path)
        elif kind == "ARGUMENTS":
            out += render_arguments(nodes, path)
        elif kind == "COMMANDS":
            out += render_commands(nodes, page_names)
        elif kind == "KEYS":
            if len(args) != 1:
                raise GenerationError(f"{source}:{begin + 1}: KEYS takes one table name")
            out += render_keys(args[0])
        else:
            raise GenerationError(f"{source}:{begin + 1}: unknown block kind {kind}")
        out.append(lines[end])
        position = end + 1
    out += lines[position:]
    text = "\n".join(out) + "\n"
    return text.replace("@VERSION@", __version__)


def render_all() -> dict[Path, str]:
    nodes = command_tree()
    page_names = {page.name.rsplit(".", 1)[0] for page in pages()}  # "pulsing-ask"
    covered: set[tuple[str, ...]] = set()
    rendered = {page.output: render_page(page, nodes, page_names, covered) for page in pages()}
    missing = [path for path in leaves(nodes) if path not in covered]
    if missing:
        names = ", ".join("pulsing " + " ".join(path) for path in missing)
        raise GenerationError(f"no OPTIONS block documents: {names}")
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a page in man/ is out of date"
    )
    options = parser.parse_args(argv)
    try:
        rendered = render_all()
    except GenerationError as exc:
        print(f"gen_man: {exc}", file=sys.stderr)
        return 2

    stale = []
    for path, text in rendered.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if options.check:
            diff = difflib.unified_diff(
                (current or "").splitlines(), text.splitlines(),
                f"{path.name} (committed)", f"{path.name} (generated)", lineterm="", n=1,
            )  # fmt: skip
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    orphans = sorted(path for path in OUT_DIR.glob("*.[15]") if path not in rendered)
    for path in orphans:
        print(f"gen_man: {path.relative_to(ROOT)} has no template in man/src/", file=sys.stderr)

    if options.check and (stale or orphans):
        names = " ".join(str(p.relative_to(ROOT)) for p in stale)
        if stale:
            print(f"gen_man: stale: {names}; run: python scripts/gen_man.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
