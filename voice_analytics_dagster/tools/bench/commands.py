"""The commands measured beside the run: psql \\copy of the same files (the limit for loading) and
pandas read_csv + to_sql (the common loader)."""

from __future__ import annotations

from pathlib import Path

from voice_analytics_dagster.lib.contract import TABLES

# -- the measured commands ---------------------------------------------------------------------

PANDAS_LOADER = r"""
# bench_pandas: the common loader, as a tutorial writes it
import sys, time, pandas as pd, sqlalchemy as sa
url, schema, *files = sys.argv[1:]
engine = sa.create_engine(url)
with engine.begin() as c:
    c.exec_driver_sql(f"drop schema if exists {schema} cascade")
    c.exec_driver_sql(f"create schema {schema}")
for path in files:
    name = path.rsplit("/", 1)[-1][:-4]
    df = pd.read_csv(path)
    df.to_sql(name, engine, schema=schema, if_exists="replace", index=False)
print("driver", engine.dialect.driver)
"""


def copy_script(export: Path, schema: str) -> str:
    """The psql script of the physical limit: plain typed tables (the contract's column types,
    no constraints, no metadata) and one ``\\copy`` per file, columns named as in its header."""
    from voice_analytics_dagster.defs.ingestion.reader import read_header

    lines = [f"drop schema if exists {schema} cascade;", f"create schema {schema};"]
    for t in TABLES:
        cols = ", ".join(f"{c.name} {c.pg_type}" for c in t.columns)
        lines.append(f"create table {schema}.{t.name} ({cols});")
    for t in TABLES:
        path = export / f"{t.name}.csv"
        header = ", ".join(read_header(path).columns)
        lines.append(f"\\copy {schema}.{t.name} ({header}) from '{path}' with (format csv, header true)")
    return "\n".join(lines) + "\n"


COPY_FALLBACK = r"""
# bench_copy fallback (no psql binary): psycopg 3 COPY FROM STDIN streamed from the file
import sys, psycopg
url, script = sys.argv[1:]
with psycopg.connect(url, autocommit=True) as conn:
    for line in open(script):
        line = line.strip()
        if line.startswith("\\copy "):
            m = line[len("\\copy "):]
            target, rest = m.split(" from '", 1)
            path = rest.split("'", 1)[0]
            with conn.cursor().copy(f"copy {target} from stdin with (format csv, header true)") as cp, open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    cp.write(chunk)
        elif line:
            conn.execute(line)
"""


