from infermeter.v1 import usage_pb2 as _usage_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceInfo(_message.Message):
    __slots__ = ("hostname", "cpu_cores", "platform", "agent_version")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    cpu_cores: int
    platform: str
    agent_version: str
    def __init__(self, hostname: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., platform: _Optional[str] = ..., agent_version: _Optional[str] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("stream_id", "first_seq", "last_seq", "records", "device")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    first_seq: int
    last_seq: int
    records: _containers.RepeatedCompositeFieldContainer[_usage_pb2.UsageRecord]
    device: DeviceInfo
    def __init__(self, stream_id: _Optional[str] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., records: _Optional[_Iterable[_Union[_usage_pb2.UsageRecord, _Mapping]]] = ..., device: _Optional[_Union[DeviceInfo, _Mapping]] = ...) -> None: ...

class BudgetState(_message.Message):
    __slots__ = ("budget_id", "scope", "action", "state", "currency", "lease_remaining_pico", "name", "unit", "throttle_per_second", "period_end_unix_ns", "lease_remaining_uj", "message")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_PICO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_UJ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    scope: str
    action: str
    state: str
    currency: str
    lease_remaining_pico: int
    name: str
    unit: str
    throttle_per_second: float
    period_end_unix_ns: int
    lease_remaining_uj: int
    message: str
    def __init__(self, budget_id: _Optional[str] = ..., scope: _Optional[str] = ..., action: _Optional[str] = ..., state: _Optional[str] = ..., currency: _Optional[str] = ..., lease_remaining_pico: _Optional[int] = ..., name: _Optional[str] = ..., unit: _Optional[str] = ..., throttle_per_second: _Optional[float] = ..., period_end_unix_ns: _Optional[int] = ..., lease_remaining_uj: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class PriceHint(_message.Message):
    __slots__ = ("model", "runtime", "currency", "cost_per_inference_pico", "energy_per_inference_uj")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COST_PER_INFERENCE_PICO_FIELD_NUMBER: _ClassVar[int]
    ENERGY_PER_INFERENCE_UJ_FIELD_NUMBER: _ClassVar[int]
    model: str
    runtime: str
    currency: str
    cost_per_inference_pico: int
    energy_per_inference_uj: int
    def __init__(self, model: _Optional[str] = ..., runtime: _Optional[str] = ..., currency: _Optional[str] = ..., cost_per_inference_pico: _Optional[int] = ..., energy_per_inference_uj: _Optional[int] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("acked_through_seq", "inserted", "duplicates", "budgets", "price_hints", "new_token", "device_tags")
    class DeviceTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACKED_THROUGH_SEQ_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    PRICE_HINTS_FIELD_NUMBER: _ClassVar[int]
    NEW_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TAGS_FIELD_NUMBER: _ClassVar[int]
    acked_through_seq: int
    inserted: int
    duplicates: int
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetState]
    price_hints: _containers.RepeatedCompositeFieldContainer[PriceHint]
    new_token: str
    device_tags: _containers.ScalarMap[str, str]
    def __init__(self, acked_through_seq: _Optional[int] = ..., inserted: _Optional[int] = ..., duplicates: _Optional[int] = ..., budgets: _Optional[_Iterable[_Union[BudgetState, _Mapping]]] = ..., price_hints: _Optional[_Iterable[_Union[PriceHint, _Mapping]]] = ..., new_token: _Optional[str] = ..., device_tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ShadowProcess(_message.Message):
    __slots__ = ("pid", "start_unix_ns", "command", "cmdline", "uid", "user", "runtimes", "rss_bytes", "cpu_time_ns", "cpu_ns_per_s", "gpu_memory_bytes", "last_record_unix_ns")
    PID_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CMDLINE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CPU_NS_PER_S_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_RECORD_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    start_unix_ns: int
    command: str
    cmdline: str
    uid: int
    user: str
    runtimes: _containers.RepeatedScalarFieldContainer[str]
    rss_bytes: int
    cpu_time_ns: int
    cpu_ns_per_s: int
    gpu_memory_bytes: int
    last_record_unix_ns: int
    def __init__(self, pid: _Optional[int] = ..., start_unix_ns: _Optional[int] = ..., command: _Optional[str] = ..., cmdline: _Optional[str] = ..., uid: _Optional[int] = ..., user: _Optional[str] = ..., runtimes: _Optional[_Iterable[str]] = ..., rss_bytes: _Optional[int] = ..., cpu_time_ns: _Optional[int] = ..., cpu_ns_per_s: _Optional[int] = ..., gpu_memory_bytes: _Optional[int] = ..., last_record_unix_ns: _Optional[int] = ...) -> None: ...

class ReportProcessesRequest(_message.Message):
    __slots__ = ("scanned_unix_ns", "interval_s", "processes", "runtime_processes", "unreadable_processes")
    SCANNED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    scanned_unix_ns: int
    interval_s: float
    processes: _containers.RepeatedCompositeFieldContainer[ShadowProcess]
    runtime_processes: int
    unreadable_processes: int
    def __init__(self, scanned_unix_ns: _Optional[int] = ..., interval_s: _Optional[float] = ..., processes: _Optional[_Iterable[_Union[ShadowProcess, _Mapping]]] = ..., runtime_processes: _Optional[int] = ..., unreadable_processes: _Optional[int] = ...) -> None: ...

class ReportProcessesResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    def __init__(self, stored: _Optional[int] = ...) -> None: ...
