"""pulsing_daemon.config: TOML -> validated dataclasses, every problem in one pass."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from pulsing_daemon.config import (
    ACTOR_KEYS,
    DAEMON_KEYS,
    DECORATOR,
    ActorConfig,
    ConfigError,
    ConfigProblem,
    check_config,
    import_class,
    load_config,
    parse_config,
)
from pulsing_daemon.policy import RestartPolicy

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[1] / "pulsing.toml.example"
# Makes tests/daemon/cfg_actors.py importable, as a user's pythonpath would.
PYTHONPATH = f"[daemon]\npythonpath = [{json.dumps(str(HERE))}]\n"


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a config prepends its pythonpath to sys.path; undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def write(directory: Path, text: str, name: str = "pulsing.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> dict[str, ConfigProblem]:
    """The problems of a config file, by key (each key must occur once)."""
    found = check_config(write(tmp_path, text))
    assert found, "expected the config to be invalid"
    by_key = {p.key: p for p in found}
    assert len(by_key) == len(found), found
    return by_key


def load(tmp_path: Path, text: str, **kwargs) -> object:
    return load_config(write(tmp_path, text), **kwargs)


# --------------------------------------------------------------------------- valid files


def test_example_file_loads() -> None:
    assert check_config(EXAMPLE) == []
    config = load_config(EXAMPLE)
    assert config.path == EXAMPLE
    assert config.daemon.listen == "127.0.0.1:7480"
    assert config.daemon.state_dir == EXAMPLE.parent / ".pulsing"
    assert list(config.actors) == [
        "worker", "echo", "counter", "flaky", "slow", "streamer", "ticker",
    ]  # fmt: skip
    assert config.actors["worker"].args == {"scale": 1}
    assert config.actors["slow"].timeout == 5.0
    assert config.actors["ticker"].restart_policy is RestartPolicy.ALWAYS
    assert all(isinstance(actor.cls, type) for actor in config.actors.values())


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in [*DAEMON_KEYS, *ACTOR_KEYS]:
        assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"{key} not documented"


def test_example_with_every_process_key_enabled_loads(tmp_path: Path) -> None:
    """The commented-out keys of [actors.worker] are valid when uncommented."""
    text = EXAMPLE.read_text(encoding="utf-8")
    worker = text.split("[actors.worker]", 1)[1].split("[actors.echo]", 1)[0]
    enabled = re.sub(r"^# (\w+ = )", r"\1", worker, flags=re.MULTILINE)
    text = text.replace(worker, enabled)
    config = parse_config(text, tmp_path / "pulsing.toml")
    actor = config.actors["worker"]
    assert actor.isolation == "process"
    assert actor.host_keys["memory_limit"] == 536870912
    assert actor.host_keys["env"] == {"PYTHONUNBUFFERED": "1"}
    assert actor.host_keys["cwd"] == str(tmp_path)


def test_empty_file_is_a_valid_daemon_with_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.actors == {}
    assert config.daemon.listen == "127.0.0.1:7480"
    assert (config.daemon.host, config.daemon.port) == ("127.0.0.1", 7480)
    assert config.daemon.default_timeout == 30.0
    assert config.daemon.resolved_token() is None


def test_actor_defaults_and_ints_accepted_for_floats(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [actors.echo]
        class = "pulsing_daemon.demo.Echo"
        timeout = 5
        """,
    )
    echo = config.actors["echo"]
    assert echo == ActorConfig(name="echo", class_path="pulsing_daemon.demo.Echo", timeout=5.0)
    assert isinstance(echo.timeout, float)
    assert echo.cls is import_class("pulsing_daemon.demo:Echo")


def test_policy_and_during_restart_spellings(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [defaults]
        restart_policy = "on-failure"
        during_restart = "fail-fast"

        [actors.echo]
        class = "pulsing_daemon.demo:Echo"

        [actors.echo2]
        class = "pulsing_daemon.demo:Echo"
        restart_policy = "Always"
        """,
    )
    assert config.actors["echo"].restart_policy is RestartPolicy.ON_FAILURE
    assert config.actors["echo"].during_restart == "fail_fast"
    assert config.actors["echo2"].restart_policy is RestartPolicy.ALWAYS


def test_quoted_actor_name_with_dots(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [actors."jobs.v2"]
        class = "pulsing_daemon.demo:Echo"
        timeout = -1
        """,
    )
    assert found['actors."jobs.v2".timeout'].line == 4


# --------------------------------------------------------------------------- precedence


def test_precedence_actor_then_decorator_then_defaults_then_builtin(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        PYTHONPATH
        + """
        [defaults]
        max_restarts = 9
        min_backoff = 0.1
        mailbox_size = 10
        timeout = 1.0

        [actors.d]
        class = "cfg_actors:Decorated"
        max_backoff = 8.0
        restart_policy = "always"

        [actors.plain]
        class = "cfg_actors:Plain"
        args = { name = "x" }
        """,
    )
    decorated = config.actors["d"]
    assert decorated.max_backoff == 8.0  # the actor's table
    assert decorated.restart_policy is RestartPolicy.ALWAYS  # table beats @remote(never)
    assert decorated.max_restarts == 7  # @remote beats [defaults]
    assert decorated.min_backoff == 0.5
    assert decorated.timeout == 3.0
    assert decorated.mailbox_size == 10  # [defaults]
    assert decorated.reset_after == 300.0  # built-in
    plain = config.actors["plain"]
    assert (plain.max_restarts, plain.min_backoff, plain.timeout) == (9, 0.1, 1.0)
    assert plain.max_backoff == 10.0


def test_bare_remote_decorator_adds_nothing(tmp_path: Path) -> None:
    config = load(tmp_path, PYTHONPATH + '[actors.b]\nclass = "cfg_actors:BareDecorated"\n')
    assert config.actors["b"].max_restarts == 5


def test_decorator_options_are_validated_and_placed_on_the_class_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        PYTHONPATH
        + """
        [actors.bad]
        restart_policy = "never"
        class = "cfg_actors:BadlyDecorated"
        """,
    )
    prefix = f"actors.bad.{DECORATOR}"
    assert found[f"{prefix}.max_backoff"].reason == "must be >= 0 (got -1.0)"
    assert found[f"{prefix}.max_backoff"].line == 6
    assert found[f"{prefix}.bogus"].reason == "unknown key"
    assert found[f"{prefix}.args"].reason.startswith("not allowed here")
    assert str(found[f"{prefix}.max_backoff"]).endswith(
        "pulsing.toml:6: actors.bad.class(@remote).max_backoff: must be >= 0 (got -1.0)"
    )


def test_relative_pythonpath_imports_a_module_from_the_config_dir(tmp_path: Path) -> None:
    write(tmp_path / "lib", "class Local:\n    pass\n", name="pulsing_cfg_local_mod.py")
    text = '[daemon]\npythonpath = ["lib"]\n[actors.l]\nclass = "pulsing_cfg_local_mod:Local"\n'
    config = load(tmp_path, text)
    config = load(tmp_path, text)  # loading twice does not add the directory twice
    assert config.daemon.pythonpath == (tmp_path / "lib",)
    assert config.actors["l"].cls.__name__ == "Local"
    assert sys.path.count(str(tmp_path / "lib")) == 1
    assert sys.path[0] == str(tmp_path / "lib")


# --------------------------------------------------------------------------- problems


def test_one_problem_for_a_toml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[daemon]\nlisten = \n")
    found = check_config(path)
    assert len(found) == 1
    assert found[0].key == ""
    assert found[0].line == 2
    assert found[0].reason.startswith("invalid TOML: ")
    assert str(found[0]).startswith(f"{path}:2: invalid TOML")


def test_unknown_keys_with_suggestions(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [deamon]
        listen = "127.0.0.1:1"

        [daemon]
        default_timout = 3.0

        [defaults]
        class = "x:Y"

        [actors.w]
        class = "pulsing_daemon.demo:Worker"
        min_backof = 1
        zzz = 1
        """,
    )
    assert found["deamon"].reason == "unknown key; did you mean 'daemon'?"
    assert found["deamon"].line == 2
    assert found["daemon.default_timout"].reason == "unknown key; did you mean 'default_timeout'?"
    assert found["daemon.default_timout"].line == 6
    assert found["defaults.class"].reason.startswith("not allowed here")
    assert found["actors.w.min_backof"].reason == "unknown key; did you mean 'min_backoff'?"
    assert found["actors.w.min_backof"].line == 13
    assert found["actors.w.zzz"].reason == "unknown key"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("min_backoff = -1", "must be >= 0 (got -1.0)"),
        ("max_backoff = -0.5", "must be >= 0 (got -0.5)"),
        ("max_restarts = -1", "must be >= 0 (got -1)"),
        ("mailbox_size = 0", "must be >= 1 (got 0)"),
        ("timeout = 0", "must be > 0 (got 0.0)"),
        ("restart_window = -5.0", "must be > 0 (got -5.0)"),
        ("reset_after = 0.0", "must be > 0 (got 0.0)"),
        ("memory_limit = 0", "must be >= 1 (got 0)"),
        ("timeout = inf", "must be a finite number (got inf)"),
        ("restart_policy = 'sometimes'", "unknown restart policy 'sometimes'"),
        ("isolation = 'thread'", "unknown value 'thread' (expected one of: inline, process, ray)"),
        ("during_restart = 'drop'", "unknown value 'drop' (expected one of: queue, fail_fast)"),
        ("min_backoff = true", "expected a number, got boolean (true)"),
        ("max_restarts = true", "expected an integer, got boolean (true)"),
        ("max_restarts = 2.5", "expected an integer, got float (2.5)"),
        ("max_restarts = '5'", "expected an integer, got string ('5')"),
        ("autostart = 1", "expected a boolean (true or false), got integer (1)"),
        ("restart_policy = 1", "expected a string, got integer (1)"),
        ("args = 5", "expected a table, got integer (5)"),
        ("env = { A = 1 }", "A: expected a string, got integer (1)"),
    ],
)
def test_bad_actor_values(tmp_path: Path, line: str, reason: str) -> None:
    key = line.split(" = ")[0]
    found = problems(tmp_path, f'[actors.w]\nclass = "pulsing_daemon.demo:Worker"\n{line}\n')
    assert found[f"actors.w.{key}"].reason.startswith(reason)
    assert found[f"actors.w.{key}"].line == 3


def test_problem_renders_as_file_line_key_reason() -> None:
    problem = ConfigProblem(
        "pulsing.toml", "actors.worker.min_backoff", 12, "must be >= 0 (got -1.0)"
    )
    assert str(problem) == "pulsing.toml:12: actors.worker.min_backoff: must be >= 0 (got -1.0)"
    assert str(ConfigProblem("pulsing.toml", "daemon", None, "x")) == "pulsing.toml: daemon: x"
    assert str(ConfigProblem("pulsing.toml", "", 3, "x")) == "pulsing.toml:3: x"


def test_bad_values_in_defaults_are_reported_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [defaults]
        min_backoff = -1

        [actors.a]
        class = "pulsing_daemon.demo:Echo"

        [actors.b]
        class = "pulsing_daemon.demo:Echo"
        """,
    )
    assert list(found) == ["defaults.min_backoff"]
    assert found["defaults.min_backoff"].line == 3


def test_min_backoff_above_max_backoff(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [defaults]
        max_backoff = 1.0

        [actors.w]
        class = "pulsing_daemon.demo:Echo"
        min_backoff = 5
        """,
    )
    problem = found["actors.w.min_backoff"]
    assert problem.reason == "min_backoff (5) must be <= max_backoff (1)"
    assert problem.line == 7


def test_process_only_keys_need_process_isolation(tmp_path: Path) -> None:
    base = '[actors.w]\nclass = "pulsing_daemon.demo:Echo"\nmemory_limit = 1000000\n'
    found = problems(tmp_path, base)
    assert found["actors.w.memory_limit"].reason == 'only applies with isolation = "process"'
    config = load(tmp_path, base + 'isolation = "process"\ncwd = "."\nenv = { A = "1" }\n')
    assert config.actors["w"].host_keys["cwd"] == str(tmp_path)
    assert config.actors["w"].host_keys["env"] == {"A": "1"}


def test_missing_cwd_directory(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[actors.w]\nclass = "pulsing_daemon.demo:Echo"\nisolation = "process"\ncwd = "nope"\n',
    )
    assert found["actors.w.cwd"].reason == f"no such directory: {tmp_path / 'nope'}"


def test_unimportable_class(tmp_path: Path) -> None:
    found = problems(tmp_path, '[actors.w]\n\nclass = "nope.mod:X"\n')
    problem = found["actors.w.class"]
    assert (
        problem.reason == "cannot import 'nope.mod:X': ModuleNotFoundError: No module named 'nope'"
    )
    assert problem.line == 3


@pytest.mark.parametrize(
    ("class_path", "reason"),
    [
        ("cfg_actors:Missing", "cannot import 'cfg_actors:Missing': AttributeError: "),
        ("cfg_actors:NOT_A_CLASS", "'cfg_actors:NOT_A_CLASS' is not a class (it is a int)"),
        ("Worker", "expected 'module:Class' or 'module.Class' (got 'Worker')"),
        ("a b:C", "expected 'module:Class' or 'module.Class'"),
    ],
)
def test_bad_class_paths(tmp_path: Path, class_path: str, reason: str) -> None:
    found = problems(tmp_path, PYTHONPATH + f'[actors.w]\nclass = "{class_path}"\n')
    assert found["actors.w.class"].reason.startswith(reason)
    assert found["actors.w.class"].line == 4


def test_missing_class_is_placed_on_the_table_header(tmp_path: Path) -> None:
    found = problems(tmp_path, "\n[actors.w]\ntimeout = 1.0\n")
    assert found["actors.w.class"].reason == "required key missing"
    assert found["actors.w.class"].line == 2


def test_args_are_checked_against_the_constructor(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        PYTHONPATH
        + """
        [actors.w]
        class = "pulsing_daemon.demo:Worker"
        args = { scale = 2, speed = 3 }

        [actors.p]
        class = "cfg_actors:Plain"
        """,
    )
    assert "unexpected keyword argument 'speed'" in found["actors.w.args"].reason
    assert found["actors.w.args"].line == 6
    assert "missing a required argument: 'name'" in found["actors.p.args"].reason
    assert found["actors.p.args"].line == 8  # no args key: the table header


def test_actors_of_one_class_each_get_their_own_problems(tmp_path: Path) -> None:
    """A class is imported, read and bound once per config read (config._Classes), yet
    every actor that meets a problem gets it, on its own lines; actors of one class share
    the class and its options."""
    found = problems(
        tmp_path,
        PYTHONPATH
        + """
        [actors.p1]
        class = "cfg_actors:Plain"
        [actors.p2]
        class = "cfg_actors:Plain"
        args = { name = "x" }
        [actors.p3]
        class = "cfg_actors:Plain"
        [actors.b1]
        class = "cfg_actors:BadlyDecorated"
        [actors.b2]
        class = "cfg_actors:BadlyDecorated"
        """,
    )
    assert {key for key in found if key.endswith(".args") and "@remote" not in key} == {
        "actors.p1.args",
        "actors.p3.args",
    }
    assert found["actors.p1.args"].line == 4 and found["actors.p3.args"].line == 9
    for actor, line in (("b1", 12), ("b2", 14)):  # each on its own class line
        bad = found[f"actors.{actor}.{DECORATOR}.max_backoff"]
        assert bad.reason == "must be >= 0 (got -1.0)" and bad.line == line
    config = load(
        tmp_path,
        PYTHONPATH + '[actors.d1]\nclass = "cfg_actors:Decorated"\n'
        '[actors.d2]\nclass = "cfg_actors:Decorated"\nmax_restarts = 2\n',
    )
    d1, d2 = config.actors["d1"], config.actors["d2"]
    assert d1.cls is d2.cls and (d1.max_restarts, d2.max_restarts) == (7, 2)
    assert d1.min_backoff == d2.min_backoff == 0.5  # from @remote, for both


def test_invalid_actor_names(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[actors."a/b"]\nclass = "pulsing_daemon.demo:Echo"\n'
        '[actors."-x"]\nclass = "pulsing_daemon.demo:Echo"\n'
        "[actors]\nbare = 1\n",
    )
    assert found['actors."a/b"'].reason.startswith("invalid actor name 'a/b'")
    assert found['actors."a/b"'].line == 1
    assert found["actors.-x"].line == 3  # a valid bare TOML key, so unquoted
    assert found["actors.bare"].reason == "expected a table, got integer (1)"


def test_many_problems_in_one_pass_sorted_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [daemon]
        listen = "0.0.0.0:7480"
        max_body = 10

        [actors.a]
        class = "nope.mod:X"
        timeout = -1

        [actors.b]
        class = "pulsing_daemon.demo:Echo"
        mailbox_size = true
        bogus = 1
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = caught.value.problems
    assert [(p.key, p.line) for p in found] == [
        ("daemon.listen", 3),
        ("daemon.max_body", 4),
        ("actors.a.class", 7),
        ("actors.a.timeout", 8),
        ("actors.b.mailbox_size", 12),
        ("actors.b.bogus", 13),
    ]
    assert str(caught.value).splitlines() == [str(p) for p in found]


def test_import_classes_false_skips_imports(tmp_path: Path) -> None:
    config = load(
        tmp_path, '[actors.w]\nclass = "nope.mod:X"\nargs = { a = 1 }\n', import_classes=False
    )
    assert config.actors["w"].cls is None
    assert config.actors["w"].args == {"a": 1}


# --------------------------------------------------------------------------- [daemon]


@pytest.mark.parametrize(
    "listen",
    ["7480", "localhost", "127.0.0.1:99999", "http://127.0.0.1:7480", "[zz]:80",
     "unix:", "999.1.1.1:80", "bad_host!:80", "127.0.0.1:"],
)  # fmt: skip
def test_malformed_listen(tmp_path: Path, listen: str) -> None:
    found = problems(tmp_path, f'[daemon]\nlisten = "{listen}"\n')
    assert found["daemon.listen"].line == 2


@pytest.mark.parametrize("listen", ["0.0.0.0:7480", "[::]:7480", "example.com:80", "10.0.0.1:1"])
def test_non_loopback_listen_requires_a_token(tmp_path: Path, listen: str) -> None:
    found = problems(tmp_path, f'[daemon]\nlisten = "{listen}"\n')
    host = listen.rsplit(":", 1)[0].strip("[]")
    assert found["daemon.listen"].reason == (
        f"listening on {host} requires a token (set token or token_file)"
    )
    config = load(tmp_path, f'[daemon]\nlisten = "{listen}"\ntoken = "s3cret"\n')
    assert config.daemon.resolved_token() == "s3cret"


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("localhost:1", "localhost", 1),
        ("[::1]:7480", "::1", 7480),
        ("127.1.2.3:80", "127.1.2.3", 80),
    ],
)
def test_loopback_listen_needs_no_token(tmp_path: Path, listen: str, host: str, port: int) -> None:
    daemon = load(tmp_path, f'[daemon]\nlisten = "{listen}"\n').daemon
    assert (daemon.host, daemon.port, daemon.is_unix, daemon.unix_path) == (host, port, False, None)


def test_unix_listen_is_accepted_and_resolved_against_the_config_dir(tmp_path: Path) -> None:
    daemon = load(tmp_path, '[daemon]\nlisten = "unix:run/pulsing.sock"\n').daemon
    assert daemon.is_unix
    assert daemon.unix_path == tmp_path / "run" / "pulsing.sock"
    assert daemon.listen == f"unix:{tmp_path / 'run' / 'pulsing.sock'}"
    assert (daemon.host, daemon.port) == (None, None)
    absolute = load(tmp_path, '[daemon]\nlisten = "unix:/tmp/p.sock"\n').daemon
    assert absolute.unix_path == Path("/tmp/p.sock")


def test_token_file_relative_to_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "etc", "  s3cret\n", name="secrets/token")
    monkeypatch.chdir(tmp_path)  # not the config's directory
    path = write(tmp_path / "etc", '[daemon]\nlisten = "0.0.0.0:1"\ntoken_file = "secrets/token"\n')
    daemon = load_config(path).daemon
    assert daemon.token_file == tmp_path / "etc" / "secrets" / "token"
    assert daemon.resolved_token() == "s3cret"


def test_token_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("  \n")
    (tmp_path / "token").write_text("s3cret\n")
    found = problems(tmp_path, '[daemon]\ntoken = "a"\ntoken_file = "token"\n')
    assert found["daemon.token_file"].reason == "set either token or token_file, not both"
    found = problems(tmp_path, '[daemon]\ntoken_file = "empty"\n')
    assert found["daemon.token_file"].reason == f"token file {tmp_path / 'empty'} is empty"
    found = problems(tmp_path, '[daemon]\ntoken_file = "missing"\n')
    assert found["daemon.token_file"].reason.startswith(f"cannot read {tmp_path / 'missing'}")
    assert found["daemon.token_file"].line == 2
    found = problems(tmp_path, '[daemon]\ntoken = "has space"\n')
    assert "printable ASCII" in found["daemon.token"].reason


def test_relative_state_dir_resolves_against_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config_dir = tmp_path / "conf"
    daemon = load_config(write(config_dir, '[daemon]\nstate_dir = "state"\n')).daemon
    assert daemon.state_dir == config_dir / "state"
    assert load_config(write(config_dir, "")).daemon.state_dir == config_dir / ".pulsing"
    # a relative config path still anchors at the file, made absolute
    assert load_config("conf/pulsing.toml").path == config_dir / "pulsing.toml"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("default_timeout = 0", "must be > 0 (got 0.0)"),
        ("grace_period = -1", "must be >= 0 (got -1.0)"),
        ("max_body = 100", "must be >= 1024 (got 100)"),
        ("max_body = true", "expected an integer, got boolean (true)"),
        ("pythonpath = 'src'", "expected an array of strings, got string ('src')"),
        ("pythonpath = ['does-not-exist']", "no such directory: "),
        ("stream_retention_chunks = 0", "must be >= 1 (got 0)"),
        ("state_dir = ''", "must not be empty"),
    ],
)
def test_bad_daemon_values(tmp_path: Path, line: str, reason: str) -> None:
    key = line.split(" = ")[0]
    found = problems(tmp_path, f"[daemon]\n{line}\n")
    assert found[f"daemon.{key}"].reason.startswith(reason)
    assert found[f"daemon.{key}"].line == 2


def test_unreadable_config_file_is_a_problem(tmp_path: Path) -> None:
    found = check_config(tmp_path / "missing.toml")
    assert len(found) == 1
    assert found[0].reason == "cannot read: No such file or directory"
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.toml")


# --------------------------------------------------------------------------- import_class


def test_import_class_forms_and_errors() -> None:
    from pulsing_daemon.demo import Worker

    assert import_class("pulsing_daemon.demo:Worker") is Worker
    assert import_class("pulsing_daemon.demo.Worker") is Worker
    with pytest.raises(ImportError):
        import_class("nope_nope_module:X")
    with pytest.raises(ImportError):
        import_class("Worker")
    with pytest.raises(AttributeError):
        import_class("pulsing_daemon.demo:Nope")
    with pytest.raises(TypeError, match="is not a class"):
        import_class("pulsing_daemon.demo:remote")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("cpu_affinity = []", "expected a non-empty array of CPU numbers, got array"),
        ("cpu_affinity = 0", "expected a non-empty array of CPU numbers, got integer (0)"),
        ("cpu_affinity = [0, true]", "item 1: expected a CPU number (an integer >= 0)"),
        ("cpu_affinity = [-1]", "item 0: expected a CPU number (an integer >= 0)"),
        ("cpu_affinity = [99999]", "CPU 99999 not available here (this process may use "),
    ],
)
def test_bad_cpu_affinity(tmp_path: Path, line: str, reason: str) -> None:
    found = problems(tmp_path, f"[daemon]\n{line}\n")
    assert found["daemon.cpu_affinity"].reason.startswith(reason)


def test_cpu_affinity_is_a_sorted_set(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    text = f"[daemon]\ncpu_affinity = {[*reversed(cpus), cpus[0]]}\n"
    config = parse_config(text, tmp_path / "pulsing.toml")
    assert config.daemon.cpu_affinity == tuple(cpus)
