"""JSON Lines read whole, one VARIANT per line (``json_schema: sample``): no pass infers a schema.

Spark infers a JSON schema from every line of the files: a pass over all of them before any work. With
``json_schema: sample`` the columns come instead from a bounded sample, the first SAMPLE_LINES lines of
at most SAMPLE_FILES files, which is what the run's checks and settings see (text_col, id_col, the
group and label columns). Every pass reads each line whole, as one VARIANT (Spark's
``singleVariantColumn``), so a column that no sampled line has is kept, not lost; the output's columns
are typed from the selected rows themselves (``with_columns_found``), the only rows whose full schema the
run needs. Types follow Spark's JSON inference: integers BIGINT, other numbers DOUBLE, a field whose
values differ in type (or are all null) STRING.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, DataFrameReader, Observation
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DecimalType,
    DoubleType,
    MapType,
    NullType,
    StringType,
    StructField,
    StructType,
    VariantType,
)

SAMPLE = "sample"  # the json_schema value
RECORD = "__dsir_record"  # each line, whole, as a VARIANT
CHUNK_TEXT = "__dsir_chunk_text"  # a chunk's text, beside the line of its document
SAMPLE_LINES = 1000
SAMPLE_FILES = 16
# An id_col is typed as the sampled lines have it: another type reads as null, which this adds to the error.
SAMPLED_ID_NOTE = ("; with json_schema: sample an id of another type than the sampled lines' (a string among "
                   "integers) reads as null: set json_schema: null to have Spark type the ids from every line")


def whole_lines(reader: DataFrameReader, corrupt: str) -> DataFrameReader:
    """``reader`` set to read each JSON line as one VARIANT column RECORD (and unparsable lines in ``corrupt``)."""
    return reader.option("singleVariantColumn", RECORD).schema(f"{RECORD} VARIANT, `{corrupt}` STRING")


def sampled_files(files: Sequence[str]) -> list[str]:
    """At most SAMPLE_FILES of ``files``, spread evenly over them, the first and the last included."""
    if len(files) <= SAMPLE_FILES:
        return list(files)
    step = (len(files) - 1) / (SAMPLE_FILES - 1)
    return [files[round(i * step)] for i in range(SAMPLE_FILES)]


def sampled_schema(reader: DataFrameReader, files: Sequence[str]) -> StructType:
    """The columns of the first SAMPLE_LINES lines of each of ``files`` (``reader``: whole_lines), typed as
    Spark's JSON inference types them; one small job that reads no more than those lines."""
    frames = [reader.json(file).limit(SAMPLE_LINES) for file in files]
    if not frames:
        return StructType([])
    lines = frames[0]
    for frame in frames[1:]:
        lines = lines.unionByName(frame)
    found = lines.select(F.schema_of_variant_agg(RECORD)).first()[0]
    return inferred_types(found)


def inferred_types(variant_schema: str | None) -> StructType:
    """A schema_of_variant answer (``OBJECT<...>``) as the struct Spark's JSON inference would give."""
    if not variant_schema or not variant_schema.startswith("OBJECT<"):  # no line, or no object among them
        return StructType([])
    parsed = DataType.fromDDL(_struct_ddl(variant_schema))
    return _as_inferred(parsed) if isinstance(parsed, StructType) else StructType([])


def _struct_ddl(variant_schema: str) -> str:
    """``OBJECT<`` as ``STRUCT<`` outside back-quoted field names, which Spark's DDL parser reads."""
    out, quoted, i = [], False, 0
    while i < len(variant_schema):
        if variant_schema[i] == "`":
            quoted = not quoted
        elif not quoted and variant_schema.startswith("OBJECT<", i):
            out.append("STRUCT<")
            i += len("OBJECT<")
            continue
        out.append(variant_schema[i])
        i += 1
    return "".join(out)


def _as_inferred(data_type: DataType) -> DataType:
    if isinstance(data_type, StructType):
        return StructType([StructField(f.name, _as_inferred(f.dataType), True) for f in data_type.fields])
    if isinstance(data_type, ArrayType):
        return ArrayType(_as_inferred(data_type.elementType), True)
    if isinstance(data_type, MapType):
        return MapType(data_type.keyType, _as_inferred(data_type.valueType), True)
    if isinstance(data_type, (VariantType, NullType)):  # values of several types, or only nulls
        return StringType()
    if isinstance(data_type, DecimalType) and data_type.scale > 0:  # JSON numbers with a fraction
        return DoubleType()
    return data_type


def field_path(*names: str) -> str:
    """The VARIANT path of a field: ``names`` from the top level down."""
    return "$" + "".join(f"[{quote}{name}{quote}]" for name in names for quote in ["'" if "'" not in name else '"'])


def record_text(frame: DataFrame, text_parts: Sequence[str]) -> Column:
    """The text of the rows of ``frame`` (staged with RECORD): a chunk's own, else its line's field
    ``text_parts`` (the parts of text_col)."""
    text = F.variant_get(F.col(RECORD), field_path(*text_parts), "string")
    return F.coalesce(F.col(CHUNK_TEXT), text) if CHUNK_TEXT in frame.columns else text


def record_columns(schema: StructType) -> list[Column]:
    """RECORD's fields as columns of ``schema``'s types; a value its type cannot hold is null."""
    columns = []
    for field in schema.fields:
        value = F.variant_get(F.col(RECORD), field_path(field.name), "variant")
        if not isinstance(field.dataType, VariantType):
            value = value.try_cast(field.dataType)
        columns.append(value.alias(field.name))
    return columns


def with_columns_found(frame: DataFrame, observation: Observation) -> DataFrame:
    """``frame``, whose RECORD values' columns ``observation`` finds as the frame is written (no pass of its
    own; RECORD null where a row is not to be typed)."""
    return frame.observe(observation, F.schema_of_variant_agg(RECORD).alias("columns"))


def columns_found(observation: Observation) -> StructType:
    """The columns ``with_columns_found`` found, as Spark's JSON inference types them."""
    return inferred_types(observation.get["columns"])


def typed(frame: DataFrame, schema: StructType) -> DataFrame:
    """``frame`` with RECORD replaced, in its place, by its fields (``schema``: columns_found's answer)."""
    columns: list[Column] = []
    for name in frame.columns:
        columns += record_columns(schema) if name == RECORD else [F.col(f"`{name}`")]
    return frame.select(*columns)
