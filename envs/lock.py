"""Write envs/requirements.lock.txt: the exact versions of the tested environment (`make lock`).

    .venv/bin/python envs/lock.py [--output envs/requirements.lock.txt]

The lock holds pyproject.toml's dependencies, those of all its optional groups (test, ...) and
everything they pull in, transitively, with the versions installed in the running interpreter's
environment (what `pip freeze` prints, less the packages nothing of the project needs, such as
pip itself or a tool installed by hand). `make locked` installs from it; tests/test_environment.py
checks it against pyproject.toml.
"""

import argparse
import importlib.metadata as metadata
import platform
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "envs" / "requirements.lock.txt"


def project_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[Requirement]:
    """pyproject.toml's dependencies and those of every optional group."""
    project = tomllib.loads(pyproject.read_text())["project"]
    groups = [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
    return [Requirement(line) for group in groups for line in group]


def applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether ``requirement`` holds here, for a package installed with ``extras``."""
    if requirement.marker is None:
        return True
    environment = default_environment()
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras | {""})


def closure(roots: list[Requirement]) -> dict[str, metadata.Distribution]:
    """The installed distributions that ``roots`` need, by canonical name, transitively (with
    the extras asked for on the way, e.g. torch's cuda-toolkit[cublas, ...])."""
    found: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    todo = [(requirement, set()) for requirement in roots]
    while todo:
        requirement, parent_extras = todo.pop()
        if not applies(requirement, parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in found and extras <= extras_seen[name]:
            continue
        try:
            distribution = found.get(name) or metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{requirement} (needed by the project) is not installed in {sys.prefix}") from None
        found[name] = distribution
        extras_seen[name] = extras_seen.get(name, set()) | extras
        todo += [(Requirement(line), extras_seen[name]) for line in distribution.requires or []]
    return found


def lock_text(distributions: dict[str, metadata.Distribution]) -> str:
    lines = [f"{distribution.metadata['Name']}=={distribution.version}"
             for _, distribution in sorted(distributions.items())]
    head = [
        "# The tested environment, exact versions: written by envs/lock.py (`make lock`) from the",
        "# project's dependency closure (pyproject.toml with its optional groups); installed by",
        "# `make locked` (pip install -r this file, then the project without dependencies).",
        f"# Made on {platform.system()} {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}: the torch wheel of PyPI for Linux is a CUDA build and pulls in",
        "# nvidia-* and triton; on another platform install with `make` (pyproject's lower bounds).",
    ]
    return "\n".join(head + lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=LOCK)
    options = parser.parse_args()
    project = canonicalize_name(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"])
    distributions = closure(project_requirements())
    distributions.pop(project, None)  # the project itself is installed from the checkout
    options.output.write_text(lock_text(distributions))
    print(f"{options.output}: {len(distributions)} packages")


if __name__ == "__main__":
    main()
