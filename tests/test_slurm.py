"""The workflow on a real single-node SLURM cluster (tests/slurm/cluster.sh) with
profiles/slurm: submissions, grouping, the GPU request, and a training job signalled as before
its time limit, which checkpoints, exits and is retried from its checkpoint. Skipped only where
the cluster cannot start (not root, or slurm-wlm/munge not installed); .ci/run installs them."""

import re
import subprocess
import time

import pandas as pd
import pytest
import yaml

from helpers import SITE, config_file, load_config, sbatch_calls, snakemake_command

# tests/configs/slurm.yaml: digits x 2 N x 1 seed of resnet18, one GPU asked per run.
SMALL = load_config("slurm")


@pytest.fixture(scope="module")
def cluster(repo, tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    script = repo / "tests" / "slurm" / "cluster.sh"
    started = subprocess.run(["bash", str(script), "start", str(state)], capture_output=True, text=True)
    if started.returncode == 3:  # the script's code for "cannot run here"
        pytest.skip(f"no SLURM cluster: {started.stderr.strip()}")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield state
    finally:
        subprocess.run(["bash", str(script), "stop", str(state)], check=True)


def slurm_command(repo, workdir, config):
    """The workflow through profiles/slurm with the test cluster's site values."""
    return snakemake_command(repo, workdir, "--profile", str(repo / "profiles" / "slurm"), "--configfile",
                             config_file(workdir, config), *SITE)


def test_small_grid_runs_as_grouped_slurm_jobs(repo, cluster, tmp_path):
    result = subprocess.run(slurm_command(repo, tmp_path, SMALL), capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]

    runs = pd.read_csv(tmp_path / "results/tables/runs.csv")
    assert sorted(runs["n_train"]) == [20, 40] and (runs["model"] == "resnet18").all()
    assert (tmp_path / "results/figures/fig2_generalization_loss.png").exists()

    # One submission per dataset cache, one for the splits, one for the properties, one per run;
    # the tables and figures ran locally.
    calls = sbatch_calls(output)
    groups = [re.search(r"--comment (\S+)", call).group(1) for call in calls]
    assert sorted(groups) == sorted(["rule_prepare_dataset_wildcards_digits", "rule_splits_make_split",
                                     "rule_properties_dataset_properties_label_sharpness"]
                                    + ["rule_runs_run_model"] * 2), groups
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(set(job_ids)) == len(calls) == 5
    for job_id in job_ids:  # every job's SLURM log under .snakemake/slurm_logs
        assert "/.snakemake/slurm_logs/" in output and f"{job_id}.log" in output
    # A run (train + evaluate) asks for ONE GPU, its train and evaluate time limits added up
    # (10 + 5 min), and SIGTERM 10 minutes before that limit.
    for call in calls:
        if "rule_runs_" in call:
            assert " --gpus=1 " in call + " " and "--gpus=2" not in call, call
            assert " -t 15 " in call and " --mem 1000 " in call and "--signal=TERM@600" in call, call
        else:
            assert "--gpus" not in call, call


def running_train_job():
    """The SLURM id of the running run group, or None."""
    listing = subprocess.run(["squeue", "--noheader", "--states=R", "--format=%i %k"],
                             capture_output=True, text=True).stdout
    for line in listing.splitlines():
        job_id, comment = line.split(maxsplit=1)
        if "run_model" in comment:
            return job_id
    return None


def test_a_signalled_training_job_checkpoints_exits_and_its_retry_resumes(repo, cluster, tmp_path):
    # What SLURM does before a job's time limit (profiles/slurm: --signal=TERM@600), here at
    # once: SIGTERM to the job's steps. A learning rate too small to fit the training set keeps
    # it training for all max_epochs (about a second each); no checkpoint is due by the interval.
    config = yaml.safe_load(yaml.safe_dump(SMALL))
    config["splits"]["n_train"] = [200]
    config["training"].update(max_epochs=12, fit_threshold=1.0, checkpoint_minutes=60)
    config["training"]["model_settings"]["resnet18"] = {"learning_rate": 1e-9, "batch_size": 10}
    process = subprocess.Popen(slurm_command(repo, tmp_path, config), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    run = "digits/resnet18/noise0.0/standard/n200_seed0"
    log = tmp_path / f"results/logs/run_model/{run}.log"
    signalled = None
    deadline = time.monotonic() + 600
    while signalled is None and time.monotonic() < deadline and process.poll() is None:
        if log.exists() and "epoch 1/12" in log.read_text():  # training under way
            signalled = running_train_job()
            if signalled:
                subprocess.run(["scancel", "--signal=TERM", signalled], check=True)
        time.sleep(0.2)
    output, _ = process.communicate(timeout=900)
    assert signalled, "no running training job appeared:\n" + output[-5000:]
    assert process.returncode == 0, output[-5000:]

    # The signalled job wrote its checkpoint and exited; its retry (attempt 2) resumed there.
    run_calls = [call for call in sbatch_calls(output) if "rule_runs_" in call]
    assert len(run_calls) == 2, run_calls
    assert re.search(r"--attempt 2 ", output)
    first_job_log = (tmp_path / ".snakemake/slurm_logs").rglob(f"{signalled}.log")
    stopped = re.search(r"stopped on SIGTERM after epoch (\d+); checkpoint \S+ written",
                        next(first_job_log).read_text())
    assert stopped, output[-5000:]
    record = yaml.safe_load((tmp_path / f"results/runs/{run}/training.json").read_text())
    assert record["resumed_from"] == int(stopped.group(1)) >= 1 and record["epochs"] == 12 and not record["fitted"]
    assert "resumed from" in log.read_text()
