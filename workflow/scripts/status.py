"""Rule status: per dataset and model, the grid's runs done, running, failed and not started, their
hours and the time left; printed and written as a small HTML page (intrinsic.status)."""

from pathlib import Path

from intrinsic.logs import logged
from intrinsic.status import RunFiles, grid_status, status_html, status_text

with logged(snakemake.log[0], "status") as log:
    params = snakemake.params
    status = grid_status(params.runs, RunFiles(**params.files), params.live_window_s, params.gpus)
    Path(snakemake.output.html).write_text(status_html(status))
    print(status_text(status, html_path=snakemake.output.html), end="", flush=True)
    log.info("%s", {state: status.totals[state] for state in ("runs", "done", "running", "failed", "not_started")})
