# Where the workflow's own files are, as a local folder (WORKFLOW_DIR): the library the rule scripts
# import (workflow/scripts/intrinsic, subpackages included), the embedded default's data (data/) and
# its config (config/). Run from a checkout, that is the checkout. Run as a Snakemake module from git
# (github(...), gitlab(...), gitfile(...); snakedeploy writes github(...)), Snakemake reads only the
# files it is asked for, one at a time and as text (a binary file such as data/*.npz fails), and a
# rule script's imports see only that script; so these folders are exported from the module's commit,
# byte for byte, once per commit, into Snakemake's source cache.
#
# The library is then put first on PYTHONPATH (inherited by every job; a cluster job re-parses this
# file) and on sys.path (for the parse-time imports in common.smk): the workflow's own copy wins over
# any installed one. INTRINSIC_WORKFLOW_DIR tells the rule scripts where relative data paths start.
import os
import shutil
import sys
import tempfile
from pathlib import Path

from snakemake import __version__ as SNAKEMAKE_VERSION
from snakemake.exceptions import WorkflowError
from snakemake.sourcecache import HostingProviderFile, LocalGitFile, LocalSourceFile

WORKFLOW_EXPORTS = ("config", "data", "workflow/scripts/intrinsic")


def module_commit(basedir):
    """The git commit (GitPython) that the module's rules in ``basedir`` come from."""
    import git

    if isinstance(basedir, LocalGitFile):
        return git.Repo(basedir.repo_path).commit(basedir.ref)
    if isinstance(basedir, HostingProviderFile):
        # Snakemake's own clone of the hosted repository, the one it read this file from (its API
        # for that arrived in Snakemake 9; tests/test_deploy.py runs it).
        if not hasattr(basedir, "fetch_if_required"):
            raise WorkflowError(
                "using this workflow as a github(...)/gitlab(...) module needs Snakemake >= 9.27 "
                f"(this is {SNAKEMAKE_VERSION}); or run it from a checkout"
            )
        basedir.cache_path = workflow.sourcecache.cache_path
        basedir.fetch_if_required()
        return basedir.hosted_repo.repo.commit(basedir.ref)
    raise WorkflowError(
        f"the workflow's rules come from {basedir}: as a module, declare it with github(...), gitlab(...) or "
        "gitfile(...) (README.md, Deploy), since its rule scripts need the whole library, not single files"
    )


def export_workflow_files(commit, cache_dir):
    """The folder under ``cache_dir`` holding WORKFLOW_EXPORTS of ``commit``, written once per commit
    (staged, then renamed into place: jobs parsing at the same time never see half a copy)."""
    target = Path(cache_dir) / "intrinsic-workflow" / commit.hexsha
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{commit.hexsha}.", dir=target.parent))
    try:
        for top in WORKFLOW_EXPORTS:
            try:
                tree = commit.tree / top
            except KeyError:
                raise WorkflowError(f"the workflow's commit {commit.hexsha} has no {top}/") from None
            for item in tree.traverse():
                if item.type == "blob":
                    path = staging / item.path
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(item.data_stream.read())
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # else another process won the race with the same files
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def workflow_dir():
    """The local folder with the workflow's own files (see the head of this file)."""
    basedir = workflow.current_basedir  # workflow/rules, wherever this file was read from
    if isinstance(basedir, LocalSourceFile):
        return str(Path(basedir.get_path_or_uri(secret_free=True)).parents[1])
    return str(export_workflow_files(module_commit(basedir), workflow.sourcecache.cache_path))


def put_first_on_path(folder, paths):
    """``paths`` (a list of folders) with ``folder`` first and only once."""
    return [folder] + [path for path in paths if os.path.abspath(path) != os.path.abspath(folder)]


WORKFLOW_DIR = workflow_dir()
LIBRARY_DIR = os.path.join(WORKFLOW_DIR, "workflow", "scripts")
# Set here, not required with envvars: PYTHONPATH may be unset, and each job re-parsing this file sets both.
_python_path = os.environ.get("PYTHONPATH")
os.environ.update(
    PYTHONPATH=os.pathsep.join(put_first_on_path(LIBRARY_DIR, _python_path.split(os.pathsep) if _python_path else [])),
    INTRINSIC_WORKFLOW_DIR=WORKFLOW_DIR,
)
sys.path[:] = put_first_on_path(LIBRARY_DIR, sys.path)
_imported = getattr(sys.modules.get("intrinsic"), "__file__", None)
if _imported is not None and Path(_imported).resolve().parent != Path(LIBRARY_DIR, "intrinsic").resolve():
    raise WorkflowError(
        f"this process has already imported the library from {Path(_imported).parent}, "
        f"not the workflow's own copy in {LIBRARY_DIR}: run Snakemake in a fresh process"
    )
