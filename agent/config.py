"""The agent's configuration: one frozen dataclass, read once from TOML, the environment and
command-line overrides (in that order of precedence, last wins). Everything else receives it.

    buffer = "/var/lib/infermeter/buffer.db"
    buffer_max_mb = 256          # the buffer's cap: past it, old records are compacted

    [tags]                       # added to every record made on this device
    site = "plant-3"

    [collector]
    address = "collector.example.com:50051"
    token_file = "/etc/infermeter/token/device.token"   # or token = "..." (not recommended)
    timeout_s = 10
    tls_ca_file = ""             # PEM CAs to verify the collector with; "" and no cert: plaintext
    tls_cert_file = ""           # this device's certificate, for mutual TLS (optional)
    tls_key_file = ""            # and its key
    tls_server_name = ""         # the name to expect in the collector's certificate, if not the host

    [shipper]
    batch_size = 2000
    interval_s = 1.0
    backoff_initial_s = 0.5
    backoff_max_s = 60
    heartbeat_s = 30             # with nothing to ship, push this often anyway (budget changes); 0: never

    [energy]                     # energy per inference (agent.energy)
    enabled = true
    sensors = ["auto"]           # or any of: rapl, jetson, hwmon, nvml, triton, estimate
    sample_period_s = 0.1
    slack_s = 1.0                # how far behind the newest sample attribution stays
    idle_record_s = 60           # idle energy is gathered into one idle record this often
    triton_metrics_url = ""      # a local Triton server's metrics, e.g. http://localhost:8002/metrics

    [energy.estimate]            # the power model where no sensor can be read
    idle_w_per_cpu = 0.74
    max_w_per_cpu = 3.5
    w_per_memory_gb = 0.392

    [triton]                     # server-side join for Triton client records (agent.triton_join)
    statistics_url = ""          # the local Triton server's HTTP endpoint, e.g. http://localhost:8000
    statistics_header = ""       # KEY=VALUE sent with each read, where the server restricts its
                                 # statistics (tritonserver --http-restricted-api=statistics:KEY=VALUE)

    [metrics]                    # Prometheus metrics of the daemon (agent.metrics; the `metrics` extra)
    listen = "127.0.0.1:9464"    # HOST:PORT to serve /metrics on; "" (the default): off

    [discovery]                  # shadow AI: processes with a runtime loaded that meter nothing (agent.discovery)
    enabled = true
    interval_s = 60              # how often /proc is scanned
    recent_s = 900               # a process whose pid wrote a record this recently is metered

Environment: INFERMETER_CONFIG (path of the TOML file), INFERMETER_BUFFER, INFERMETER_TAGS
("k=v,k2=v2"), INFERMETER_COLLECTOR, INFERMETER_TOKEN_FILE, INFERMETER_TOKEN.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    import tomli as tomllib

DEFAULT_BUFFER = "/var/lib/infermeter/buffer.db"


class ConfigError(ValueError):
    """The configuration is unusable; the message names the file and key."""


@dataclass(frozen=True)
class AgentConfig:
    buffer_path: Path = Path(DEFAULT_BUFFER)
    buffer_max_mb: float = 256.0
    tags: Mapping[str, str] = field(default_factory=dict)
    collector_address: str = ""
    token: str = field(default="", repr=False)
    token_file: Path | None = None
    timeout_s: float = 10.0
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_name: str = ""
    batch_size: int = 2000
    interval_s: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    heartbeat_s: float = 30.0
    energy_enabled: bool = True
    energy_sensors: tuple[str, ...] = ("auto",)
    sample_period_s: float = 0.1
    attribution_slack_s: float = 1.0
    idle_record_s: float = 60.0
    triton_metrics_url: str = ""
    idle_w_per_cpu: float = 0.74
    max_w_per_cpu: float = 3.5
    w_per_memory_gb: float = 0.392
    metrics_listen: str = ""
    triton_statistics_url: str = ""
    triton_statistics_header: str = field(default="", repr=False)
    discovery_enabled: bool = True
    discovery_interval_s: float = 60.0
    discovery_recent_s: float = 900.0

    def device_token(self) -> str:
        """The device token: inline, or read from token_file at the moment of the call (so a
        rotated token is picked up without a restart)."""
        if self.token:
            return self.token
        if self.token_file is None:
            raise ConfigError("no device token: set collector.token_file (or INFERMETER_TOKEN_FILE)")
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"cannot read the device token from {self.token_file}: {err.strerror}") from err
        if not token:
            raise ConfigError(f"the device token file {self.token_file} is empty")
        return token


# TOML table -> {key: (AgentConfig field, type)}
_SCHEMA: dict[str | None, dict[str, tuple[str, type]]] = {
    None: {"buffer": ("buffer_path", Path), "buffer_max_mb": ("buffer_max_mb", float)},
    "collector": {
        "address": ("collector_address", str),
        "token": ("token", str),
        "token_file": ("token_file", Path),
        "timeout_s": ("timeout_s", float),
        "tls_ca_file": ("tls_ca_file", Path),
        "tls_cert_file": ("tls_cert_file", Path),
        "tls_key_file": ("tls_key_file", Path),
        "tls_server_name": ("tls_server_name", str),
    },
    "shipper": {
        "batch_size": ("batch_size", int),
        "interval_s": ("interval_s", float),
        "backoff_initial_s": ("backoff_initial_s", float),
        "backoff_max_s": ("backoff_max_s", float),
        "heartbeat_s": ("heartbeat_s", float),
    },
    "energy": {
        "enabled": ("energy_enabled", bool),
        "sensors": ("energy_sensors", tuple),
        "sample_period_s": ("sample_period_s", float),
        "slack_s": ("attribution_slack_s", float),
        "idle_record_s": ("idle_record_s", float),
        "triton_metrics_url": ("triton_metrics_url", str),
    },
    "energy.estimate": {
        "idle_w_per_cpu": ("idle_w_per_cpu", float),
        "max_w_per_cpu": ("max_w_per_cpu", float),
        "w_per_memory_gb": ("w_per_memory_gb", float),
    },
    "metrics": {"listen": ("metrics_listen", str)},
    "triton": {
        "statistics_url": ("triton_statistics_url", str),
        "statistics_header": ("triton_statistics_header", str),
    },
    "discovery": {
        "enabled": ("discovery_enabled", bool),
        "interval_s": ("discovery_interval_s", float),
        "recent_s": ("discovery_recent_s", float),
    },
}
SENSOR_FAMILIES = ("auto", "rapl", "jetson", "hwmon", "nvml", "triton", "estimate")
_ENV = {
    "INFERMETER_BUFFER": ("buffer_path", Path),
    "INFERMETER_COLLECTOR": ("collector_address", str),
    "INFERMETER_TOKEN_FILE": ("token_file", Path),
    "INFERMETER_TOKEN": ("token", str),
}


def parse_tags(text: str, *, source: str = "INFERMETER_TAGS") -> dict[str, str]:
    """Parse "k=v,k2=v2" into a dict."""
    tags = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: {item!r} is not KEY=VALUE")
        tags[key.strip()] = value.strip()
    return tags


def _coerce(where: str, value: object, kind: type) -> object:
    if kind is bool:
        if type(value) is not bool:
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is tuple:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where} must be a list of strings")
        unknown = [item for item in value if item not in SENSOR_FAMILIES]
        if unknown:
            raise ConfigError(f"{where}: unknown sensor family {unknown[0]!r} (one of: {', '.join(SENSOR_FAMILIES)})")
        return tuple(value)
    if kind is float and type(value) in (int, float) or kind is int and type(value) is int:
        if kind is float and not math.isfinite(value):  # TOML has nan and inf
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{where} must not be negative")
        return kind(value)
    if kind is Path and value == "":
        return None  # "" says: none
    if kind in (str, Path) and isinstance(value, str):
        return kind(value)
    raise ConfigError(f"{where} must be a {kind.__name__}, got {type(value).__name__}")


def _from_toml(path: Path) -> dict[str, object]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    values: dict[str, object] = {}
    for key, value in document.items():
        if key == "tags":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{path}: [tags] must map names to strings")
            values["tags"] = dict(value)
        elif key in _SCHEMA and isinstance(value, dict):
            _read_table(path, key, value, values)
        elif key in _SCHEMA[None]:
            name, kind = _SCHEMA[None][key]
            values[name] = _coerce(f"{path}: {key}", value, kind)
        else:
            raise ConfigError(f"{path}: unknown key {key}")
    return values


def _read_table(path: Path, table: str, document: dict, values: dict[str, object]) -> None:
    for key, value in document.items():
        where = f"{table}.{key}"
        if where in _SCHEMA and isinstance(value, dict):  # a nested table, [energy.estimate]
            _read_table(path, where, value, values)
        elif key in _SCHEMA[table]:
            name, kind = _SCHEMA[table][key]
            values[name] = _coerce(f"{path}: {where}", value, kind)
        else:
            raise ConfigError(f"{path}: unknown key {where}")


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> AgentConfig:
    """Read the configuration. path (or $INFERMETER_CONFIG) names the TOML file; without one,
    defaults and the environment apply. overrides are AgentConfig field names (CLI flags)."""
    env = os.environ if env is None else env
    path = path or env.get("INFERMETER_CONFIG")
    values: dict[str, object] = _from_toml(Path(path)) if path else {}
    for var, (name, kind) in _ENV.items():
        if env.get(var):
            values[name] = kind(env[var])
    if env.get("INFERMETER_TAGS"):
        values["tags"] = {**values.get("tags", {}), **parse_tags(env["INFERMETER_TAGS"])}
    known = {f.name for f in fields(AgentConfig)}
    for name, value in (overrides or {}).items():
        if name not in known:
            raise ConfigError(f"unknown setting {name}")
        if value is not None:
            values[name] = value
    config = replace(AgentConfig(), **values)
    if config.batch_size < 1:
        raise ConfigError("shipper.batch_size must be at least 1")
    if config.heartbeat_s < 0:
        raise ConfigError("shipper.heartbeat_s must not be negative (0: no heartbeats)")
    if config.buffer_max_mb < 1:
        raise ConfigError("buffer_max_mb must be at least 1 (MB)")
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise ConfigError("collector.tls_cert_file and collector.tls_key_file go together (mutual TLS)")
    if not 0.01 <= config.sample_period_s <= 60:
        raise ConfigError("energy.sample_period_s must be from 0.01 to 60 seconds")
    if config.metrics_listen and not _is_address(config.metrics_listen):
        raise ConfigError(f"metrics.listen must be HOST:PORT, got {config.metrics_listen!r}")
    if config.discovery_interval_s < 1:
        raise ConfigError("discovery.interval_s must be at least 1 (second)")
    if config.max_w_per_cpu < config.idle_w_per_cpu:
        raise ConfigError("energy.estimate.max_w_per_cpu must not be below idle_w_per_cpu")
    return config


def _is_address(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 <= int(port) <= 65535)
