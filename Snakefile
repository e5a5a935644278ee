# Intrinsic dataset properties and generalization (Konz & Mazurowski, ICLR 2024), as a workflow.
# Usage: README.md. `snakemake` in this folder runs it; the workflow itself is workflow/Snakefile,
# where snakedeploy and Snakemake modules look for it (README.md, Deploy).

# As if workflow/Snakefile were the main Snakefile: an include: keeps the includer's default target
# (none here), so its `rule all` would not be the default.
workflow.include("workflow/Snakefile", overwrite_default_target=True)
