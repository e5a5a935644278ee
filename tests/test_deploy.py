"""Deployment, offline: `snakedeploy deploy-workflow` and the workflow as a Snakemake module from a
git tag (README.md, Deploy). The repository is a temporary git copy of this working tree (HEAD and
uncommitted changes), tagged v-test; every Snakemake run of a module has PYTHONPATH holding only a
decoy `intrinsic` that raises ImportError, so a job or parse-time import that does not use the
module's own library (workflow/rules/files.smk) fails."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import git, job_counts, snakemake

TAG = "v-test"
OWNER_REPO = "testowner/intrinsic-workflow"
SNAKEDEPLOY = Path(sys.executable).parent / "snakedeploy"


@pytest.fixture(scope="module")
def tagged_repo(repo, tmp_path_factory) -> Path:
    """A git repository of the working tree's tracked and untracked, not ignored files, at tag v-test."""
    clone = tmp_path_factory.mktemp("clone") / "intrinsic-workflow"
    listing = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo, check=True,
                             capture_output=True).stdout.decode()
    for name in listing.split("\0"):
        if name and (repo / name).is_file():  # a tracked file deleted in the working tree is left out
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, clone / name)
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "deploy test")
    git(clone, "tag", TAG)
    return clone


@pytest.fixture(scope="module")
def module_env(tmp_path_factory) -> dict:
    """The environment of every module run: a private Snakemake source cache (XDG_CACHE_HOME) and a
    decoy `intrinsic` on PYTHONPATH, where an installed copy would be found before the workflow's."""
    root = tmp_path_factory.mktemp("env")
    (root / "decoy" / "intrinsic").mkdir(parents=True)
    (root / "decoy" / "intrinsic" / "__init__.py").write_text(
        'raise ImportError("the decoy intrinsic was imported, not the workflow\'s own library")\n')
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(PYTHONPATH=str(root / "decoy"), XDG_CACHE_HOME=str(root / "cache"))
    # The decoy is what a plain import finds (else the job below could not fail).
    plain = subprocess.run([sys.executable, "-c", "import intrinsic"], env=env, capture_output=True, text=True)
    assert plain.returncode != 0 and "the decoy intrinsic was imported" in plain.stderr, plain.stderr
    return env


def deploy(source: str, dest: Path) -> str:
    """snakedeploy's CLI, as a user runs it; the module Snakefile it writes."""
    result = subprocess.run([str(SNAKEDEPLOY), "deploy-workflow", source, str(dest), "--tag", TAG],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return (dest / "workflow" / "Snakefile").read_text()


@pytest.fixture(scope="module")
def checkout_jobs(repo, tmp_path_factory) -> dict:
    """The jobs a dry-run of this checkout plans (rule -> count), for the modules to match."""
    return job_counts(snakemake(repo, tmp_path_factory.mktemp("checkout"), "-n", "--quiet", "rules").stdout)


def test_snakedeploy_github_module_runs_offline_on_its_own_library(repo, tagged_repo, module_env, checkout_jobs,
                                                                   tmp_path):
    """snakedeploy writes a github(...) declaration for a URL naming github.com/<owner>/<repo>; a
    file:// URL of a bare clone there deploys offline. Snakemake reads github(...) through its own
    bare clone in the source cache (snakemake-git-cache/github.com/<owner>/<repo>), which it makes
    from GitHub on first use; seeded here, the module runs offline: a dry-run plans the checkout's
    jobs, and a real job (decoding an embedded dataset from data/*.npz, which only a module's
    exported files hold) imports the module's library, not the decoy."""
    remote = tmp_path / "remote" / "github.com" / OWNER_REPO
    git(tmp_path, "clone", "-q", "--bare", str(tagged_repo), str(remote))
    dest = tmp_path / "deployed"
    declaration = deploy(remote.as_uri(), dest)
    assert f'github("{OWNER_REPO}", path="workflow/Snakefile", tag="{TAG}")' in declaration, declaration
    assert (dest / "config" / "config.yaml").read_text() == (repo / "config" / "config.yaml").read_text()
    assert (dest / "profiles" / "default" / "config.yaml").is_file()

    snakemake_cache = Path(module_env["XDG_CACHE_HOME"]) / "snakemake" / "snakemake" / "source-cache"
    git(tmp_path, "clone", "-q", "--bare", str(tagged_repo),
        str(snakemake_cache / "snakemake-git-cache" / "github.com" / OWNER_REPO))
    snakefile = dest / "workflow" / "Snakefile"
    planned = job_counts(snakemake(snakefile, dest, "-n", "--quiet", "rules", env=module_env).stdout)
    assert planned == checkout_jobs

    snakemake(snakefile, dest, "--cores", "1", "results/cache/breast_28", env=module_env)
    meta = json.loads((dest / "results" / "cache" / "breast_28" / "meta.json").read_text())
    # data/breastmnist.npz (data/README.md): 546 + 78 + 156 images (train, val, test), 210 malignant
    assert meta["class_counts"] == {"malignant": 210, "normal_or_benign": 570}
    # The library and data came from the module's commit, exported into the source cache.
    commit = subprocess.run(["git", "rev-parse", f"{TAG}^{{commit}}"], cwd=tagged_repo, check=True,
                            capture_output=True, text=True).stdout.strip()
    export = snakemake_cache / "intrinsic-workflow" / commit
    assert (export / "workflow" / "scripts" / "intrinsic" / "__init__.py").read_bytes() == \
        (tagged_repo / "workflow" / "scripts" / "intrinsic" / "__init__.py").read_bytes()
    assert (export / "data" / "breastmnist.npz").read_bytes() == (repo / "data" / "breastmnist.npz").read_bytes()


def test_snakedeploy_from_a_local_path_needs_a_gitfile_declaration(tagged_repo, module_env, checkout_jobs, tmp_path):
    """snakedeploy's Local provider (a plain path) copies config/ and profiles/ but declares the
    module as snakefile: "workflow/Snakefile", relative to the deployed Snakefile's own folder (so
    dest/workflow/workflow/Snakefile, which does not exist), and ignores --tag. The smallest fix is
    to declare the module from the repository's tag with gitfile(...), the local stand-in for
    github(..., tag=...); then it dry-runs the checkout's jobs.

    Snakemake 9.27 fails such a dry-run in its code rerun trigger (Job._path_to_source_file calls
    LocalGitFile.join with a LocalSourceFile, which only HostingProviderFile.join accepts), so a
    gitfile(...) module runs with --rerun-triggers without "code"; github(...) is not affected."""
    dest = tmp_path / "deployed"
    declaration = deploy(str(tagged_repo), dest)
    assert 'snakefile: \n        "workflow/Snakefile"' in declaration, declaration
    assert (dest / "config" / "config.yaml").is_file() and (dest / "profiles").is_dir()
    snakefile = dest / "workflow" / "Snakefile"
    failed = snakemake(snakefile, dest, "-n", env=module_env, check=False)
    assert failed.returncode != 0 and str(dest / "workflow" / "workflow" / "Snakefile") in failed.stdout + failed.stderr

    snakefile.write_text(declaration.replace(
        '"workflow/Snakefile"', f'gitfile("{tagged_repo}", path="workflow/Snakefile", tag="{TAG}")'))
    result = snakemake(snakefile, dest, "-n", "--quiet", "rules", env=module_env, check=False)
    if result.returncode != 0:  # only Snakemake's own bug, not any error of the workflow
        output = result.stdout + result.stderr
        assert "TypeError: sequence item 1: expected str instance, LocalSourceFile found" in output, output
        result = snakemake(snakefile, dest, "-n", "--quiet", "rules", "--rerun-triggers", "mtime", "params",
                           "input", "software-env", env=module_env)
    assert job_counts(result.stdout) == checkout_jobs
