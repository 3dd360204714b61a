"""Settings of the streaming worker and the publisher (pydantic-settings).

Every setting comes from an ``NCD_``-prefixed environment variable (``NCD_STATE_DIR``,
``NCD_TOPIC_EVENTS``...), from an optional ``.env``-style file named by ``NCD_ENV_FILE``,
or from a command-line flag, in rising order of precedence. Everything is validated
before anything connects; a bad setting is a :class:`~processor.errors.ConfigError`
naming it. The SASL password and the client key's password are ``SecretStr``: masked
whenever settings are printed. Each can come from a file instead (``NCD_SASL_PASSWORD_FILE``,
``NCD_SSL_PASSWORD_FILE``: a mounted secret), so that it shows in no process listing or
environment dump. The env file must be owner-only, and SASL PLAIN, which sends the password
as it is, is refused over a connection without TLS unless ``NCD_ALLOW_PLAINTEXT_SASL`` says so.
"""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processor.errors import ConfigError
from processor.transport import (
    DEFAULT_FETCH_MAX_BYTES,
    DEFAULT_MAX_PARTITION_FETCH_BYTES,
    ClientSettings,
    TopicSpec,
)


class Guarantee(StrEnum):
    EXACTLY_ONCE = "exactly_once"
    AT_LEAST_ONCE = "at_least_once"


class Settings(BaseSettings):
    """Every setting of ``ncd-processor run`` and ``publish``."""

    model_config = SettingsConfigDict(
        env_prefix="NCD_", extra="ignore", frozen=True, validate_default=True
    )

    bootstrap_servers: str = Field(
        "localhost:9092", description="Kafka bootstrap servers, host:port[,host:port]"
    )
    state_dir: Path = Field(Path("state"), description="directory of the local state stores")
    group_id: str = Field("ncd-processor", description="consumer group of the workers")
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="this worker's stable name; its transactional id is GROUP_ID-INSTANCE_ID",
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="worker processes in this container, each a group member of its own:"
        " instance id INSTANCE_ID-0, -1...; state in STATE_DIR/worker-0, worker-1...;"
        " HTTP port HTTP_PORT, +1...",
    )
    guarantee: Guarantee = Field(
        Guarantee.EXACTLY_ONCE, description="exactly_once (transactions) or at_least_once"
    )
    partitions: int = Field(
        6,
        ge=1,
        description="partitions of the topics created when the aggregations topic does not"
        " exist; an existing one's count sizes them instead",
    )
    replication_factor: int = Field(
        -1, description="replication of created topics; -1 = broker default"
    )
    create_topics: bool = Field(True, description="create missing topics at start-up")
    transport: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="Kafka client: kafka-python, or confluent (librdkafka; extra 'confluent')",
    )

    topic_sources: str = Field("ncd.sources", description="source descriptors (compacted)")
    topic_entitlements: str = Field(
        "ncd.entitlements", description="entitlement catalog entries (compacted)"
    )
    topic_aggregations: str = Field(
        "ncd.aggregations", description="aggregation records: the main input"
    )
    topic_provisioning: str = Field(
        "ncd.provisioning", description="the platform's own std:account:update records"
    )
    topic_events: str = Field("ncd.events", description="output: the events")
    topic_remediations: str = Field(
        "ncd.remediations", description="output: remediation commands, for sources asking"
    )
    topic_dlq: str = Field("ncd.dlq", description="output: dead letters with the reason")
    topic_changelog: str = Field(
        "ncd.state-changelog", description="compacted changelog of the state stores"
    )

    max_batch_records: int = Field(
        2000, ge=1, description="most records per batch, and so per transaction"
    )
    # Under Kafka's default 1 MiB message limit, with room for headers: an input record the
    # worker could neither store in the changelog nor copy to the dead-letter topic.
    max_record_bytes: int = Field(
        900_000,
        ge=65_536,
        description="input records over this size are dead-lettered (the copy without its value)",
    )
    # Measured on both clients (docs/decisions.md, "Fetch sizes"): 2 MiB per partition is as
    # fast as 1-4 MiB, 16 MiB clearly slower; a broker far away may want more per round trip.
    max_partition_fetch_bytes: int = Field(
        DEFAULT_MAX_PARTITION_FETCH_BYTES,
        ge=1_048_576,
        description="most bytes one fetch brings per partition (consumers; ~600 records of 3 KB)",
    )
    fetch_max_bytes: int = Field(
        DEFAULT_FETCH_MAX_BYTES,
        ge=1_048_576,
        description="most bytes one fetch brings in all (consumers; at least the above)",
    )
    batch_linger_ms: int = Field(
        100,
        ge=0,
        description="how long a batch is filled from further polls before it is processed",
    )
    # Short enough that a stop request or a config change is noticed quickly, long
    # enough that an idle worker does not spin.
    poll_timeout_s: float = Field(0.5, gt=0, description="longest wait for records in one poll")
    session_timeout_ms: int = Field(
        45_000, ge=1000, description="consumer group session timeout: a dead worker's grace"
    )
    heartbeat_interval_ms: int = Field(
        3_000, ge=100, description="consumer heartbeat interval (well under the session)"
    )
    max_poll_interval_ms: int = Field(
        300_000, ge=1000, description="longest gap between polls before the group evicts"
    )
    transaction_timeout_ms: int = Field(
        60_000, ge=1000, description="broker aborts a transaction left open this long"
    )
    # Backoff after a retriable broker failure: doubles from the first to the cap.
    retry_backoff_first_s: float = Field(
        0.5, gt=0, description="first wait after a retriable broker failure (then doubles)"
    )
    retry_backoff_max_s: float = Field(30.0, gt=0, description="cap of that wait")
    # A day covers clocks set wrong by hours; a date years ahead would make every later real
    # change of the accounts it touched look stale.
    future_allowance_s: float = Field(
        86_400.0,
        ge=0,
        description="startedAt and completedAt later than now plus this are dead-lettered",
    )
    # An hour covers the slowest aggregation of a large source; data time, not wall clock.
    provisioning_hold_s: float = Field(
        3600.0,
        ge=0,
        description="how long provisioning records wait for their account or, PENDING, "
        "for the aggregation that shows them (against aggregation startedAt)",
    )

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(
        None,
        description="SASL password (a secret: never printed or logged; the flag shows in "
        "process listings, prefer the file)",
    )
    sasl_password_file: Path | None = Field(
        None, description="file holding the SASL password (a mounted secret), instead of it"
    )
    allow_plaintext_sasl: bool = Field(
        False,
        description="allow SASL PLAIN without TLS (SASL_PLAINTEXT: the password travels in clear)",
    )
    ssl_cafile: Path | None = Field(None, description="CA certificate file (PEM) for TLS")
    ssl_certfile: Path | None = Field(None, description="client certificate file (PEM)")
    ssl_keyfile: Path | None = Field(None, description="client private key file (PEM)")
    ssl_password: SecretStr | None = Field(
        None, description="password of the client private key (a secret, like the SASL one)"
    )
    ssl_password_file: Path | None = Field(
        None, description="file holding the client private key's password, instead of it"
    )

    http_host: str = Field(
        "127.0.0.1",
        description="address of the metrics and health endpoint (0.0.0.0: every interface, "
        "as the image sets for probes)",
    )
    http_port: int = Field(
        8080, ge=0, le=65535, description="port of /metrics, /livez, /readyz; 0 disables it"
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON otherwise"
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("must be host:port[,host:port...]")
        return value

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """Read ``*_password_file`` into its password (given both, the setting is refused)."""
        if not isinstance(data, dict):
            return data
        for name in ("sasl_password", "ssl_password"):
            path = data.get(f"{name}_file")
            if path is None:
                continue
            if data.get(name) is not None:
                raise ValueError(f"NCD_{name.upper()} and NCD_{name.upper()}_FILE are both set")
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise ValueError(f"NCD_{name.upper()}_FILE: cannot read {path}: {reason}") from exc
            data = {**data, name: text.rstrip("\r\n")}
        return data

    @model_validator(mode="after")
    def _fetch_sizes(self) -> Settings:
        if self.fetch_max_bytes < self.max_partition_fetch_bytes:
            raise ValueError("NCD_FETCH_MAX_BYTES is below NCD_MAX_PARTITION_FETCH_BYTES")
        return self

    @model_validator(mode="after")
    def _no_plain_password_in_clear(self) -> Settings:
        if (
            self.security_protocol == "SASL_PLAINTEXT"
            and self.sasl_mechanism == "PLAIN"
            and not self.allow_plaintext_sasl
        ):
            raise ValueError(
                "SASL PLAIN over SASL_PLAINTEXT sends the password in clear: use "
                "NCD_SECURITY_PROTOCOL=SASL_SSL (or SCRAM), or set NCD_ALLOW_PLAINTEXT_SASL=true"
            )
        return self

    @property
    def transactional_id(self) -> str | None:
        """The producer's transactional id in exactly-once mode, else ``None``."""
        if self.guarantee != Guarantee.EXACTLY_ONCE:
            return None
        return f"{self.group_id}-{self.instance_id}"

    def client(self) -> ClientSettings:
        """The broker connection settings for the transport adapters."""
        return ClientSettings(
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"ncd-processor-{self.instance_id}",
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=None
            if self.sasl_password is None
            else self.sasl_password.get_secret_value(),
            ssl_cafile=None if self.ssl_cafile is None else str(self.ssl_cafile),
            ssl_certfile=None if self.ssl_certfile is None else str(self.ssl_certfile),
            ssl_keyfile=None if self.ssl_keyfile is None else str(self.ssl_keyfile),
            ssl_password=None
            if self.ssl_password is None
            else self.ssl_password.get_secret_value(),
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
            transactional_id=self.transactional_id,
            group_id=self.group_id,
            transaction_timeout_ms=self.transaction_timeout_ms,
            max_partition_fetch_bytes=self.max_partition_fetch_bytes,
            fetch_max_bytes=self.fetch_max_bytes,
        )

    def topic_specs(self, partitions: int | None = None) -> list[TopicSpec]:
        """Every topic the worker reads or writes, as it would create them.

        ``partitions`` sizes the partitioned topics (default: the ``partitions`` setting);
        :func:`processor.topics.ensure_topics` passes the count of an existing
        aggregations topic.
        """
        n, rf = partitions or self.partitions, self.replication_factor
        return [
            TopicSpec(self.topic_sources, 1, compacted=True, replication_factor=rf),
            TopicSpec(self.topic_entitlements, 1, compacted=True, replication_factor=rf),
            TopicSpec(self.topic_aggregations, n, replication_factor=rf),
            TopicSpec(self.topic_provisioning, n, replication_factor=rf),
            TopicSpec(self.topic_events, n, replication_factor=rf),
            TopicSpec(self.topic_remediations, n, replication_factor=rf),
            TopicSpec(self.topic_dlq, n, replication_factor=rf),
            TopicSpec(self.topic_changelog, n, compacted=True, replication_factor=rf),
        ]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and ``NCD_ENV_FILE``), then ``overrides``.

    ``overrides`` whose value is ``None`` are ignored (flags that were not given).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    env_file = os.environ.get("NCD_ENV_FILE")
    if env_file:
        _check_env_file(Path(env_file))
    try:
        return Settings(_env_file=env_file, **given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["loc"]:
                problems.append("NCD_" + "_".join(str(p) for p in err["loc"]).upper() + ": " + msg)
            else:
                problems.append(msg)
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc


def _check_env_file(path: Path) -> None:
    """An env file holds secrets: refuse one that is missing or that others may read."""
    if not path.is_file():
        raise ConfigError(f"NCD_ENV_FILE: no such file: {path}")
    mode = path.stat().st_mode & 0o777
    if mode & 0o066:
        raise ConfigError(
            f"NCD_ENV_FILE: {path} can be read or written by group or others (mode "
            f"{mode:04o}) and may hold secrets; make it owner-only: chmod 600 {path}"
        )
