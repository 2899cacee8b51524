"""The project's one error hierarchy.

Every failure a caller may want to handle has a class here, so that agents can tell a poison
message (dead-letter it) from a transient outage (retry it) without matching on library errors.
"""

from __future__ import annotations


class BlotterError(Exception):
    """Base of every error raised on purpose by this project."""


class ConfigError(BlotterError):
    """A configuration variable is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


class PoisonMessage(BlotterError):
    """A message that will never be processable as it is: it goes to the dead-letter queue.

    `stage` says where it failed (decode, validate, apply) and ends up in the DLQ headers.
    """

    stage = "apply"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DecodeError(PoisonMessage):
    """The bytes are not a valid Confluent-framed Avro message of a known schema."""

    stage = "decode"


class ValidationError(PoisonMessage):
    """The message decoded but breaks a business rule of its type (missing id, bad quantity)."""

    stage = "validate"


class TransientError(BlotterError):
    """A dependency is unavailable for now (schema registry, broker); retry, never dead-letter."""


class SchemaRegistryUnavailable(TransientError):
    """The schema registry did not answer; the message is retried, not dead-lettered."""


class PartitionRevoked(BlotterError):
    """The partition of the event being handled was revoked while the handler ran: it must not
    write state, and its message stays unacknowledged for the partition's new owner."""


class CorruptState(BlotterError):
    """Stored state contradicts itself (a position's history event does not apply at its own
    version): processing that partition stops loudly instead of building on it."""
