"""The grid's axes: the one place that names them, types them and writes them in paths.

Every training run is one combination of these axes (workflow/rules/common.smk takes each axis's
values from the config); every record and table row carries them as columns of these types. Stdlib
only: the Snakefile imports it at parse time, on every cluster job.
"""

from __future__ import annotations

# Axis -> column type, in the order of a run's path (common.smk's RUN_PATH).
AXIS_TYPES: dict[str, type] = {
    "dataset": str,
    "model": str,
    "noise": float,
    "variant": str,
    "n_train": int,
    "seed": int,
}
# The axes the images of a split depend on (d_data is measured once per combination of them).
DATA_AXES = ("dataset", "noise", "n_train", "seed")
# The study axes' reference values: the clean, standard-trained grid that the paper's analyses use
# and that the studies compare with.
REFERENCE = {"noise": 0.0, "variant": "standard"}


def parse(axis: str, value):
    """``value`` (a path segment, a CSV cell, a config entry) as the axis's type."""
    return AXIS_TYPES[axis](value)


def text(axis: str, value) -> str:
    """How a value is written in a path: repr of a float round-trips exactly (0.1 -> "0.1")."""
    return repr(float(value)) if AXIS_TYPES[axis] is float else str(value)

