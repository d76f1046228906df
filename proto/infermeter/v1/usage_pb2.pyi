from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_KIND_UNSPECIFIED: _ClassVar[RecordKind]
    RECORD_KIND_INFERENCE: _ClassVar[RecordKind]
    RECORD_KIND_SPAN: _ClassVar[RecordKind]
    RECORD_KIND_IDLE: _ClassVar[RecordKind]
    RECORD_KIND_ROLLUP: _ClassVar[RecordKind]
    RECORD_KIND_GAP: _ClassVar[RecordKind]

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_OK: _ClassVar[Status]
    STATUS_ERROR: _ClassVar[Status]
RECORD_KIND_UNSPECIFIED: RecordKind
RECORD_KIND_INFERENCE: RecordKind
RECORD_KIND_SPAN: RecordKind
RECORD_KIND_IDLE: RecordKind
RECORD_KIND_ROLLUP: RecordKind
RECORD_KIND_GAP: RecordKind
STATUS_UNSPECIFIED: Status
STATUS_OK: Status
STATUS_ERROR: Status

class EnergyShare(_message.Message):
    __slots__ = ("domain", "energy_uj", "sensor", "method", "interval_ns", "error_uj")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ENERGY_UJ_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_NS_FIELD_NUMBER: _ClassVar[int]
    ERROR_UJ_FIELD_NUMBER: _ClassVar[int]
    domain: str
    energy_uj: int
    sensor: str
    method: str
    interval_ns: int
    error_uj: int
    def __init__(self, domain: _Optional[str] = ..., energy_uj: _Optional[int] = ..., sensor: _Optional[str] = ..., method: _Optional[str] = ..., interval_ns: _Optional[int] = ..., error_uj: _Optional[int] = ...) -> None: ...

class Memory(_message.Message):
    __slots__ = ("peak_rss_bytes", "peak_gpu_memory_bytes", "model_resident_bytes")
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    PEAK_GPU_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    peak_rss_bytes: int
    peak_gpu_memory_bytes: int
    model_resident_bytes: int
    def __init__(self, peak_rss_bytes: _Optional[int] = ..., peak_gpu_memory_bytes: _Optional[int] = ..., model_resident_bytes: _Optional[int] = ...) -> None: ...

class ServerSide(_message.Message):
    __slots__ = ("queue_ns", "compute_input_ns", "compute_infer_ns", "compute_output_ns", "gpu_memory_bytes", "source", "method", "interval_ns")
    QUEUE_NS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_INPUT_NS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_INFER_NS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_OUTPUT_NS_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_NS_FIELD_NUMBER: _ClassVar[int]
    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    gpu_memory_bytes: int
    source: str
    method: str
    interval_ns: int
    def __init__(self, queue_ns: _Optional[int] = ..., compute_input_ns: _Optional[int] = ..., compute_infer_ns: _Optional[int] = ..., compute_output_ns: _Optional[int] = ..., gpu_memory_bytes: _Optional[int] = ..., source: _Optional[str] = ..., method: _Optional[str] = ..., interval_ns: _Optional[int] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("seq", "kind", "model", "model_version", "runtime", "execution_provider", "batch_size", "input_bytes", "output_bytes", "input_tokens", "output_tokens", "start_unix_ns", "duration_ns", "cpu_time_ns", "status", "error_type", "tags", "pid", "count", "gpu_time_ns", "energy", "memory", "server")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    GPU_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: RecordKind
    model: str
    model_version: str
    runtime: str
    execution_provider: str
    batch_size: int
    input_bytes: int
    output_bytes: int
    input_tokens: int
    output_tokens: int
    start_unix_ns: int
    duration_ns: int
    cpu_time_ns: int
    status: Status
    error_type: str
    tags: _containers.ScalarMap[str, str]
    pid: int
    count: int
    gpu_time_ns: int
    energy: _containers.RepeatedCompositeFieldContainer[EnergyShare]
    memory: Memory
    server: ServerSide
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[RecordKind, str]] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., runtime: _Optional[str] = ..., execution_provider: _Optional[str] = ..., batch_size: _Optional[int] = ..., input_bytes: _Optional[int] = ..., output_bytes: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., start_unix_ns: _Optional[int] = ..., duration_ns: _Optional[int] = ..., cpu_time_ns: _Optional[int] = ..., status: _Optional[_Union[Status, str]] = ..., error_type: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., pid: _Optional[int] = ..., count: _Optional[int] = ..., gpu_time_ns: _Optional[int] = ..., energy: _Optional[_Iterable[_Union[EnergyShare, _Mapping]]] = ..., memory: _Optional[_Union[Memory, _Mapping]] = ..., server: _Optional[_Union[ServerSide, _Mapping]] = ...) -> None: ...
