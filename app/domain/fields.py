"""Field descriptors shared by the metadata endpoint, the filter compiler and the blotter.

They are derived from the Avro schemas (the single source of truth) so that what a client may
filter on, and how a value is typed, never drifts from what the engine stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The data types the metadata endpoint advertises. Row values in the engine are Python values:
# String/Enum -> str, Integer/Long -> int, Decimal -> decimal.Decimal, Boolean -> bool,
# Timestamp -> timezone-aware datetime (UTC), Date -> datetime.date; any of them may be None when
# the field is optional.
DATA_TYPES = ("String", "Integer", "Long", "Decimal", "Boolean", "Timestamp", "Date", "Enum")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a blotter object type."""

    name: str
    data_type: str
    description: str = ""
    filterable: bool = True
    sortable: bool = True
    nullable: bool = False
    values: tuple[str, ...] | None = None  # enum symbols, for data_type == "Enum"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "dataType": self.data_type,
            "description": self.description,
            "filterable": self.filterable,
            "sortable": self.sortable,
            "nullable": self.nullable,
        }
        if self.values is not None:
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True, slots=True)
class ObjectTypeSpec:
    """A blotter object type (Order, Execution, ...) with its key field and its fields."""

    name: str
    key_field: str
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)

    def get_field(self, name: str) -> FieldSpec | None:
        for spec in self.fields:
            if spec.name == name:
                return spec
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "keyField": self.key_field,
            "fields": [f.to_json() for f in self.fields],
        }
