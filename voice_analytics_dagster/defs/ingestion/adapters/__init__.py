"""Platform adapters: Amazon Lex V2 logs, Dialogflow CX conversation history and Rasa trackers
mapped onto the export contract (five CSV files), so that the loader, its checks, dbt, the model
and the dashboards work on them unchanged. The mapping of each platform: docs/SOURCES.md."""

from voice_analytics_dagster.defs.ingestion.adapters.base import (
    MANIFEST_FILE,
    QUARANTINE_FILE,
    AdapterError,
)
from voice_analytics_dagster.defs.ingestion.adapters.convert import ConversionResult, adapters, convert
from voice_analytics_dagster.defs.ingestion.adapters.detect import (
    FORMATS,
    Detection,
    DetectionError,
    detect_format,
)
from voice_analytics_dagster.defs.ingestion.adapters.settings import AdapterSettings, load_adapter_settings

__all__ = [
    "FORMATS", "MANIFEST_FILE", "QUARANTINE_FILE", "AdapterError", "AdapterSettings", "ConversionResult",
    "Detection", "DetectionError", "adapters", "convert", "detect_format", "load_adapter_settings",
]
