"""The reload plan (pulsing_daemon/reload.py): which actors are added, removed, updated live,
restarted or left alone, and which [daemon] keys need a daemon restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulsing_daemon.config import Config, parse_config
from pulsing_daemon.reload import ReloadPlan, make_plan

BASE = """
[daemon]
{daemon}
[defaults]
{defaults}
[actors.keep]
class = "m:Keep"

[actors.worker]
{worker_head}
{worker}
[actors.gone]
class = "m:Gone"
"""


WORKER_HEAD = 'class = "m:Worker"\nargs = { scale = 2 }'


def config(
    daemon: str = 'listen = "127.0.0.1:7480"',
    defaults: str = "",
    worker: str = "",
    extra: str = "",
    worker_head: str = WORKER_HEAD,
) -> Config:
    text = BASE.format(daemon=daemon, defaults=defaults, worker=worker, worker_head=worker_head)
    if extra:
        text = text.replace('[actors.gone]\nclass = "m:Gone"\n', "") + extra
    return parse_config(text, Path("/etc/pulsing/pulsing.toml"), import_classes=False)


def plan(
    old: Config, new: Config, active: tuple[str, ...] = ("keep", "worker", "gone")
) -> ReloadPlan:
    return make_plan(old, new, active=active)


def test_the_same_file_changes_nothing() -> None:
    result = plan(config(), config())
    assert result.unchanged == ["keep", "worker", "gone"]
    assert result.added == result.removed == result.updated == result.restarted == []
    assert result.needs_daemon_restart == result.daemon_updated == []


@pytest.mark.parametrize(
    "line",
    [
        "restart_policy = 'never'",
        "max_restarts = 9",
        "restart_window = 30.0",
        "min_backoff = 0.5",
        "max_backoff = 3.0",
        "timeout = 3.0",
        "mailbox_size = 5",
        "during_restart = 'fail_fast'",
        "reset_after = 10.0",
        "autostart = false",
    ],
)
def test_supervision_keys_are_applied_live(line: str) -> None:
    result = plan(config(), config(worker=line))
    key = line.split(" =")[0]
    assert result.updated == ["worker"] and result.restarted == []
    assert result.changes == {"worker": [key]}
    assert result.unchanged == ["keep", "gone"]


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('class = "m:Other"', "class"),
        ("args = { scale = 3 }", "args"),
        ('isolation = "process"', "isolation"),
    ],
)
def test_instance_keys_restart_only_that_actor(line: str, key: str) -> None:
    kept = [part for part in WORKER_HEAD.split("\n") if not part.startswith(key)]
    new = config(worker_head="\n".join([*kept, line]))
    result = plan(config(), new)
    assert result.restarted == ["worker"], result
    assert result.changes["worker"] == [key]
    assert result.unchanged == ["keep", "gone"]


def test_an_instance_change_on_a_stopped_actor_only_updates_its_config() -> None:
    old, new = config(), config(worker="isolation = 'process'")
    result = plan(old, new, active=("keep",))
    assert result.updated == ["worker"] and result.restarted == []


def test_added_and_removed() -> None:
    new = config(extra='[actors.fresh]\nclass = "m:Fresh"\n')
    result = plan(config(), new)
    assert result.added == ["fresh"] and result.removed == ["gone"]
    assert result.unchanged == ["keep", "worker"]


def test_defaults_reach_every_actor_that_does_not_override_them() -> None:
    result = plan(
        config(worker="max_restarts = 5"),
        config(defaults="max_restarts = 7", worker="max_restarts = 5"),
    )
    assert result.updated == ["keep", "gone"]
    assert result.unchanged == ["worker"]


def test_default_timeout_reaches_only_actors_without_their_own() -> None:
    old = config(worker="timeout = 4.0")
    new = config(daemon="default_timeout = 9.0", worker="timeout = 4.0")
    result = plan(old, new)
    assert result.updated == ["keep", "gone"] and result.unchanged == ["worker"]
    assert result.daemon_updated == ["daemon.default_timeout"]


def test_daemon_keys_live_or_needing_a_restart() -> None:
    new = config(daemon='listen = "127.0.0.1:7481"\ngrace_period = 3.0\nmax_body = 4096')
    result = plan(config(), new)
    assert result.needs_daemon_restart == ["daemon.listen", "daemon.max_body"]
    assert result.daemon_updated == ["daemon.grace_period"]
    assert result.unchanged == ["keep", "worker", "gone"]


def test_the_token_is_compared_as_resolved() -> None:
    same = make_plan(config(), config(), tokens=("a", "a"))
    assert same.daemon_updated == []
    rotated = make_plan(config(), config(), tokens=("a", "b"))
    assert rotated.daemon_updated == ["daemon.token"]
    assert rotated.needs_daemon_restart == []


def test_the_answer_has_the_contract_keys() -> None:
    body = plan(config(), config()).to_dict(dry_run=True)
    for key in ("added", "removed", "updated", "restarted", "unchanged", "needs_daemon_restart"):
        assert isinstance(body[key], list)
    assert body["dry_run"] is True
    assert plan(config(), config()).summary()["unchanged"] == 3


@pytest.mark.parametrize(
    ("tables", "same_order"),
    [
        ("[actors.a]\n{a}\n[actors.b]\n{b}\n[actors.c]\n{b}\n", True),
        ("[actors.c]\n{b}\n[actors.a]\n{a}\n[actors.b]\n{b}\n", False),
        ("[actors.a]\n{a}\n[actors.b]\n{b}\n", False),
    ],
)
def test_the_new_table_keeps_the_file_order_and_the_unchanged_actors(
    tmp_path: Path, tables: str, same_order: bool
) -> None:
    """The reader sends the order only when it changed; either way the daemon's new table
    has the new file's order, the running config object of every unchanged actor, and
    the new one of every changed actor."""
    import sys

    from pulsing_daemon.reload import _assemble
    from pulsing_daemon.reload_plan import Request, read

    plain = 'class = "cfg_actors:Plain"\nargs = { name = "x" }'
    decorated = 'class = "cfg_actors:Decorated"'
    head = '[daemon]\nlisten = "127.0.0.1:7480"\n'
    old_text = head + f"[actors.a]\n{plain}\n[actors.b]\n{plain}\n[actors.c]\n{plain}\n"
    old = parse_config(old_text, tmp_path / "p.toml")
    path = tmp_path / "p.toml"
    path.write_text(head + tables.format(a=decorated, b=plain))
    answer = read(Request(str(path), old_text, old.daemon, None, None, list(sys.path)))
    assert not answer.problems
    assert (answer.order is None) is same_order
    new = _assemble(old, answer)
    expected = [line[len("[actors.") : -1] for line in tables.splitlines() if line[:1] == "["]
    assert list(new.actors) == expected
    assert new.actors["a"].class_path == "cfg_actors:Decorated"
    assert new.actors["b"] is old.actors["b"]


def test_options_a_class_gives_itself_are_not_a_change(tmp_path: Path) -> None:
    """The reader reads the running text as the daemon did, classes imported: an actor
    whose class sets its own options (@remote(max_restarts=7, ...)) is unchanged when
    its table is; a change to one of those options in the file still counts."""
    import sys

    from pulsing_daemon.reload_plan import Request, read

    head = '[daemon]\nlisten = "127.0.0.1:7480"\n[actors.d]\nclass = "cfg_actors:Decorated"\n'
    path = tmp_path / "p.toml"
    running = parse_config(head, path)
    assert running.actors["d"].max_restarts == 7  # from the decorator
    for text, updated in ((head, []), (head + "max_restarts = 8\n", ["d"])):
        path.write_text(text)
        answer = read(Request(str(path), head, running.daemon, None, None, list(sys.path)))
        assert not answer.problems and answer.plan is not None
        assert answer.plan.updated == updated
        assert answer.plan.unchanged == ([] if updated else ["d"])


def test_a_running_class_that_no_longer_imports_sends_the_whole_config(tmp_path: Path) -> None:
    """The running text's class is gone from its module (the file now names another):
    the reader cannot read the running text as the daemon did, so it sends every actor
    and the daemon compares with what it runs (Answer.whole)."""
    import sys

    from pulsing_daemon.reload_plan import Request, read

    head = '[daemon]\nlisten = "127.0.0.1:7480"\n[actors.d]\nclass = "cfg_actors:{}"\n'
    path = tmp_path / "p.toml"
    path.write_text(head.format("Decorated"))
    running = parse_config(head.format("Decorated"), path)
    answer = read(
        Request(str(path), head.format("Removed"), running.daemon, None, None, list(sys.path))
    )
    assert not answer.problems and answer.whole and answer.plan is None
    assert list(answer.changed) == ["d"] and answer.changed["d"].cls is None


def test_only_the_actors_whose_tables_differ_are_built_again(tmp_path: Path) -> None:
    """build_config's ``known``: with the same [daemon] and [defaults], an actor whose
    table is the same is the config built before (the same object); one whose table
    differs, or every actor once [defaults] differs, is built from its own table."""
    from pulsing_daemon.config import build_config, parse_toml

    path = tmp_path / "p.toml"
    text = '[actors.a]\nclass = "m:A"\n[actors.b]\nclass = "m:B"\nmax_restarts = {}\n'
    known_text = text.format(3)
    known_tables = parse_toml(known_text)
    known = build_config(known_tables, known_text, path, import_classes=False)
    for other, defaults, rebuilt in (
        (3, "", []),
        (4, "", ["b"]),
        (3, "[defaults]\nmax_backoff = 5.0\n", ["a", "b"]),
    ):
        other_text = defaults + text.format(other)
        built = build_config(
            parse_toml(other_text), other_text, path, import_classes=False,
            known=(known_tables, known),
        )  # fmt: skip
        assert [n for n in built.actors if built.actors[n] is not known.actors[n]] == rebuilt
        assert built.actors["b"].max_restarts == other


def test_same_value_compares_types_and_keeps_nan_equal() -> None:
    from pulsing_daemon.config import same_value

    assert same_value({"a": [1, {"b": 2.0}]}, {"a": [1, {"b": 2.0}]})
    assert not same_value({"a": 1}, {"a": 1.0}) and not same_value([True], [1])
    assert not same_value({"a": 1, "b": 2}, {"b": 2, "a": 1})  # key order too
    assert same_value(float("nan"), float("nan")) and not same_value(float("nan"), 1.0)


def test_an_unchanged_nan_is_no_change(tmp_path: Path) -> None:
    import sys

    from pulsing_daemon.reload_plan import Request, read

    text = '[daemon]\nlisten = "127.0.0.1:7480"\n[actors.p]\nclass = "cfg_actors:Plain"\n'
    text += "args = { name = nan }\n"
    path = tmp_path / "p.toml"
    path.write_text(text)
    running = parse_config(text, path)
    answer = read(Request(str(path), text, running.daemon, None, None, list(sys.path)))
    assert answer.plan is not None and answer.plan.unchanged == ["p"]


@pytest.mark.parametrize("before, after", [("1", "1.0"), ("1", "true"), ("0", "false")])
def test_a_value_of_another_type_is_a_change(tmp_path: Path, before: str, after: str) -> None:
    """1, 1.0 and true are equal in Python, not in an actor's args: the reader sees the
    change and the actor is restarted with its new args."""
    import sys

    from pulsing_daemon.reload_plan import Request, read

    head = '[daemon]\nlisten = "127.0.0.1:7480"\n[actors.p]\nclass = "cfg_actors:Plain"\n'
    running_text = head + f"args = {{ name = {before} }}\n"
    path = tmp_path / "p.toml"
    running = parse_config(running_text, path)
    path.write_text(head + f"args = {{ name = {after} }}\n")
    answer = read(Request(str(path), running_text, running.daemon, None, None, list(sys.path)))
    assert not answer.problems and answer.plan is not None
    assert answer.plan.restarted == ["p"] and answer.plan.changes == {"p": ["args"]}
    assert type(answer.changed["p"].args["name"]) is not type(running.actors["p"].args["name"])


def test_the_reader_keeps_the_tables_of_the_texts_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next reload's running text is this reload's new one: its tables come from the
    reader's cache file instead of being parsed again. A damaged file is ignored."""
    import sys

    from pulsing_daemon import reload_plan
    from pulsing_daemon.reload_plan import Request, read

    parsed: list[str] = []
    parse_toml = reload_plan.parse_toml

    def counting(text: str, path: object = "<string>") -> dict[str, object]:
        parsed.append(text)
        return parse_toml(text, path)  # type: ignore[arg-type]

    monkeypatch.setattr(reload_plan, "parse_toml", counting)
    head = '[daemon]\nlisten = "127.0.0.1:7480"\n[actors.a]\nclass = "cfg_actors:Plain"\n'
    texts = [head + f'args = {{ name = "v{n}" }}\n' for n in range(3)]
    path, cache = tmp_path / "p.toml", tmp_path / "tables.pickle"
    running = parse_config(texts[0], path)

    def reload_to(old: str, new: str) -> list[str]:
        parsed.clear()
        path.write_text(new)
        answer = read(
            Request(str(path), old, running.daemon, None, None, list(sys.path), str(cache))
        )
        assert not answer.problems and answer.plan is not None
        assert answer.plan.restarted == ["a"]
        return parsed[:]

    assert reload_to(texts[0], texts[1]) == [texts[1], texts[0]]  # nothing kept yet
    assert cache.stat().st_mode & 0o777 == 0o600  # it may hold a [daemon] token
    assert reload_to(texts[1], texts[2]) == [texts[2]]  # the running text's tables kept
    cache.write_bytes(b"not a pickle")
    assert reload_to(texts[2], texts[0]) == [texts[0], texts[2]]  # ignored, parsed
    assert reload_to(texts[0], texts[1]) == [texts[1]]  # written again
    cache.chmod(0o660)  # another user may have written it: not trusted
    assert reload_to(texts[1], texts[2]) == [texts[2], texts[1]]
