"""What the tests and the benchmarks share: running the workflow in a folder, the test
configurations of tests/configs, a dry-run's job counts, and the site values of the single-node
SLURM test cluster (tests/slurm/cluster.sh).

Tests import it as ``helpers`` (pytest puts tests/ on sys.path: tests/ is no package). The
benchmarks, scripts run from anywhere, put tests/ on sys.path first, as they do for the library
in workflow/scripts (pyproject.toml lets benchmarks/*.py import after that line, E402)."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "configs"


def config_path(name: str) -> Path:
    """tests/configs/{name}.yaml, a standalone overlay of config/config.yaml."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
        raise FileNotFoundError(f"no test configuration {path} (there are: {known})")
    return path


def load_config(name: str) -> dict:
    """The overlay tests/configs/{name}.yaml as a dict (to edit for one test)."""
    return yaml.safe_load(config_path(name).read_text())


def snakemake_command(workflow: Path, workdir: Path, *args: str) -> list[str]:
    """The command line that runs the workflow in ``workdir``: ``workflow`` is a folder with a
    Snakefile (the repository, a copy of it) or a Snakefile itself."""
    workflow = Path(workflow)
    snakefile = workflow / "Snakefile" if workflow.is_dir() else workflow
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir), *args]


def snakemake(workflow: Path, workdir: Path, *args: str, check: bool = True,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` (output captured); with ``check``, a failure is an
    AssertionError showing the command and its output."""
    command = snakemake_command(workflow, workdir, *args)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def config_file(workdir: Path, config: dict, name: str = "config.yaml") -> str:
    """Write ``config`` as a YAML file in ``workdir``, its keys in their order (that of the
    tests/configs file it was loaded from: Snakemake compares a job's params by their text, so
    the same settings in another key order would rerun it); its path, for --configfile."""
    path = Path(workdir) / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry-run: rule name -> number of jobs (and 'total')."""
    rows = (line.split() for line in output.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def rerun_counts(repo: Path, workdir: Path, config: dict, edit: dict) -> dict[str, int]:
    """Jobs a dry-run in ``workdir`` would run after editing ``config`` (the config it ran
    with) section by section with ``edit``."""
    edited = copy.deepcopy(config)
    for section, values in edit.items():
        edited.setdefault(section, {}).update(values)
    result = snakemake(repo, workdir, "-n", "--quiet", "rules", "--configfile",
                       config_file(workdir, edited, "edited.yaml"))
    return job_counts(result.stdout)


def finished_run(repo: Path, workdir: Path, *configfiles: Path) -> Path:
    """``workdir``, in which the workflow ran to the end on 2 cores with ``configfiles``."""
    snakemake(repo, workdir, "--cores", "2", "--configfile", *map(str, configfiles))
    return workdir


# ------------------------------------------------------------- the single-node SLURM test cluster

# The profile's signal before the time limit (the site's set-resources replace the profile's).
SIGNAL = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())[
    "set-resources"]["run_model"]["slurm_extra"]
# Site values of the test cluster, on top of profiles/slurm's placeholders: its node has
# os.cpu_count() CPUs (tests/slurm/cluster.sh), so a group may not ask for the profile's 8 cores;
# status via squeue (no accounting database) and short polling so the test does not idle.
SITE = ["--cores", str(os.cpu_count()), "--slurm-status-command", "squeue", "--slurm-no-account",
        "--default-resources", "slurm_partition=debug", "runtime=10", "mem_mb=1000",
        "--set-resources", "run_model:slurm_partition=debug", f"run_model:slurm_extra={SIGNAL}",
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
        "--verbose"]


def sbatch_calls(output: str) -> list[str]:
    """The sbatch command lines the plugin logged (without the wrapped command): a single job's
    as "sbatch call: ...", an array's as "call with array: ..."."""
    return [line.split("--wrap")[0] for line in output.splitlines()
            if line.startswith(("sbatch call:", "call with array:"))]


# ------------------------------------------------------------------- git for test repositories

# No user or system git settings (signing, hooks, default branch) and a fixed identity, so a
# test repository commits the same on every machine; GIT_* of the caller (a GIT_DIR) left out.
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "test",
           "GIT_AUTHOR_EMAIL": "test@example.org", "GIT_COMMITTER_NAME": "test",
           "GIT_COMMITTER_EMAIL": "test@example.org"}


def git(folder, *args: str) -> str:
    """git ``args`` in ``folder`` (checked); its stdout, stripped."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")} | GIT_ENV
    return subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=folder, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()
