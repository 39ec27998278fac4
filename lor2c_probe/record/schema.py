"""Table and column names with their dtypes: the single source of truth for the recorded data.

Tidy long tables, one row per observation (decisions.md, "Shapes of the data"). Epochs are 0-based;
``step`` counts optimizer steps completed (1 after the first update; 0 = before training).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

TABLES: dict[str, pa.Schema] = {
    "metrics": pa.schema(
        [("step", pa.int64()), ("epoch", pa.int64()), ("split", pa.string()), ("name", pa.string()), ("value", pa.float64())]
    ),
    "grads": pa.schema(
        [
            ("step", pa.int64()),
            ("epoch", pa.int64()),
            ("module", pa.string()),
            ("layer", pa.int64()),
            ("factor", pa.string()),
            ("stat", pa.string()),
            ("value", pa.float64()),
        ]
    ),
    "activation_grads": pa.schema(
        [("step", pa.int64()), ("epoch", pa.int64()), ("layer", pa.int64()), ("stat", pa.string()), ("value", pa.float64())]
    ),
    "spectra": pa.schema(
        [
            ("step", pa.int64()),
            ("epoch", pa.int64()),
            ("module", pa.string()),
            ("source", pa.string()),
            ("index", pa.int64()),
            ("sigma", pa.float64()),
        ]
    ),
    "sfs": pa.schema(
        [
            ("step", pa.int64()),
            ("epoch", pa.int64()),
            ("module", pa.string()),
            ("source", pa.string()),
            ("k", pa.int64()),
            ("value", pa.float64()),
        ]
    ),
    "histograms": pa.schema(
        [("step", pa.int64()), ("epoch", pa.int64()), ("module", pa.string()), ("layer", pa.int64()), ("source", pa.string()),
         ("bin", pa.int64()), ("lo", pa.float64()), ("hi", pa.float64()), ("count", pa.int64())]
    ),
    "updates": pa.schema(
        [("step", pa.int64()), ("epoch", pa.int64()), ("module", pa.string()), ("layer", pa.int64()), ("stat", pa.string()),
         ("value", pa.float64())]
    ),
    # One row per eval example per evaluation (classification and regression tasks): the gold label and the model's
    # prediction (argmax class, or the regressed value), so two runs can be compared example by example (McNemar).
    "predictions": pa.schema(
        [("step", pa.int64()), ("epoch", pa.int64()), ("split", pa.string()), ("example", pa.int64()), ("label", pa.float64()),
         ("prediction", pa.float64())]
    ),
    "events": pa.schema(
        [("step", pa.int64()), ("epoch", pa.int64()), ("kind", pa.string()), ("modules", pa.string()), ("detail_json", pa.string())]
    ),
}


def columns(table: str) -> list[str]:
    """Column names of ``table``, in order."""
    return TABLES[table].names


def register_table(name: str, schema: pa.Schema) -> None:
    """A table for a probe added from outside (a plugin's, a test's); its first two columns must be step and epoch."""
    if schema.names[:2] != ["step", "epoch"]:
        raise ValueError(f"table {name!r}: the first columns must be step, epoch; got {schema.names[:2]}")
    TABLES[name] = schema
