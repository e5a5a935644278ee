"""The environments agree: envs/intrinsic.yaml (the conda environment of the rules) and
pyproject.toml list the same packages with the same lower bounds, and envs/requirements.lock.txt
(the tested environment, exact versions; `make locked`) pins every dependency of pyproject.toml
within its bounds."""

import importlib.metadata as metadata
import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

# conda-forge name -> PyPI name, where they differ
CONDA_TO_PIP = {"pytorch": "torch"}
# In pyproject.toml only: they run where Snakemake runs (the user's environment, the submitting
# host), not inside a rule's conda environment.
PIP_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


@pytest.fixture(scope="module")
def project(repo) -> dict:
    return tomllib.loads((repo / "pyproject.toml").read_text())["project"]


def conda_packages(path) -> dict[str, SpecifierSet]:
    """envs/intrinsic.yaml's dependencies as PyPI name -> version specifiers."""
    packages = {}
    for entry in yaml.safe_load(path.read_text())["dependencies"]:
        assert isinstance(entry, str), f"{path}: {entry!r} (a pip: section) is not supported here"
        name, spec = CONDA_SPEC.match(entry).groups()
        name = canonicalize_name(CONDA_TO_PIP.get(name, name))
        assert name not in packages, f"{path}: {name} listed twice"
        packages[name] = SpecifierSet(spec.replace(" ", ""))
    return packages


def lower_bound(specifiers: SpecifierSet, where: str) -> Version:
    bounds = [Version(s.version) for s in specifiers if s.operator == ">="]
    assert len(bounds) == 1, f"{where}: {specifiers or 'no version'}: want exactly one lower bound (>=)"
    return bounds[0]


def test_conda_environment_and_pyproject_list_the_same_packages_and_lower_bounds(repo, project):
    conda = conda_packages(repo / "envs" / "intrinsic.yaml")
    pip = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        pip[canonicalize_name(requirement.name)] = requirement.specifier
    python = conda.pop("python")
    assert lower_bound(python, "envs/intrinsic.yaml: python") == lower_bound(
        SpecifierSet(project["requires-python"]), "pyproject.toml: requires-python")
    assert PIP_ONLY <= set(pip), f"pyproject.toml lacks the documented exceptions {PIP_ONLY - set(pip)}"
    assert sorted(set(pip) - PIP_ONLY) == sorted(conda), "pyproject.toml vs envs/intrinsic.yaml"
    for name, specifiers in conda.items():
        assert lower_bound(specifiers, f"envs/intrinsic.yaml: {name}") == lower_bound(
            pip[name], f"pyproject.toml: {name}"), name


def test_conda_spelling_is_read_as_conda_writes_it(tmp_path):
    """The parser above on a file with each spelling it meets, checked by hand."""
    path = tmp_path / "env.yaml"
    path.write_text("dependencies:\n  - python >=3.10,<3.13\n  - pytorch >=2.2\n  - numpy>=1.24\n")
    packages = conda_packages(path)
    assert packages == {"python": SpecifierSet(">=3.10,<3.13"), "torch": SpecifierSet(">=2.2"),
                        "numpy": SpecifierSet(">=1.24")}
    assert lower_bound(packages["python"], "python") == Version("3.10")
    with pytest.raises(AssertionError, match="want exactly one lower bound"):
        lower_bound(SpecifierSet("<3"), "x")


def locked(repo) -> dict[str, Version]:
    """envs/requirements.lock.txt as canonical name -> pinned version; every line must be an
    exact pin (name==version), each package once."""
    pins = {}
    path = repo / "envs" / "requirements.lock.txt"
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier or [None]
        assert specifier is not None and specifier.operator == "==" and "*" not in specifier.version, \
            f"{path}:{number}: {line!r} is not an exact pin (name==version)"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{path}:{number}: {name} pinned twice"
        pins[name] = Version(specifier.version)
    return pins


def test_lock_pins_every_dependency_of_pyproject_within_its_bounds(repo, project):
    pins = locked(repo)
    groups = {"dependencies": project["dependencies"], **{
        f"optional-dependencies.{group}": lines for group, lines in project["optional-dependencies"].items()}}
    for group, lines in groups.items():
        for line in lines:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"pyproject.toml {group}: {requirement} is not in envs/requirements.lock.txt"
            assert requirement.specifier.contains(pins[name], prereleases=True), \
                f"envs/requirements.lock.txt pins {name}=={pins[name]} outside pyproject.toml's {requirement}"


def test_lock_holds_what_the_locked_packages_need(repo):
    """Closure: for each locked package installed here at its locked version, every dependency
    its metadata asks for (on this platform) is locked too, at a version it accepts. (Packages
    installed at another version here carry other metadata and are not read.)"""
    pins = locked(repo)
    for name, version in pins.items():
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if Version(distribution.version) != version:
            continue
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            needed = canonicalize_name(requirement.name)
            assert needed in pins, f"{name}=={version} needs {requirement}, which the lock lacks"
            assert requirement.specifier.contains(pins[needed], prereleases=True), \
                f"{name}=={version} needs {requirement}; the lock has {pins[needed]}"
