"""Which code produced a result: every record and table row carries ``CODE_FIELDS``.

Snakemake reruns a rule when its (thin) script changes, not when the library under it
(``intrinsic/*.py``) does, so a library change would leave old results looking current. The
fields, flat so that tables copy them into columns:

    code_version   intrinsic.__version__
    code_commit    the git commit of the checkout the library was imported from; "unknown" when
                   it is not one (a deployed module, an installed wheel) or git is missing
    code_dirty     whether tracked files of that checkout differ from the commit, or the library
                   folder holds files git does not track (and does not ignore); None: unknown
    library_hash   "sha256:" and 16 hex digits of the library's own source: every *.py under the
                   package folder, subpackages included, by path and content

The tables tell versions apart by ``library_hash``: it covers exactly the code Snakemake does
not track (a commit that changes nothing under the library changes no result). A row aggregated
over records of several versions holds each field's values joined by ";", the i-th value of
every field belonging to the same version; :func:`code_versions` splits them again.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, grid

if TYPE_CHECKING:  # pandas is imported where tables are handled: code_version() stays light
    import pandas as pd

CODE_FIELDS = ("code_version", "code_commit", "code_dirty", "library_hash")
UNKNOWN = "unknown"
# The code fields of a record written before records carried them: old code, by definition.
UNRECORDED = "unrecorded"
# What a record of old code holds in place of each field (code_dirty: unknown).
UNRECORDED_FIELDS = {field: None if field == "code_dirty" else UNRECORDED for field in CODE_FIELDS}
SEPARATOR = ";"
GIT_TIMEOUT_S = 10.0
PACKAGE_DIR = Path(__file__).resolve().parent
# The columns a derived table's row shares with the rows it was computed from (stamp_code).
GROUP_KEYS = ("group", "domain", *grid.AXIS_TYPES, "classes", "attack", "eps_255", "pass", "resolution", "channels")
RERUN_HINT = ("Snakemake does not rerun results when only the library (workflow/scripts/intrinsic/) changed; "
              "README.md, 'Rerunning after a library change', says how to rerun the rows of other code")


def library_hash(package_dir: str | os.PathLike = PACKAGE_DIR) -> str:
    """"sha256:" and the first 16 hex digits of the sha256 over every ``*.py`` under ``package_dir``, recursively, in
    order of relative path: each file's path and content (CRLF read as LF, so that a Windows
    checkout hashes alike). Compiled files and ``__pycache__`` are left out: they follow the
    source, and the interpreter writes them at will."""
    root = Path(package_dir)
    files = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if "__pycache__" not in relative.parts and path.is_file():
            files.append((relative.as_posix(), path))
    digest = hashlib.sha256()
    for name, path in sorted(files):
        content = path.read_bytes().replace(b"\r\n", b"\n")
        encoded = name.encode()
        # Lengths first: no path and content can run into the next file's.
        digest.update(len(encoded).to_bytes(8, "big") + encoded + len(content).to_bytes(8, "big") + content)
    # Named by its algorithm, and never read back from a CSV as a number (all-digit hex would be).
    return "sha256:" + digest.hexdigest()[:16]


def _git(directory: Path, *args: str) -> str | None:
    """git's stdout in ``directory``, or None when git fails, is missing or takes too long.

    Only reads: no git setting is changed, GIT_OPTIONAL_LOCKS=0 keeps ``status`` from rewriting
    the index, and the caller's GIT_* variables (GIT_DIR of another repository) are left out."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        done = subprocess.run(["git", *args], cwd=directory, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def checkout_state(package_dir: str | os.PathLike = PACKAGE_DIR) -> tuple[str, bool | None]:
    """(commit, dirty) of the git checkout holding ``package_dir``; ("unknown", None) when the
    package is not a tracked part of one (an installed copy inside some other repository's
    ignored folder, e.g. a virtual environment, is not)."""
    directory = Path(package_dir)
    if _git(directory, "ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return UNKNOWN, None
    head = _git(directory, "rev-parse", "--verify", "HEAD")
    if not head or not head.strip():
        return UNKNOWN, None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    # A new library file not yet added to git changes the code as much as an edited one.
    untracked = _git(directory, "status", "--porcelain", "--untracked-files=all", "--", ".")
    if status is None or untracked is None:
        return head.strip(), None
    return head.strip(), bool(status.strip() or untracked.strip())


def describe_code(package_dir: str | os.PathLike = PACKAGE_DIR, version: str = __version__) -> dict:
    """The ``CODE_FIELDS`` of the library at ``package_dir`` (uncached; see :func:`code_version`)."""
    commit, dirty = checkout_state(package_dir)
    return {"code_version": str(version), "code_commit": commit, "code_dirty": dirty,
            "library_hash": library_hash(package_dir)}


@functools.cache
def _this_code() -> tuple:
    return tuple(describe_code().items())


def code_version() -> dict:
    """The ``CODE_FIELDS`` of the library this process imported, computed once per process (a
    library edited while a process runs is not the code the process runs)."""
    return dict(_this_code())


# --- the code versions of tables ---------------------------------------------------------------


def _rows(records) -> pd.DataFrame:
    import pandas as pd

    if isinstance(records, pd.DataFrame):
        return records
    return pd.DataFrame(list(records))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(field: str, value) -> str:
    """A code field as text: a missing commit or hash is "unknown"; code_dirty True, False or
    "unknown" (CSV reads the booleans back as such, or as the text "True")."""
    if _missing(value) or (isinstance(value, str) and not value):
        return UNKNOWN
    if isinstance(value, (bool,)) or type(value).__name__ == "bool_":
        return str(bool(value))
    return str(value)


def with_code_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every code field as a column: rows of records written before records carried
    them (no library_hash; a table of old and new records has them blank) get "unrecorded"
    (code_dirty: None), so that they show as a version of their own."""
    missing = [field for field in CODE_FIELDS if field not in table.columns]
    unrecorded = [] if missing else [i for i, value in table["library_hash"].items() if _missing(value) or value == ""]
    if not missing and not unrecorded:
        return table
    table = table.copy()
    for field in missing:
        table[field] = UNRECORDED_FIELDS[field]
    for field in CODE_FIELDS:
        if unrecorded and field != "code_dirty":
            table[field] = table[field].astype(object)
            table.loc[unrecorded, field] = UNRECORDED
    return table


def recorded_code(record: Mapping) -> dict:
    """The code fields of one record; those it lacks (written before records carried them) as in
    :func:`with_code_columns`."""
    return {field: record.get(field, UNRECORDED_FIELDS[field]) for field in CODE_FIELDS}


def _versions_of_row(row: Mapping) -> list[tuple[str, ...]]:
    """The versions of one row: one, or several of an aggregated row (fields joined by ";")."""
    texts = [_text(field, row.get(field, UNRECORDED_FIELDS[field])) for field in CODE_FIELDS]
    parts = [text.split(SEPARATOR) for text in texts]
    count = max(len(p) for p in parts)
    if count > 1 and all(len(p) in (1, count) for p in parts):
        return [tuple(p[i] if len(p) == count else p[0] for p in parts) for i in range(count)]
    return [tuple(texts)]


def code_versions(records) -> pd.DataFrame:
    """The distinct code versions of ``records`` (a DataFrame or a list of dicts), as text, with
    the number of ``rows`` of each, most rows first: columns ``CODE_FIELDS`` + rows. Rows without
    code fields count as "unrecorded"; an aggregated row counts toward each of its versions."""
    import pandas as pd

    counts: dict[tuple[str, ...], int] = {}
    for row in _rows(with_code_columns(_rows(records))).to_dict("records"):
        for version in _versions_of_row(row):
            counts[version] = counts.get(version, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return pd.DataFrame([dict(zip(CODE_FIELDS, version, strict=True), rows=n) for version, n in ordered],
                        columns=[*CODE_FIELDS, "rows"])


def _describe(version: Mapping) -> str:
    commit = version["code_commit"]
    commit = commit[:12] if commit not in (UNKNOWN, UNRECORDED) else commit
    dirty = {"True": ", with uncommitted changes", "False": ""}.get(version["code_dirty"], "")
    return f"library_hash {version['library_hash']} (version {version['code_version']}, commit {commit}{dirty})"


def _example_rows(table: pd.DataFrame, library: str, limit: int = 3) -> str:
    """A few rows of ``table`` from library hash ``library``, named by their key columns."""
    keys = [key for key in GROUP_KEYS if key in table.columns]
    hashes = table["library_hash"].map(lambda value: _text("library_hash", value).split(SEPARATOR))
    chosen = table[hashes.map(lambda found: library in found)]
    if not keys or chosen.empty:
        return ""
    named = chosen[keys].astype(str).drop_duplicates()  # e.g. a run's epoch rows share their keys
    names = [" ".join(f"{key}={row[key]}" for key in keys) for row in named.head(limit).to_dict("records")]
    more = f" and {len(named) - limit} more" if len(named) > limit else ""
    return f", e.g. {'; '.join(names)}{more}"


def check_code(records, name: str) -> tuple[pd.DataFrame, str | None]:
    """(:func:`code_versions` of ``records``, a warning or None): the warning, when the rows come
    from more than one library (library_hash), names ``name`` (the table), each version with its
    number of rows, and rows of every version but the most common one."""
    table = with_code_columns(_rows(records))
    versions = code_versions(table)
    libraries = list(dict.fromkeys(versions["library_hash"]))
    if len(libraries) < 2:
        return versions, None
    rows = {library: int(versions.loc[versions["library_hash"] == library, "rows"].sum()) for library in libraries}
    parts = []
    for i, library in enumerate(libraries):
        described = "; ".join(_describe(v) for v in versions[versions["library_hash"] == library].to_dict("records"))
        parts.append(f"{described}: {rows[library]} row(s){_example_rows(table, library) if i else ''}")
    message = (f"{name}: its {len(table)} row(s) come from {len(libraries)} versions of the library code: "
               + " | ".join(parts) + f". {RERUN_HINT}.")
    return versions, message


def warn_mixed_code(records, name: str, log: logging.Logger | None = None) -> pd.DataFrame:
    """:func:`check_code`, with its warning logged (WARNING on ``log``, or this module's logger);
    returns the versions."""
    versions, message = check_code(records, name)
    if message:
        (log or logging.getLogger(__name__)).warning("%s", message)
    return versions


# --- rows computed from other rows ---------------------------------------------------------------


def _matches(column: pd.Series, value) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return pd.Series(False, index=column.index)
        return pd.Series(pd.to_numeric(column, errors="coerce").sub(number).abs() <= 1e-9 * max(1.0, abs(number)),
                         index=column.index)
    return column.astype(str) == str(value)


def _joined(versions: Iterable[tuple[str, ...]]) -> dict:
    """The code fields of a set of versions: the values of the one version, or each field's
    values joined by ";" in the versions' sorted order."""
    versions = sorted(set(versions))
    if len(versions) == 1:
        fields = dict(zip(CODE_FIELDS, versions[0], strict=True))
        fields["code_dirty"] = {"True": True, "False": False}.get(fields["code_dirty"])
        return fields
    return {field: SEPARATOR.join(version[i] for version in versions) for i, field in enumerate(CODE_FIELDS)}


def _with_fields(table: pd.DataFrame, stamped: list[dict]) -> pd.DataFrame:
    """``table`` with the code fields of each row set to ``stamped`` (one dict per row)."""
    import pandas as pd

    for field in CODE_FIELDS:
        values = [fields[field] for fields in stamped]
        if field == "code_dirty" and any(isinstance(value, str) for value in values):
            # a mix of versions joins code_dirty as text ("False;True"): then the whole column is
            # text, not bools and strings in one column, which Parquet cannot store
            values = [_text(field, value) for value in values]
        table[field] = values if stamped else pd.Series(dtype=object)
    return table


def join_code(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """``table``, whose rows were joined with rows of another table that brought their code fields
    as ``prefix`` + field: each row's code fields then cover the versions of both (a run of new
    code joined with properties of old code is a mix), and the prefixed columns are dropped."""
    theirs = [prefix + field for field in CODE_FIELDS]
    missing = [column for column in theirs if column not in table.columns]
    if missing:
        raise ValueError(f"join_code: the joined rows lack the code columns {missing}")
    own = with_code_columns(table.drop(columns=theirs))
    joined_rows = table[theirs].rename(columns=dict(zip(theirs, CODE_FIELDS, strict=True)))
    stamped = [_joined(set(_versions_of_row(a)) | set(_versions_of_row(b)))
               for a, b in zip(own[list(CODE_FIELDS)].to_dict("records"), joined_rows.to_dict("records"),
                               strict=True)]
    return _with_fields(own, stamped)


def stamp_code(table: pd.DataFrame, sources: pd.DataFrame | Sequence[pd.DataFrame],
               keys: Sequence[str] | None = None) -> pd.DataFrame:
    """``table`` (rows computed from the rows of ``sources``, e.g. fits from runs.csv) with the
    code fields of the source rows each of its rows came from, as the last columns.

    A row's sources are the rows that agree with it on every key column both have (``keys``,
    default ``GROUP_KEYS``); a key value no source row has (a pooled value such as model "all")
    does not narrow them. ``sources``: one table or several (each matched on its own columns)."""
    import pandas as pd

    sources = [sources] if isinstance(sources, pd.DataFrame) else list(sources)
    sources = [with_code_columns(source) for source in sources]
    keys = list(GROUP_KEYS if keys is None else keys)
    # Per source table, per row (by position): its versions.
    versions_of = [[_versions_of_row(row) for row in source[list(CODE_FIELDS)].to_dict("records")]
                   for source in sources]
    out = table.drop(columns=[c for c in CODE_FIELDS if c in table.columns]).copy()
    cache: dict[tuple, dict] = {}
    stamped = []
    for row in out.to_dict("records"):
        signature = []
        for source in sources:
            mask = pd.Series(True, index=source.index)
            for key in keys:
                if key in source.columns and key in row and not _missing(row[key]):
                    hit = _matches(source[key], row[key])
                    if hit.any():
                        mask &= hit
            signature.append(tuple(mask.to_numpy().nonzero()[0]))
        signature = tuple(signature)
        if signature not in cache:
            found: set[tuple[str, ...]] = set()
            for positions, versions in zip(signature, versions_of, strict=True):
                for position in positions:
                    found.update(versions[position])
            cache[signature] = _joined(found) if found else _joined([(UNKNOWN,) * len(CODE_FIELDS)])
        stamped.append(cache[signature])
    return _with_fields(out, stamped)


def code_versions_table(tables: Mapping[str, pd.DataFrame], current: Mapping | None = None) -> pd.DataFrame:
    """One row per (table, code version) of ``tables`` ({name: table}) with its number of rows and
    whether it is the ``current`` library (default: this process's, :func:`code_version`); a table
    of more than one row holds results of several versions of the library."""
    import pandas as pd

    current = code_version() if current is None else current
    frames = []
    for name, table in tables.items():
        versions = code_versions(table)
        versions.insert(0, "table", name)
        frames.append(versions)
    columns = ["table", *CODE_FIELDS, "rows", "current"]
    if not frames:
        return pd.DataFrame(columns=columns)
    summary = pd.concat(frames, ignore_index=True)
    summary["current"] = summary["library_hash"] == str(current["library_hash"])
    return summary[columns]
