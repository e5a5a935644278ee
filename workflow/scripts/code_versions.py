"""Rule code_versions: the versions of the library (intrinsic.provenance) that the rows of the
record tables come from, with the number of rows of each and whether it is the current one."""

from pathlib import Path

import pandas as pd

from intrinsic.logs import logged
from intrinsic.provenance import CODE_FIELDS, code_version, code_versions_table, warn_mixed_code
from intrinsic.tables import write_csv

# Text, as written: a commit or version must not be read back as a number.
TEXT = {field: str for field in CODE_FIELDS if field != "code_dirty"}

with logged(snakemake.log[0], "code_versions") as log:
    tables = {Path(path).name: pd.read_csv(path, dtype=TEXT) for path in snakemake.input}
    for name, table in tables.items():
        warn_mixed_code(table, name, log)
    current = code_version()
    summary = code_versions_table(tables, current)
    write_csv(summary, snakemake.output[0])
    stale = summary[~summary["current"]]
    if len(stale):
        log.warning("%d row(s) of %s are not of the current library (%s): rerun them (README.md, 'Rerunning after a "
                    "library change')", int(stale["rows"].sum()), ", ".join(dict.fromkeys(stale["table"])),
                    current["library_hash"])
    log.info("current library: %s\n%s", current, summary.to_string())
