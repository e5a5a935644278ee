# Intrinsic dataset properties and generalization (Konz & Mazurowski, ICLR 2024), as a workflow.
# Usage: README.md. Keep heavy imports (torch) out of this file: every cluster job re-parses it.

import os

from snakemake.utils import min_version

min_version("8.0")


# The embedded default, found beside this file also when run with --directory elsewhere.
# A --configfile given on the command line is merged on top of it (nested keys, lists replaced).
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


# A limit given with --resources gpu=N (profiles/slurm) caps each submitted job, not the whole
# workflow, and a job group (train + evaluate) asks for the GPUs of its largest step, not the sum.
resource_scopes:
    gpu="local",


# Table and figure jobs over the whole grid take seconds: run them where Snakemake runs.
localrules:
    all,
    dataset_properties_table,
    figure_dataset_properties,
    grid_tables,
    scaling_fits,
    sharpness_robustness,
    generalization_figures,
    noise_rank_study,
    variant_study,
    sensitivity_study,


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/properties.smk"
include: "workflow/rules/grid.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/appendix.smk"


rule all:
    input:
        "results/tables/dataset_properties.csv",
        "results/figures/fig1_dataset_properties.png",
        rules.grid_tables.output,
        rules.scaling_fits.output,
        rules.sharpness_robustness.output,
        rules.generalization_figures.output,
        study_outputs(),
        appendix_outputs(),
    default_target: True
