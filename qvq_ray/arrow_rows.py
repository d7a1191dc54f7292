"""Arrow schemas derived from the pydantic records, and the records' row form.

Rows cross Ray Data stages and land in Parquet, so each record needs a fixed Arrow schema: blocks
whose optional columns happen to be all-null must still concatenate and write with one schema.
Writing those schemas by hand let them drift from the records (a verdict's `false_claims` never
reached a row). Here they are read off the pydantic annotations, so a field added to a record is a
column at once. Free-form mappings (`dict[str, Any]`, e.g. a problem's native `meta`) have no
fixed Arrow type: they travel as JSON text, and `to_row` / `from_row` convert them.
"""

from __future__ import annotations

import json
import types
import typing
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

from pydantic import BaseModel

if TYPE_CHECKING:
    import pyarrow as pa

M = TypeVar("M", bound=BaseModel)


def _shape(annotation: Any) -> tuple[str, Any]:
    """What a field annotation is, for all three walks below: ("json", None) for a free-form
    mapping, ("list", item type), ("model", the pydantic class) or ("scalar", the Python type;
    a Literal of strings is `str`). `X | None` is X; other unions have no single Arrow type."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # constraints (a max length...) do not change the Arrow type
        return _shape(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"no single Arrow type for {annotation!r}")
        return _shape(args[0])
    if annotation is Any or annotation is dict or origin is dict:
        return "json", None
    if origin in (list, tuple):
        (item,) = {a for a in typing.get_args(annotation) if a is not Ellipsis}
        return "list", item
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    if origin is Literal and all(isinstance(v, str) for v in typing.get_args(annotation)):
        return "scalar", str
    if annotation in (str, bool, int, float, bytes):
        return "scalar", annotation
    raise TypeError(f"no Arrow type for {annotation!r}")


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of one pydantic field annotation."""
    import pyarrow as pa

    shape, inner = _shape(annotation)
    if shape == "json":
        return pa.string()
    if shape == "list":
        return pa.list_(arrow_type(inner))
    if shape == "model":
        return pa.struct([(name, arrow_type(f.annotation)) for name, f in inner.model_fields.items()])
    return {str: pa.string(), bool: pa.bool_(), int: pa.int64(), float: pa.float64(), bytes: pa.binary()}[inner]


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of `model`'s row form (one column per field)."""
    import pyarrow as pa

    return pa.schema([(name, arrow_type(f.annotation)) for name, f in model.model_fields.items()])


def _encode(annotation: Any, value: Any) -> Any:
    if value is None:
        return None
    shape, inner = _shape(annotation)
    if shape == "json":
        return json.dumps(value, ensure_ascii=False, default=str)
    if shape == "list":
        return [_encode(inner, v) for v in value]
    if shape == "model":
        return {name: _encode(f.annotation, getattr(value, name)) for name, f in inner.model_fields.items()}
    return value


def _decode(annotation: Any, value: Any) -> Any:
    if value is None:
        return None
    shape, inner = _shape(annotation)
    if shape == "json":
        return json.loads(value) if isinstance(value, str) else value
    if shape == "list":
        return [_decode(inner, v) for v in value]
    if shape == "model":
        return {name: _decode(f.annotation, value.get(name)) for name, f in inner.model_fields.items() if name in value}
    return value


def to_row(record: BaseModel) -> dict[str, Any]:
    """A record as a row of `arrow_schema(type(record))`."""
    return {name: _encode(f.annotation, getattr(record, name)) for name, f in type(record).model_fields.items()}


def from_row(model: type[M], row: dict[str, Any]) -> M:
    """The record back from its row; columns the model does not know are ignored, and a column
    that is null where the record has a default (an all-null block) takes that default."""
    data: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        if name not in row:
            continue
        value = _decode(f.annotation, row[name])
        if value is None and not f.is_required() and f.default is not None:
            continue
        data[name] = value
    return model.model_validate(data)
