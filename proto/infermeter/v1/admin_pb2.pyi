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
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., profile: _Optional[str] = ..., site: _Optional[str] = ..., created_unix_ns: _Optional[int] = ..., last_seen_unix_ns: _Optional[int] = ..., revoked: bool = ..., hostname: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., platform: _Optional[str] = ..., agent_version: _Optional[str] = ..., records: _Optional[int] = ..., rotating: bool = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AddDeviceRequest(_message.Message):
    __slots__ = ("name", "profile", "site")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile: str
    site: str
    def __init__(self, name: _Optional[str] = ..., profile: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class AddDeviceResponse(_message.Message):
    __slots__ = ("device", "token")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    device: Device
    token: str
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class GetCostsRequest(_message.Message):
    __slots__ = ("group_by", "since_unix_ns", "until_unix_ns", "granularity", "top", "usage_only")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    USAGE_ONLY_FIELD_NUMBER: _ClassVar[int]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    since_unix_ns: int
    until_unix_ns: int
    granularity: str
    top: int
    usage_only: bool
    def __init__(self, group_by: _Optional[_Iterable[str]] = ..., since_unix_ns: _Optional[int] = ..., until_unix_ns: _Optional[int] = ..., granularity: _Optional[str] = ..., top: _Optional[int] = ..., usage_only: bool = ...) -> None: ...

class CostGroup(_message.Message):
    __slots__ = ("key", "inferences", "records", "cost", "compute_cost", "energy_cost", "energy_uj", "duration_ns", "cpu_time_ns", "period", "other", "token_cost", "request_cost", "list_cost", "discount", "idle_cost", "fixed_cost", "total_cost")
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
    TOKEN_COST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COST_FIELD_NUMBER: _ClassVar[int]
    LIST_COST_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    IDLE_COST_FIELD_NUMBER: _ClassVar[int]
    FIXED_COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
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
    token_cost: str
    request_cost: str
    list_cost: str
    discount: str
    idle_cost: str
    fixed_cost: str
    total_cost: str
    def __init__(self, key: _Optional[_Iterable[str]] = ..., inferences: _Optional[int] = ..., records: _Optional[int] = ..., cost: _Optional[str] = ..., compute_cost: _Optional[str] = ..., energy_cost: _Optional[str] = ..., energy_uj: _Optional[int] = ..., duration_ns: _Optional[int] = ..., cpu_time_ns: _Optional[int] = ..., period: _Optional[str] = ..., other: bool = ..., token_cost: _Optional[str] = ..., request_cost: _Optional[str] = ..., list_cost: _Optional[str] = ..., discount: _Optional[str] = ..., idle_cost: _Optional[str] = ..., fixed_cost: _Optional[str] = ..., total_cost: _Optional[str] = ...) -> None: ...

class GetCostsResponse(_message.Message):
    __slots__ = ("group_by", "currency", "groups", "total_cost", "total_inferences", "total_records", "granularity", "top", "list_cost", "discount", "idle_cost", "fixed_cost", "usage_cost")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INFERENCES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    LIST_COST_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    IDLE_COST_FIELD_NUMBER: _ClassVar[int]
    FIXED_COST_FIELD_NUMBER: _ClassVar[int]
    USAGE_COST_FIELD_NUMBER: _ClassVar[int]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    currency: str
    groups: _containers.RepeatedCompositeFieldContainer[CostGroup]
    total_cost: str
    total_inferences: int
    total_records: int
    granularity: str
    top: int
    list_cost: str
    discount: str
    idle_cost: str
    fixed_cost: str
    usage_cost: str
    def __init__(self, group_by: _Optional[_Iterable[str]] = ..., currency: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[CostGroup, _Mapping]]] = ..., total_cost: _Optional[str] = ..., total_inferences: _Optional[int] = ..., total_records: _Optional[int] = ..., granularity: _Optional[str] = ..., top: _Optional[int] = ..., list_cost: _Optional[str] = ..., discount: _Optional[str] = ..., idle_cost: _Optional[str] = ..., fixed_cost: _Optional[str] = ..., usage_cost: _Optional[str] = ...) -> None: ...

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

class PriceBook(_message.Message):
    __slots__ = ("id", "effective_from_unix_ns", "currency", "created_unix_ns")
    ID_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    id: int
    effective_from_unix_ns: int
    currency: str
    created_unix_ns: int
    def __init__(self, id: _Optional[int] = ..., effective_from_unix_ns: _Optional[int] = ..., currency: _Optional[str] = ..., created_unix_ns: _Optional[int] = ...) -> None: ...

class ListPriceBooksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPriceBooksResponse(_message.Message):
    __slots__ = ("price_books",)
    PRICE_BOOKS_FIELD_NUMBER: _ClassVar[int]
    price_books: _containers.RepeatedCompositeFieldContainer[PriceBook]
    def __init__(self, price_books: _Optional[_Iterable[_Union[PriceBook, _Mapping]]] = ...) -> None: ...

class GetPriceBookRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class GetPriceBookResponse(_message.Message):
    __slots__ = ("price_book", "document_json")
    PRICE_BOOK_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    price_book: PriceBook
    document_json: str
    def __init__(self, price_book: _Optional[_Union[PriceBook, _Mapping]] = ..., document_json: _Optional[str] = ...) -> None: ...

class CreatePriceBookRequest(_message.Message):
    __slots__ = ("effective_from_unix_ns", "document_json")
    EFFECTIVE_FROM_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    effective_from_unix_ns: int
    document_json: str
    def __init__(self, effective_from_unix_ns: _Optional[int] = ..., document_json: _Optional[str] = ...) -> None: ...

class ExplainRecordRequest(_message.Message):
    __slots__ = ("stream_id", "seq", "device")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    seq: int
    device: str
    def __init__(self, stream_id: _Optional[str] = ..., seq: _Optional[int] = ..., device: _Optional[str] = ...) -> None: ...

class ExplainRecordResponse(_message.Message):
    __slots__ = ("explanation_json",)
    EXPLANATION_JSON_FIELD_NUMBER: _ClassVar[int]
    explanation_json: str
    def __init__(self, explanation_json: _Optional[str] = ...) -> None: ...

class RepriceRequest(_message.Message):
    __slots__ = ("since_unix_ns", "until_unix_ns", "device")
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    since_unix_ns: int
    until_unix_ns: int
    device: str
    def __init__(self, since_unix_ns: _Optional[int] = ..., until_unix_ns: _Optional[int] = ..., device: _Optional[str] = ...) -> None: ...

class RepriceResponse(_message.Message):
    __slots__ = ("records", "changed", "old_cost", "new_cost", "currency")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    OLD_COST_FIELD_NUMBER: _ClassVar[int]
    NEW_COST_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    records: int
    changed: int
    old_cost: str
    new_cost: str
    currency: str
    def __init__(self, records: _Optional[int] = ..., changed: _Optional[int] = ..., old_cost: _Optional[str] = ..., new_cost: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class PruneRecordsRequest(_message.Message):
    __slots__ = ("before_unix_ns",)
    BEFORE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    before_unix_ns: int
    def __init__(self, before_unix_ns: _Optional[int] = ...) -> None: ...

class PruneRecordsResponse(_message.Message):
    __slots__ = ("records", "before_unix_ns")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    records: int
    before_unix_ns: int
    def __init__(self, records: _Optional[int] = ..., before_unix_ns: _Optional[int] = ...) -> None: ...

class GetForecastRequest(_message.Message):
    __slots__ = ("scope", "horizon_days", "since_unix_ns")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    scope: str
    horizon_days: int
    since_unix_ns: int
    def __init__(self, scope: _Optional[str] = ..., horizon_days: _Optional[int] = ..., since_unix_ns: _Optional[int] = ...) -> None: ...

class GetForecastResponse(_message.Message):
    __slots__ = ("forecast_json",)
    FORECAST_JSON_FIELD_NUMBER: _ClassVar[int]
    forecast_json: str
    def __init__(self, forecast_json: _Optional[str] = ...) -> None: ...

class ListShadowProcessesRequest(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: str
    def __init__(self, device: _Optional[str] = ...) -> None: ...

class ListShadowProcessesResponse(_message.Message):
    __slots__ = ("answer_json",)
    ANSWER_JSON_FIELD_NUMBER: _ClassVar[int]
    answer_json: str
    def __init__(self, answer_json: _Optional[str] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets_json",)
    BUDGETS_JSON_FIELD_NUMBER: _ClassVar[int]
    budgets_json: str
    def __init__(self, budgets_json: _Optional[str] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class BudgetResponse(_message.Message):
    __slots__ = ("budget_json",)
    BUDGET_JSON_FIELD_NUMBER: _ClassVar[int]
    budget_json: str
    def __init__(self, budget_json: _Optional[str] = ...) -> None: ...

class CreateBudgetRequest(_message.Message):
    __slots__ = ("document_json",)
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    document_json: str
    def __init__(self, document_json: _Optional[str] = ...) -> None: ...

class UpdateBudgetRequest(_message.Message):
    __slots__ = ("name", "document_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    document_json: str
    def __init__(self, name: _Optional[str] = ..., document_json: _Optional[str] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteBudgetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBudgetEventsRequest(_message.Message):
    __slots__ = ("budget", "since_unix_ns", "limit")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    budget: str
    since_unix_ns: int
    limit: int
    def __init__(self, budget: _Optional[str] = ..., since_unix_ns: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListBudgetEventsResponse(_message.Message):
    __slots__ = ("events_json",)
    EVENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    events_json: str
    def __init__(self, events_json: _Optional[str] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("webhook_id", "url", "created_unix_ns", "revoked")
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    url: str
    created_unix_ns: int
    revoked: bool
    def __init__(self, webhook_id: _Optional[str] = ..., url: _Optional[str] = ..., created_unix_ns: _Optional[int] = ..., revoked: bool = ...) -> None: ...

class ListWebhooksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWebhooksResponse(_message.Message):
    __slots__ = ("webhooks",)
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    webhooks: _containers.RepeatedCompositeFieldContainer[Webhook]
    def __init__(self, webhooks: _Optional[_Iterable[_Union[Webhook, _Mapping]]] = ...) -> None: ...

class AddWebhookRequest(_message.Message):
    __slots__ = ("url",)
    URL_FIELD_NUMBER: _ClassVar[int]
    url: str
    def __init__(self, url: _Optional[str] = ...) -> None: ...

class AddWebhookResponse(_message.Message):
    __slots__ = ("webhook", "secret")
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    webhook: Webhook
    secret: str
    def __init__(self, webhook: _Optional[_Union[Webhook, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class RevokeWebhookRequest(_message.Message):
    __slots__ = ("webhook_id",)
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    def __init__(self, webhook_id: _Optional[str] = ...) -> None: ...

class GetTagPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetTagPolicyRequest(_message.Message):
    __slots__ = ("policy_json",)
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    policy_json: str
    def __init__(self, policy_json: _Optional[str] = ...) -> None: ...

class TagPolicyResponse(_message.Message):
    __slots__ = ("policy_json",)
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    policy_json: str
    def __init__(self, policy_json: _Optional[str] = ...) -> None: ...

class GetDeviceTagsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SetDeviceTagsRequest(_message.Message):
    __slots__ = ("name", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeviceTagsResponse(_message.Message):
    __slots__ = ("device", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    device: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, device: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetUntaggedCostsRequest(_message.Message):
    __slots__ = ("month", "since_unix_ns", "until_unix_ns")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    month: str
    since_unix_ns: int
    until_unix_ns: int
    def __init__(self, month: _Optional[str] = ..., since_unix_ns: _Optional[int] = ..., until_unix_ns: _Optional[int] = ...) -> None: ...

class GetUntaggedCostsResponse(_message.Message):
    __slots__ = ("answer_json",)
    ANSWER_JSON_FIELD_NUMBER: _ClassVar[int]
    answer_json: str
    def __init__(self, answer_json: _Optional[str] = ...) -> None: ...

class GetChargebackRequest(_message.Message):
    __slots__ = ("month", "since_unix_ns", "until_unix_ns", "by")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    month: str
    since_unix_ns: int
    until_unix_ns: int
    by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, month: _Optional[str] = ..., since_unix_ns: _Optional[int] = ..., until_unix_ns: _Optional[int] = ..., by: _Optional[_Iterable[str]] = ...) -> None: ...

class GetChargebackResponse(_message.Message):
    __slots__ = ("answer_json", "csv")
    ANSWER_JSON_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    answer_json: str
    csv: str
    def __init__(self, answer_json: _Optional[str] = ..., csv: _Optional[str] = ...) -> None: ...

class ListWorkloadClassesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkloadClassesResponse(_message.Message):
    __slots__ = ("answer_json",)
    ANSWER_JSON_FIELD_NUMBER: _ClassVar[int]
    answer_json: str
    def __init__(self, answer_json: _Optional[str] = ...) -> None: ...

class SetWorkloadClassRequest(_message.Message):
    __slots__ = ("model", "criticality", "latency", "scaling")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    SCALING_FIELD_NUMBER: _ClassVar[int]
    model: str
    criticality: str
    latency: str
    scaling: str
    def __init__(self, model: _Optional[str] = ..., criticality: _Optional[str] = ..., latency: _Optional[str] = ..., scaling: _Optional[str] = ...) -> None: ...

class WorkloadClassResponse(_message.Message):
    __slots__ = ("class_json",)
    CLASS_JSON_FIELD_NUMBER: _ClassVar[int]
    class_json: str
    def __init__(self, class_json: _Optional[str] = ...) -> None: ...

class DeleteWorkloadClassRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class DeleteWorkloadClassResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKpisRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKpisResponse(_message.Message):
    __slots__ = ("answer_json",)
    ANSWER_JSON_FIELD_NUMBER: _ClassVar[int]
    answer_json: str
    def __init__(self, answer_json: _Optional[str] = ...) -> None: ...

class CreateKpiRequest(_message.Message):
    __slots__ = ("document_json",)
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    document_json: str
    def __init__(self, document_json: _Optional[str] = ...) -> None: ...

class KpiResponse(_message.Message):
    __slots__ = ("kpi_json",)
    KPI_JSON_FIELD_NUMBER: _ClassVar[int]
    kpi_json: str
    def __init__(self, kpi_json: _Optional[str] = ...) -> None: ...

class DeleteKpiRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteKpiResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetKpiReportRequest(_message.Message):
    __slots__ = ("since_unix_ns", "until_unix_ns", "granularity")
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    since_unix_ns: int
    until_unix_ns: int
    granularity: str
    def __init__(self, since_unix_ns: _Optional[int] = ..., until_unix_ns: _Optional[int] = ..., granularity: _Optional[str] = ...) -> None: ...

class GetModelRegistryRequest(_message.Message):
    __slots__ = ("active_days", "sprawl_versions", "model")
    ACTIVE_DAYS_FIELD_NUMBER: _ClassVar[int]
    SPRAWL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    active_days: int
    sprawl_versions: int
    model: str
    def __init__(self, active_days: _Optional[int] = ..., sprawl_versions: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class GetRightSizingRequest(_message.Message):
    __slots__ = ("model", "since_unix_ns", "until_unix_ns")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    model: str
    since_unix_ns: int
    until_unix_ns: int
    def __init__(self, model: _Optional[str] = ..., since_unix_ns: _Optional[int] = ..., until_unix_ns: _Optional[int] = ...) -> None: ...

class InsightReportResponse(_message.Message):
    __slots__ = ("answer_json",)
    ANSWER_JSON_FIELD_NUMBER: _ClassVar[int]
    answer_json: str
    def __init__(self, answer_json: _Optional[str] = ...) -> None: ...
