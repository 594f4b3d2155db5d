"""The export contract: one declaration of the five source files, their columns, types and rules.

Used by the generator (what to write), the loader (how to parse, validate and cast), the raw
DDL (typed tables) and the dbt sources (``dbt/models/staging/voice_export/_voice_export__sources.yml``;
a test checks that the two agree). Change a rule here and every consumer follows.

Normalisation applied before validation: surrounding whitespace is trimmed; an empty field is
missing (NULL); enum and yes/no values are compared case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

ColumnType = Literal["text", "integer", "decimal", "yesno", "date", "enum"]

# Longest text value accepted in any field. Real ids and categories in the sample are <= 20
# characters; 200 leaves room for intents and codes while a runaway field (a broken quote that
# swallowed half a file) is quarantined instead of loaded.
MAX_TEXT_LENGTH = 200
# Dates before this, or after tomorrow, are implausible for this service and quarantined: it also
# catches a two-digit year read the wrong way round ("02/01/25" parses as 2002-01-25).
EARLIEST_DATE = "2000-01-01"


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    accepted: tuple[str, ...] = ()
    # how a text/enum value is normalised before it is stored: lower- or upper-cased
    case: Literal["lower", "upper", None] = None
    # a column the export may omit entirely (then it loads as NULL); not schema drift
    optional_in_file: bool = False
    pii: bool = False

    @property
    def pg_type(self) -> str:
        return {
            "text": "text",
            "enum": "text",
            "integer": "bigint",
            "decimal": "double precision",
            "yesno": "boolean",
            "date": "date",
        }[self.type]

    def expectation(self) -> str:
        """What a valid value looks like, in words, for error and quarantine messages."""
        if self.type == "integer":
            what = "an integer"
        elif self.type == "decimal":
            what = "a number"
        elif self.type == "yesno":
            what = "yes or no"
        elif self.type == "date":
            what = f"a date YYYY-MM-DD from {EARLIEST_DATE} to tomorrow"
        elif self.type == "enum":
            what = "one of " + ", ".join(self.accepted)
        else:
            what = f"text of at most {MAX_TEXT_LENGTH} characters"
        if self.minimum is not None and self.maximum is not None:
            what += f" between {self.minimum:g} and {self.maximum:g}"
        elif self.minimum is not None:
            what += f" >= {self.minimum:g}"
        if not self.required:
            what += " or empty"
        return what


@dataclass(frozen=True)
class Table:
    name: str
    file: str
    grain: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    # the column that dates a row (for daily deliveries and partitions)
    date_column: str | None = None
    foreign_keys: tuple[tuple[str, str, str], ...] = field(default=())  # (column, table, column)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_file_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if not c.optional_in_file)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def with_nullable(self, columns: Iterable[str]) -> Table:
        """This table with ``columns`` accepting an empty value (NULL): what a platform adapter's
        files leave empty because the platform never records it (their manifest says which).
        Every rule built from the table (the loader's SQL, its quarantine reasons) follows."""
        wanted = set(columns)
        unknown = wanted - set(self.column_names)
        if unknown:
            raise KeyError(f"{self.name} has no column(s) {', '.join(sorted(unknown))}")
        if not wanted:
            return self
        return replace(self, columns=tuple(replace(c, required=False) if c.name in wanted else c
                                           for c in self.columns))


YESNO = ("yes", "no")
# Accepted spellings of yes/no (case-insensitive); anything else is quarantined.
YES_VALUES = ("yes", "y", "true", "1")
NO_VALUES = ("no", "n", "false", "0")

USERS = Table(
    name="users",
    file="users.csv",
    grain="one row per user",
    key=("user_id",),
    columns=(
        Column("user_id", "text", "Source user identifier. PII: anonymised in staging.", pii=True),
        Column("region", "enum", "Where the user lives.", accepted=("rural", "urban"), case="lower"),
        Column("disability_flag", "yesno", "The user declared a disability (sensitive personal data)."),
        Column("first_time_digital_user", "yesno", "The user had not used a digital service before."),
    ),
)

VOICE_SESSIONS = Table(
    name="voice_sessions",
    file="voice_sessions.csv",
    grain="one row per voice session",
    key=("session_id",),
    date_column="created_at",
    foreign_keys=(("user_id", "users", "user_id"),),
    columns=(
        Column("session_id", "text", "Session identifier."),
        Column("user_id", "text", "The calling user. PII: anonymised in staging.", pii=True),
        Column("channel", "text", "Channel of the session (the sample only has voice).", case="lower"),
        Column("language", "text", "Language of the session, upper case.", case="upper"),
        Column("total_duration_sec", "integer", "Duration reported by the platform, seconds.", minimum=0),
        Column("total_turns", "integer", "Turn count reported by the platform.", minimum=0),
        Column(
            "final_outcome",
            "enum",
            "How the session ended.",
            accepted=("completed", "abandoned", "transferred"),
            case="lower",
        ),
        Column(
            "transfer_reason",
            "enum",
            "Why the session was (or would have been) transferred; empty when none.",
            accepted=("repeated_errors", "user_request", "system"),
            case="lower",
            required=False,
        ),
        Column("created_at", "date", "Day the session took place."),
        Column(
            "asr_model_version",
            "text",
            "Version of the speech recogniser that served the session (optional column).",
            required=False,
            optional_in_file=True,
            case="lower",
        ),
    ),
)

VOICE_TURNS = Table(
    name="voice_turns",
    file="voice_turns.csv",
    grain="one row per turn of a session",
    key=("turn_id",),
    date_column="created_at",
    foreign_keys=(("session_id", "voice_sessions", "session_id"),),
    columns=(
        Column("turn_id", "text", "Turn identifier."),
        Column("session_id", "text", "The session of the turn."),
        Column("turn_number", "integer", "Position of the turn in its session, from 1.", minimum=1),
        Column("speaker", "enum", "Who spoke.", accepted=("user", "system"), case="lower"),
        Column("detected_intent", "text", "Intent detected by the NLU; 'unknown' when none.", case="lower"),
        Column("intent_confidence", "decimal", "NLU confidence of the intent.", minimum=0, maximum=1),
        Column("asr_confidence", "decimal", "Speech recogniser confidence.", minimum=0, maximum=1),
        Column(
            "error_type",
            "enum",
            "Error of the turn: misunderstanding (no-match), silence (no-input), noise; empty when none.",
            accepted=("misunderstanding", "silence", "noise"),
            case="lower",
            required=False,
        ),
        Column("turn_duration_sec", "decimal", "Duration of the turn, seconds.", minimum=0),
        Column("created_at", "date", "Day the turn was logged."),
    ),
)

VOICE_AI_METRICS = Table(
    name="voice_ai_metrics",
    file="voice_ai_metrics.csv",
    grain="one row per voice session",
    key=("session_id",),
    foreign_keys=(("session_id", "voice_sessions", "session_id"),),
    columns=(
        Column("session_id", "text", "The session the metrics describe."),
        Column("avg_asr_confidence", "decimal", "Mean ASR confidence reported.", minimum=0, maximum=1),
        Column("avg_intent_confidence", "decimal", "Mean intent confidence reported.", minimum=0, maximum=1),
        Column("misunderstanding_rate", "decimal", "Share of misunderstood turns reported.", minimum=0, maximum=1),
        Column("silence_rate", "decimal", "Share of silent turns reported.", minimum=0, maximum=1),
        Column("recovery_success", "yesno", "The assistant recovered from an error."),
        Column("escalation_flag", "yesno", "The session was escalated."),
    ),
)

APPLICATIONS = Table(
    name="applications",
    file="applications.csv",
    grain="one row per service application",
    key=("application_id",),
    date_column="submitted_at",
    foreign_keys=(("session_id", "voice_sessions", "session_id"), ("user_id", "users", "user_id")),
    columns=(
        Column("application_id", "text", "Application identifier."),
        Column("session_id", "text", "The session the application claims to come from."),
        Column("user_id", "text", "The applicant. PII: anonymised in staging.", pii=True),
        Column("service_code", "text", "Government service applied for.", case="upper"),
        Column("channel", "enum", "Channel of submission.", accepted=("voice", "web", "ussd"), case="lower"),
        Column("status", "enum", "Application status.", accepted=("completed", "abandoned", "failed"), case="lower"),
        Column("time_to_submit_sec", "decimal", "Seconds from start to submission.", minimum=0, required=False),
        Column("submitted_at", "date", "Day of submission."),
    ),
)

# A synthetic export (``voice-analytics generate``) carries this file beside its five CSVs, in
# every delivery folder: the warehouse records which exports were synthetic (and their seed) and
# refuses to mix them with real ones. A real export has no such file.
SYNTHETIC_MARKER = "synthetic_export.json"

TABLES: tuple[Table, ...] = (USERS, VOICE_SESSIONS, VOICE_TURNS, VOICE_AI_METRICS, APPLICATIONS)
TABLES_BY_NAME = {t.name: t for t in TABLES}
# Load order that respects foreign keys (parents first); the loader itself does not enforce
# them (a delivery may bring children before parents), dbt's relationships tests do.
LOAD_ORDER = tuple(t.name for t in TABLES)


def table(name: str) -> Table:
    try:
        return TABLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown source table {name!r}; expected one of {', '.join(TABLES_BY_NAME)}") from None


def raw_table_ddl(t: Table, schema: str = "raw") -> str:
    """DDL of the typed raw table of ``t`` with its load metadata columns."""
    cols = [f"    {c.name} {c.pg_type}" for c in t.columns]
    cols += [
        "    _batch_id bigint not null references raw.load_batches (batch_id)",
        "    _source_line bigint not null",
    ]
    return f"create table if not exists {schema}.{t.name} (\n" + ",\n".join(cols) + "\n)"


# Deliveries are daily: a table whose latest load is older than this missed one (as the Dagster
# check raw_load_fresh says for the sessions).
SOURCE_FRESHNESS_HOURS = 36
SOURCES_FILE = "models/staging/voice_export/_voice_export__sources.yml"


def loaded_at_query(t: Table) -> str:
    """When ``t`` was last loaded: the load log's time of its latest loaded file. The raw rows
    carry their batch, not a time; the batch's row in raw.load_batches has it."""
    return (f"select max(loaded_at) from raw.load_batches where table_name = '{t.name}' "
            "and status = 'loaded'")


def dbt_sources() -> dict:
    """The dbt sources declaration for the raw tables, derived from the contract.

    ``dbt/`` + SOURCES_FILE is this, written out; a unit test keeps the two in agreement
    (regenerate with ``voice-analytics contract --write-dbt-sources``)."""
    tables = []
    for t in TABLES:
        columns = [{"name": c.name, "description": c.description, "data_type": c.pg_type} for c in t.columns]
        columns += [
            {"name": "_batch_id", "description": "Load batch (raw.load_batches) that delivered the row.",
             "data_type": "bigint"},
            {"name": "_source_line", "description": "Line of the row in its source file (1 = header).",
             "data_type": "bigint"},
        ]
        tables.append({
            "name": t.name,
            "description": f"{t.file} as loaded by the pipeline: {t.grain} per delivery (all deliveries kept).",
            "meta": {"source_file": t.file, "grain": t.grain, "key": list(t.key)},
            "config": {"loaded_at_query": loaded_at_query(t)},
            "columns": columns,
        })
    return {
        "version": 2,
        "sources": [{
            "name": "voice_export",
            "description": "Typed raw tables loaded by COPY from the voice assistant's CSV export "
                           "(voice_analytics_dagster/defs/ingestion/copy.py). Every row keeps its load batch and source line.",
            "schema": "raw",
            "config": {"freshness": {"warn_after": {"count": SOURCE_FRESHNESS_HOURS, "period": "hour"}}},
            "tables": tables,
        }],
    }
