from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Device(_message.Message):
    __slots__ = ("device_id", "name", "profile", "site", "created_unix_ns", "last_seen_unix_ns", "revoked", "hostname", "cpu_cores", "platform", "agent_version", "records", "rotating")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ROTATING_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    profile: str
    site: str
    created_unix_ns: int
    last_seen_unix_ns: int
    revoked: bool
    hostname: str
    cpu_cores: int
    platform: str
    agent_version: str
    records: int
    rotating: bool
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., profile: _Optional[str] = ..., site: _Optional[str] = ..., created_unix_ns: _Optional[int] = ..., last_seen_unix_ns: _Optional[int] = ..., revoked: _Optional[bool] = ..., hostname: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., platform: _Optional[str] = ..., agent_version: _Optional[str] = ..., records: _Optional[int] = ..., rotating: _Optional[bool] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class GetCostsRequest(_message.Message):
    __slots__ = ("group_by", "since_unix_ns", "until_unix_ns", "granularity", "top")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    since_unix_ns: int
    until_unix_ns: int
    granularity: str
    top: int
    def __init__(self, group_by: _Optional[_Iterable[str]] = ..., since_unix_ns: _Optional[int] = ..., until_unix_ns: _Optional[int] = ..., granularity: _Optional[str] = ..., top: _Optional[int] = ...) -> None: ...

class CostGroup(_message.Message):
    __slots__ = ("key", "inferences", "records", "cost", "compute_cost", "energy_cost", "energy_uj", "duration_ns", "cpu_time_ns", "period", "other")
    KEY_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_COST_FIELD_NUMBER: _ClassVar[int]
    ENERGY_COST_FIELD_NUMBER: _ClassVar[int]
    ENERGY_UJ_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    key: _containers.RepeatedScalarFieldContainer[str]
    inferences: int
    records: int
    cost: str
    compute_cost: str
    energy_cost: str
    energy_uj: int
    duration_ns: int
    cpu_time_ns: int
    period: str
    other: bool
    def __init__(self, key: _Optional[_Iterable[str]] = ..., inferences: _Optional[int] = ..., records: _Optional[int] = ..., cost: _Optional[str] = ..., compute_cost: _Optional[str] = ..., energy_cost: _Optional[str] = ..., energy_uj: _Optional[int] = ..., duration_ns: _Optional[int] = ..., cpu_time_ns: _Optional[int] = ..., period: _Optional[str] = ..., other: _Optional[bool] = ...) -> None: ...

class GetCostsResponse(_message.Message):
    __slots__ = ("group_by", "currency", "groups", "total_cost", "total_inferences", "total_records", "granularity", "top")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INFERENCES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    currency: str
    groups: _containers.RepeatedCompositeFieldContainer[CostGroup]
    total_cost: str
    total_inferences: int
    total_records: int
    granularity: str
    top: int
    def __init__(self, group_by: _Optional[_Iterable[str]] = ..., currency: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[CostGroup, _Mapping]]] = ..., total_cost: _Optional[str] = ..., total_inferences: _Optional[int] = ..., total_records: _Optional[int] = ..., granularity: _Optional[str] = ..., top: _Optional[int] = ...) -> None: ...

class RotateDeviceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeDeviceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
