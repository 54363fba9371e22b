"""The package's declared dependency floors are the versions the floor smoke test installs."""

import configparser
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _floors() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    floors = {}
    for line in config["options"]["install_requires"].split():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", line.strip())
        if match:
            floors[match.group(1).lower()] = match.group(2)
    return floors


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            package, version = line.split("==")
            pins[package.lower()] = version
    return pins


def test_every_floor_is_pinned_in_the_floor_constraints():
    floors, pins = _floors(), _pins("constraints-floor.txt")
    assert {"jax", "flax", "optax", "orbax-checkpoint", "chex"} <= set(floors)
    assert {name: pins.get(name) for name in floors} == floors


def test_the_tested_versions_satisfy_the_floors():
    """constraints.txt (what `make test` installs) is at or above every floor."""
    version = lambda v: tuple(int(x) for x in v.split("."))
    pins = _pins("constraints.txt")
    for name, floor in _floors().items():
        assert version(pins[name]) >= version(floor), (name, pins[name], floor)
