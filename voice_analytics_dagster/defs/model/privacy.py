"""Small-cell suppression for aggregated tables written from Python (the model's calibration
bins). The same rule as the dbt macro ``small_cell_suppression`` (dbt/macros/suppression.sql):
primary suppression of cells built from fewer than k units, then complementary suppression of
the smallest unsuppressed sibling whenever exactly one cell of a sibling set is suppressed,
repeated over the families until nothing changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def suppress_small_cells(
    sizes: Mapping[str, int],
    families: Sequence[Mapping[str, str | None]] = (),
    k: int = 10,
    max_passes: int = 20,
) -> dict[str, str | None]:
    """For every cell key: None (published), 'primary' or 'complementary'.

    ``families``: for each family, the sibling-set id of every cell (None: not in a set of that
    family). The cells of a set partition a published total."""
    status: dict[str, str | None] = {key: ("primary" if size < k else None) for key, size in sizes.items()}
    for _ in range(max_passes):
        changed = False
        for family in families:
            sets: dict[str, list[str]] = {}
            for key, set_id in family.items():
                if set_id is not None and key in sizes:
                    sets.setdefault(set_id, []).append(key)
            for members in sets.values():
                suppressed = [m for m in members if status[m] is not None]
                open_ = [m for m in members if status[m] is None]
                if len(suppressed) == 1 and open_:
                    smallest = min(open_, key=lambda m: (sizes[m], m))
                    status[smallest] = "complementary"
                    changed = True
        if not changed:
            break
    return status
