"""How an exact decimal is written for people and JSON clients: plain notation, no exponent,
no trailing zeros (Avro decimals decode padded to their scale; Decimal arithmetic can yield
exponents such as 0E-8)."""

from __future__ import annotations

from decimal import Decimal


def decimal_str(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
