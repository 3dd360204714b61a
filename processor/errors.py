"""The exception tree of ncd-processor.

::

    ProcessorError                  root: everything we raise on purpose
    +-- InputError                  a record or file breaks the contract (a value, never a crash)
    |   +-- FileInputError          ... at FILE:LINE of a local file (``diff``, ``publish``)
    +-- ConfigError                 a setting is missing or invalid (exit 2 before connecting)
    +-- TransportError              the broker failed; ``retriable`` says whether to retry
    |   +-- BrokerAccessError       ... refused this client, or none answered it at start
    +-- StateError                  the local state store is unusable
        +-- StateCorruptError       ... and must be rebuilt from the changelog

Foreign exceptions are mapped to these at the adapter boundary with ``raise X from exc``
so that the cause is kept.
"""

from __future__ import annotations


class ProcessorError(Exception):
    """Root of every error ncd-processor raises on purpose."""


class InputError(ProcessorError):
    """A record breaks the input contract; ``reason`` is safe to log (no values)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FileInputError(InputError):
    """Bad input at a line of a local file; ``str()`` is ``FILE:LINE: reason``."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.line = line

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class ConfigError(ProcessorError):
    """A setting is missing or invalid."""


class TransportError(ProcessorError):
    """The message broker failed. Retry when ``retriable``; otherwise exit non-zero."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class BrokerAccessError(TransportError):
    """A broker refused this client's credentials, or no broker answered a client starting.

    The connection settings are the likely cause (kafka-python cannot tell a refused TLS or
    SASL handshake from a broker that does not answer), so it exits like a bad setting.
    """


class StateError(ProcessorError):
    """The local state store failed."""


class StateCorruptError(StateError):
    """The local state store is damaged and must be rebuilt from its changelog."""
