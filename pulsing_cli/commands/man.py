"""pulsing man [PAGE]: read pulsing's man pages from any install, editable ones included."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pulsing_cli.context import fail_usage, settings
from pulsing_cli.exit import ExitStatus

EPILOG = """Examples:

  pulsing man

  pulsing man status

  pulsing man pulsing.toml

  pulsing man --path events

PAGE is a command (status, events, ...), a page name (pulsing-status), or
pulsing.toml for the config file's page. The page is shown with man(1) when it is
installed, else as plain text. `man pulsing` finds the same pages after a regular
(non-editable) install."""


def man(
    ctx: typer.Context,
    page: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(
            metavar="[PAGE]",
            help="A command (status), a page (pulsing-status) or pulsing.toml [default: pulsing].",
            show_default=False,
        ),
    ] = None,
    path_only: Annotated[
        bool,
        typer.Option("--path", help="Print the page's file name instead.", show_default=False),
    ] = False,
    list_pages: Annotated[
        bool, typer.Option("--list", help="List the pages.", show_default=False)
    ] = False,
) -> None:
    """Show a pulsing man page (works in an editable install too, where `man` cannot find them)."""
    options = settings(ctx)
    directories = page_directories()
    if list_pages:
        for name in sorted({p.name for d in directories for p in d.glob("pulsing*.[15]")}):
            print(name)
        raise typer.Exit(ExitStatus.OK)
    found = find_page(page or "pulsing", directories)
    if found is None:
        where = ", ".join(str(d) for d in directories) or "nowhere (no pages installed)"
        fail_usage(options, f"no man page {page!r} (looked in {where}); see `pulsing man --list`")
    if path_only:
        print(found)
        raise typer.Exit(ExitStatus.OK)
    viewer = shutil.which("man")
    if viewer and sys.stdout.isatty():
        raise typer.Exit(subprocess.call([viewer, "-l", str(found)]))
    if viewer:  # not a terminal: man formats for it (no pager, no overstrike with MAN_KEEP...)
        env = {**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"}
        result = subprocess.run([viewer, "-l", str(found)], env=env, capture_output=True)
        if result.returncode == 0 and result.stdout:
            sys.stdout.write(re.sub(r".\x08", "", result.stdout.decode(errors="replace")))
            raise typer.Exit(ExitStatus.OK)
    sys.stdout.write(plain_text(found.read_text(encoding="utf-8")))
    raise typer.Exit(ExitStatus.OK)


def page_directories() -> list[Path]:
    """Where pages may be: the checkout (editable install), then the installed share/man."""
    directories: list[Path] = []
    checkout = Path(__file__).resolve().parents[2] / "man"
    if (checkout / "pulsing.1").is_file():
        directories.append(checkout)
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, "/usr/local", "/usr")):
        for section in ("man1", "man5"):
            directory = Path(prefix) / "share" / "man" / section
            if (directory / "pulsing.1").is_file() or (directory / "pulsing.toml.5").is_file():
                directories.append(directory)
    return directories


def find_page(name: str, directories: list[Path]) -> Path | None:
    name = name.strip().removesuffix(".1").removesuffix(".5")
    candidates = [name, f"pulsing-{name}"]
    if name in ("pulsing.toml", "toml", "config-file"):
        candidates = ["pulsing.toml"]
    for directory in directories:
        for candidate in candidates:
            for section in ("1", "5"):
                path = directory / f"{candidate}.{section}"
                if path.is_file():
                    return path
    return None


def plain_text(roff: str) -> str:
    """A readable rendering of our roff for systems without man(1): sections, wrapped
    paragraphs, examples kept as they are."""
    import textwrap

    out: list[str] = []
    words: list[str] = []
    verbatim = False
    indent = "       "

    def flush() -> None:
        if words:
            out.extend(textwrap.wrap(" ".join(words), 79, initial_indent=indent,
                                     subsequent_indent=indent))  # fmt: skip
            out.append("")
            words.clear()

    for line in roff.splitlines():
        if line.startswith(".EX"):
            flush()
            verbatim = True
        elif line.startswith(".EE"):
            verbatim = False
            out.append("")
        elif verbatim:
            out.append(indent + "    " + _unescape(line))
        elif line.startswith((".SH ", ".SS ")):
            flush()
            out += [_unescape(line[4:].strip('"')), ""]
        elif line.startswith((".PP", ".TP", ".IP", ".br", ".TH")):
            flush()
            if line.startswith(".IP"):
                words.append("*")
        elif line.startswith("."):
            macro, _, rest = line.partition(" ")
            if macro in (".B", ".I", ".BR", ".RB", ".IR", ".RI"):
                words.append(_unescape(rest.replace('" "', " ").replace('"', "")))
        elif line.strip():
            words.append(_unescape(line))
    flush()
    return "\n".join(out).strip() + "\n"


def _unescape(text: str) -> str:
    for escape, char in ((r"\-", "-"), (r"\(aq", "'"), (r"\(dq", '"'), (r"\(ga", "`"),
                         (r"\(bu", "*"), (r"\e", "\\"), (r"\&", ""), (r"\fB", ""),
                         (r"\fI", ""), (r"\fR", ""), (r"\fP", ""), ("\\ ", " ")):  # fmt: skip
        text = text.replace(escape, char)
    return text
