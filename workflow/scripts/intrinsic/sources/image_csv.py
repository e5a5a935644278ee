"""Source type ``image_csv``: image files listed in a CSV (path, label[, group]) (CheXpert, OAI exports)."""

from __future__ import annotations

import string
from pathlib import Path

from ..cache import DatasetError, RawDataset
from .common import (
    DEFAULT_GROUP_SALT,
    FileNames,
    ReadContext,
    TaskLabels,
    check_bool,
    check_choice,
    check_common,
    compile_regex,
    label_key,
    match_path,
    read_csv_columns,
    require_path,
    salted_hash,
)
from .image_files import decode_and_finish


def read_image_csv(
    name: str,
    context: ReadContext,
    csv: str | None = None,  # the option's name in the config (the csv module is not used here)
    root: str | None = None,
    path_column: str = "path",
    label_column: str = "label",
    group_column: str | None = None,
    group_regex: str | None = None,
    where: dict | None = None,
    duplicates: str = "raise",
    path_template: str | None = None,
    image_max_scaling: bool = False,
    classes=None,
    drop_other: bool = False,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """Images listed in a CSV: ``path_column`` (relative to ``root``, default the CSV's folder;
    ``path_template``, e.g. ``"ISIC_2019_Training_Input/{}.jpg"``, turns a cell into that path),
    ``label_column``; group from ``group_column``, else ``group_regex`` on the path, else the
    image's path below root (also its ``max_per_class`` key). ``where`` keeps only rows whose
    columns hold one of the listed values (e.g. frontal views).

    Every listed path must resolve (``..`` and symlinks followed) to a file under root. An image
    listed twice (the same resolved path) with different labels or groups is an error; identical
    repeats are an error too, or with ``duplicates: drop`` only the first listing is kept.
    """
    check_common(name, on_error, drop_other, min_per_class, max_per_class)
    check_bool(name, "image_max_scaling", image_max_scaling)
    duplicates = check_choice(name, "duplicates", duplicates, ["raise", "drop"])
    _check_path_template(name, path_template)
    csv_path = require_path(name, csv, "csv")
    root_path = require_path(name, root) if root is not None else csv_path.parent
    group_re = compile_regex(name, "group_regex", group_regex)
    if where is not None and not isinstance(where, dict):
        raise DatasetError(f"dataset {name!r}: option 'where' must map column names to lists of values, got {where!r}")
    table = read_csv_columns(name, csv_path, {"path_column": path_column, "label_column": label_column,
                                              "group_column": group_column}, where)
    relative, lines = table["path_column"], table["line"]
    if path_template is not None:
        relative = [path_template.format(cell) for cell in relative]
    if not relative:
        raise DatasetError(f"dataset {name!r}: CSV {str(csv_path)!r} lists no images")
    shown_csv = f"CSV {str(csv_path)!r}"
    # An absolute cell replaces root in the join; resolve() follows ".." and symlinks.
    resolved_root = root_path.resolve()
    names = FileNames("file", relative, [str(root_path / r) for r in relative], group_salt, lines=lines)
    resolved = []
    for index, r in enumerate(relative):
        try:
            resolved.append((root_path / r).resolve())
        except (OSError, RuntimeError) as error:  # a symlink loop; the message names the path
            raise DatasetError(f"dataset {name!r}: {shown_csv}: {names(index)} cannot be resolved "
                               f"({type(error).__name__}: {error})") from None
    names.paths = [str(p) for p in resolved]
    for index, path in enumerate(resolved):
        if not path.is_relative_to(resolved_root):
            raise DatasetError(
                f"dataset {name!r}: {shown_csv}: {names(index)} in column {path_column!r} (option 'path_column') "
                f"resolves outside root {str(root_path)!r} (option 'root'); every listed image must lie under root"
            )
    values = [label_key(v) for v in table["label_column"]]
    if group_column is not None:
        raw_groups = table["group_column"]
    elif group_re is not None:
        raw_groups = [match_path(name, "group_regex", group_re, names, i) for i in range(len(relative))]
    else:  # the image's own path, however the CSV spells it
        raw_groups = [p.relative_to(resolved_root).as_posix() for p in resolved]
    keys = [p.relative_to(resolved_root).as_posix() for p in resolved]
    keep = _drop_duplicate_rows(name, shown_csv, names, resolved, values, raw_groups, label_column, duplicates)
    n_dropped = len(relative) - len(keep)
    if n_dropped:
        context.info("%s: dropped %d duplicate row(s) of %s (duplicates: drop)", name, n_dropped, shown_csv)
        names = FileNames("file", [relative[i] for i in keep], [names.paths[i] for i in keep], group_salt,
                          lines=[lines[i] for i in keep])
        values, raw_groups = [values[i] for i in keep], [raw_groups[i] for i in keep]
        keys = [keys[i] for i in keep]
    groups = [salted_hash(group_salt, g) for g in raw_groups]
    task = TaskLabels.from_option(name, classes, values)
    return decode_and_finish(name, shown_csv, names, values, groups, task, drop_other, min_per_class, on_error,
                             group_salt, context, keys=keys, max_per_class=max_per_class,
                             max_scaling=image_max_scaling, extra_provenance={"duplicate_rows_dropped": n_dropped})


def _check_path_template(name: str, template) -> None:
    """image_csv's ``path_template``: a str.format template with positional fields only."""
    if template is None:
        return
    problem = None
    if not isinstance(template, str):
        problem = "must be a string"
    else:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
            template.format("cell")
        except (ValueError, IndexError, KeyError, AttributeError) as error:
            problem = f"is not a valid str.format template ({type(error).__name__}: {error})"
        else:
            if not fields:
                problem = "has no {} field for the cell"
    if problem:
        raise DatasetError(f"dataset {name!r}: option 'path_template' {problem}, got {template!r}; "
                           "e.g. \"images/{}.jpg\"")


def _drop_duplicate_rows(name: str, shown_csv: str, names: FileNames, resolved: list[Path], values: list[str],
                         groups: list[str], label_column: str, duplicates: str) -> list[int]:
    """Indices of the rows to keep: the first listing of each image (same resolved path).

    Repeats with another label or group are always an error (which one would be right?); the
    group values are not shown, as they may be patient ids. Identical repeats: an error with
    ``duplicates: raise``, dropped with ``drop``.
    """
    first_of: dict[Path, int] = {}
    repeats: dict[int, list[int]] = {}  # first listing -> the later ones
    for index, path in enumerate(resolved):
        first = first_of.setdefault(path, index)
        if first != index:
            repeats.setdefault(first, []).append(index)
    for first, later in repeats.items():
        rows = [first, *later]
        if len({values[i] for i in rows}) > 1:
            shown = ", ".join(f"line {names.lines[i]}: {values[i]!r}" for i in rows)
            raise DatasetError(f"dataset {name!r}: {shown_csv} lists {names(first, with_line=False)} with "
                               f"conflicting labels: {shown} (column {label_column!r}); keep one row per image")
        if len({groups[i] for i in rows}) > 1:
            shown = ", ".join(str(names.lines[i]) for i in rows)
            raise DatasetError(f"dataset {name!r}: {shown_csv} lists {names(first, with_line=False)} with different "
                               f"groups on lines {shown} (values not shown); keep one row per image")
    if repeats and duplicates == "raise":
        first, later = next(iter(repeats.items()))
        shown = ", ".join(str(names.lines[i]) for i in [first, *later])
        more = f" ({len(repeats) - 1} more image(s) listed more than once)" if len(repeats) > 1 else ""
        raise DatasetError(f"dataset {name!r}: {shown_csv} lists {names(first, with_line=False)} more than once: "
                           f"lines {shown}{more}; remove the repeated rows, or set duplicates: drop to keep the "
                           "first listing of each image (option 'duplicates')")
    dropped = {i for later in repeats.values() for i in later}
    return [i for i in range(len(resolved)) if i not in dropped]
