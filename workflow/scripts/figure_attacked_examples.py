"""Rule figure_attacked_examples: App. D.1's clean and FGSM-attacked test images with the
model's predictions, one row per dataset of the chosen domains."""

from intrinsic.examples import figure_attacked_examples, load_examples
from intrinsic.logs import logged

with logged(snakemake.log[0], "figure_attacked_examples") as log:
    inputs = snakemake.input
    rows = [load_examples(record, cache, split)
            for record, cache, split in zip(inputs.records, inputs.caches, inputs.splits, strict=True)]
    summary = figure_attacked_examples(rows, snakemake.output.figure, snakemake.output.figure_pdf)
    log.info("%d examples of %d datasets, %d flipped by the attack:\n%s", len(summary), len(rows),
             int(summary["flipped"].sum()), summary.to_string())
