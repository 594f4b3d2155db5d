"""What the warehouse's data came from: the source folder, its format, whether it is synthetic
(and the generator's seed), and every input file's checksum and rows.

Recorded on each load batch (raw.load_batches) when ingestion loads it, on the run (Dagster run
tags), and on each publication (analytics.publication_log), so that a number on a dashboard can
be traced to the files it was computed from, and a demo run can never pass for a real one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from voice_analytics_dagster.lib.contract import SYNTHETIC_MARKER

REAL = "real"
SYNTHETIC = "synthetic"
CSV_FORMAT = "csv"

# Run tags (shown on every run in the Dagster UI and searchable there)
SOURCE_TAG = "voice_analytics/source"
FORMAT_TAG = "voice_analytics/format"
DATASET_TAG = "voice_analytics/dataset"
SEED_TAG = "voice_analytics/generator_seed"

# Columns of raw.load_batches that say where a batch came from (added to older warehouses)
BATCH_PROVENANCE_DDL = """
alter table raw.load_batches add column if not exists source_folder text;
alter table raw.load_batches add column if not exists source_format text;
alter table raw.load_batches add column if not exists dataset text;
alter table raw.load_batches add column if not exists generator_seed bigint;
"""


class MixedDatasetsError(ValueError):
    """A synthetic export and a real one would feed the same warehouse."""


@dataclass(frozen=True)
class Dataset:
    """Whether a delivery folder is synthetic (it holds the generator's marker) or real."""

    kind: str
    seed: int | None = None

    @property
    def label(self) -> str:
        return f"{SYNTHETIC} (generator seed {self.seed})" if self.kind == SYNTHETIC else REAL


def dataset_of(folder: Path) -> Dataset:
    """The dataset kind of one delivery folder, read from the generator's marker file."""
    marker = Path(folder) / SYNTHETIC_MARKER
    if not marker.exists():
        return Dataset(REAL)
    try:
        seed = json.loads(marker.read_text()).get("seed")
    except (ValueError, OSError):
        seed = None
    return Dataset(SYNTHETIC, int(seed) if isinstance(seed, int) else None)


def dataset_of_source(folders: Sequence[Path]) -> Dataset:
    """The one dataset kind of a source's delivery folders; a source that mixes them is refused."""
    kinds = {f: dataset_of(f) for f in folders}
    found = {d.kind for d in kinds.values()}
    if len(found) > 1:
        synthetic = sorted(str(f) for f, d in kinds.items() if d.kind == SYNTHETIC)
        raise MixedDatasetsError(
            f"the source mixes synthetic deliveries ({', '.join(synthetic[:3])}"
            f"{' ...' if len(synthetic) > 3 else ''}, marked by {SYNTHETIC_MARKER}) with real ones: "
            "keep synthetic exports out of a landing folder of real deliveries")
    seeds = {d.seed for d in kinds.values()}
    kind = found.pop() if found else REAL
    return Dataset(kind, seeds.pop() if kind == SYNTHETIC and len(seeds) == 1 else None)


def mixing_problem(incoming: Dataset, source: Path, held: Mapping[str, tuple[int, str]]) -> str | None:
    """Why loading ``incoming`` into a warehouse whose active batches are ``held`` (dataset kind
    -> (batches, one source folder)) would mix a synthetic export with real data; None if not.
    Batches loaded before the dataset was recorded count as real. Pure."""
    other = REAL if incoming.kind == SYNTHETIC else SYNTHETIC
    if other not in held:
        return None
    batches, folder = held[other]
    return (
        f"this warehouse holds {other} data ({batches} active file(s), e.g. from {folder}) and {source} is "
        f"{incoming.label}: synthetic and real exports are never mixed in one warehouse. Choose: run the "
        "synthetic export in the demo's own home (`voice-analytics --demo run --source DIR`, as "
        "`voice-analytics demo` does), or point this run at another warehouse (VOICE_ANALYTICS_HOME for "
        "a new embedded one, or VOICE_ANALYTICS_DATABASE for another database on this server)")


HELD_DATASETS_SQL = """
select coalesce(dataset, 'real'), count(*), min(coalesce(source_folder, file_path))
from raw.load_batches where active and status = 'loaded' group by 1
"""


def held_datasets(conn) -> dict[str, tuple[int, str]]:
    if not conn.execute("select to_regclass('raw.load_batches') is not null").fetchone()[0]:
        return {}
    return {kind: (n, folder) for kind, n, folder in conn.execute(HELD_DATASETS_SQL).fetchall()}


@dataclass(frozen=True)
class Origin:
    """What a load batch comes from, written with its batch row in the load's own transaction:
    a batch that is committed always says whether it is synthetic, even if the run dies next."""

    source: Path
    format: str
    dataset: Dataset

    def values(self) -> tuple[str, str, str, int | None]:
        """(source_folder, source_format, dataset, generator_seed) of raw.load_batches."""
        return str(self.source), self.format, self.dataset.kind, self.dataset.seed


def stamp_unrecorded(conn, batch_ids: Iterable[int], origin: Origin) -> None:
    """Stamp batches that this run reuses but that carry no provenance (loaded before it was
    recorded, by an older version); a stamped batch keeps what its own load recorded."""
    ids = list(batch_ids)
    if ids:
        conn.execute(
            "update raw.load_batches set source_folder = %s, source_format = %s, dataset = %s, generator_seed = %s "
            "where batch_id = any(%s) and dataset is null", (*origin.values(), ids))


def run_tags(source: Path, fmt: str, dataset: Dataset) -> dict[str, str]:
    tags = {SOURCE_TAG: str(source), FORMAT_TAG: fmt, DATASET_TAG: dataset.kind}
    if dataset.seed is not None:
        tags[SEED_TAG] = str(dataset.seed)
    return tags


INPUTS_SQL = """
select table_name, coalesce(delivery, ''), file_path, file_checksum, file_bytes, rows_read, rows_loaded,
       rows_quarantined, coalesce(source_folder, ''), coalesce(source_format, 'csv'), coalesce(dataset, 'real'),
       generator_seed
from raw.load_batches where active and status = 'loaded'
order by source_folder, delivery nulls first, table_name, batch_id
"""


@dataclass(frozen=True)
class Inputs:
    """The files a publication was computed from: the active batches when it was published."""

    files: list[dict]

    @property
    def sources(self) -> list[str]:
        return sorted({f["source"] for f in self.files if f["source"]})

    @property
    def formats(self) -> list[str]:
        return sorted({f["format"] for f in self.files})

    @property
    def dataset(self) -> str:
        kinds = sorted({f["dataset"] for f in self.files})
        return kinds[0] if len(kinds) == 1 else "+".join(kinds) if kinds else REAL

    @property
    def seeds(self) -> list[int]:
        return sorted({f["generator_seed"] for f in self.files if f["generator_seed"] is not None})

    def summary(self) -> str:
        seed = f", generator seed {', '.join(map(str, self.seeds))}" if self.seeds else ""
        return (f"{self.dataset} data{seed} from {', '.join(self.sources) or 'unknown'} "
                f"({', '.join(self.formats)}, {len(self.files)} file(s))")


def inputs(conn) -> Inputs:
    if not conn.execute("select to_regclass('raw.load_batches') is not null").fetchone()[0]:
        return Inputs([])
    keys = ("table", "delivery", "path", "sha256", "bytes", "rows_read", "rows_loaded", "rows_quarantined",
            "source", "format", "dataset", "generator_seed")
    return Inputs([dict(zip(keys, row, strict=True)) for row in conn.execute(INPUTS_SQL).fetchall()])
