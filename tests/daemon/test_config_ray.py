"""config: isolation = "ray", [daemon.ray] and the per-actor ray table."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pulsing_daemon.config import check_config, load_config


def write(directory: Path, text: str) -> Path:
    path = directory / "pulsing.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_ray_keys_are_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            [daemon.ray]
            address = "127.0.0.1:6379"
            namespace = "team-a"

            [actors.e]
            class = "pulsing_daemon.demo:Echo"
            isolation = "ray"
            kill_on_timeout = true
            ray.num_cpus = 0.5
            ray.num_gpus = 0
            ray.memory = 1024
            ray.resources = { box = 1 }
            ray.runtime_env = { env_vars = { A = "1" } }
            """,
        ),
        import_classes=False,
    )
    assert config.daemon.hosts["ray"] == {"address": "127.0.0.1:6379", "namespace": "team-a"}
    actor = config.actors["e"]
    assert actor.isolation == "ray"
    assert actor.host_keys["ray"] == {
        "num_cpus": 0.5, "num_gpus": 0.0, "memory": 1024, "resources": {"box": 1.0},
        "runtime_env": {"env_vars": {"A": "1"}},
    }  # fmt: skip


@pytest.mark.parametrize("address", ["local", "auto", "10.0.0.5:6379", "ray://head:10001"])
def test_ray_addresses_accepted(tmp_path: Path, address: str) -> None:
    path = write(tmp_path, f'[daemon.ray]\naddress = "{address}"\n')
    assert check_config(path) == []


def test_every_ray_problem_named_by_its_key_path(tmp_path: Path) -> None:
    found = check_config(
        write(
            tmp_path,
            """
            [daemon.ray]
            address = "unix:/tmp/x"
            nmespace = "x"

            [actors.a]
            class = "pulsing_daemon.demo:Echo"
            isolation = "ray"
            ray = { num_cpus = -1, resources = { box = "one", CPU = 2 }, gpus = 1 }

            [actors.b]
            class = "pulsing_daemon.demo:Echo"
            ray = { num_cpus = 1 }
            """,
        )
    )
    by_key = {p.key: p.reason for p in found}
    assert "expected 'local', 'auto'" in by_key["daemon.ray.address"]
    assert "did you mean 'namespace'" in by_key["daemon.ray.nmespace"]
    assert by_key["actors.a.ray.num_cpus"] == "must be >= 0 (got -1.0)"
    assert "expected a number" in by_key["actors.a.ray.resources.box"]
    assert "num_cpus" in by_key["actors.a.ray.resources.CPU"]
    assert "did you mean 'num_gpus'" in by_key["actors.a.ray.gpus"]
    assert by_key["actors.b.ray"] == 'only applies with isolation = "ray"'
    assert all(p.line is not None for p in found)


def test_ray_missing_is_a_config_error_saying_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pulsing_daemon.hosts.ray import RayHost
    from pulsing_daemon.hosts.ray_runtime import RAY_INSTALL_HINT

    missing = f"needs Ray, which is not installed: {RAY_INSTALL_HINT}"
    monkeypatch.setattr(RayHost, "unavailable", classmethod(lambda cls: missing))
    found = check_config(
        write(tmp_path, '[actors.a]\nclass = "pulsing_daemon.demo:Echo"\nisolation = "ray"\n')
    )
    assert [p.key for p in found] == ["actors.a.isolation"]
    assert "pip install 'pulsing-supervisor[ray]'" in found[0].reason


def test_loading_a_ray_config_does_not_import_ray(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, '[actors.a]\nclass = "pulsing_daemon.demo:Echo"\nisolation = "ray"\n')
    code = (
        "import sys; from pulsing_daemon.config import load_config; "
        f"load_config({str(path)!r}); assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_daemon_does_not_import_ray_until_an_actor_uses_it() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import pulsing_daemon.server, pulsing_daemon.supervisor, pulsing_cli.app; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
