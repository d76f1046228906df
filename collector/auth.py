"""Who may call what: bearer tokens in requests, and the roles the operators' APIs require.

Transport-neutral: the HTTP API (collector.http_api) and the gRPC services (collector.rpc)
turn a Denied into their own status: 401 / UNAUTHENTICATED when the caller is not known,
403 / PERMISSION_DENIED when it is known but its role does not allow the call.

Which role each operation needs is data (HTTP_ROLES, GRPC_ROLES); an operation missing from
them needs the admin role, so a route added without a decision is closed, not open.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from collector import tokens
from collector.credentials import AdminAuth
from collector.store import Store

# The scheme is case-insensitive (RFC 7235); a token is visible ASCII without spaces. Longer
# values are no token of ours: they are refused without being looked at further.
_BEARER = re.compile(r"(?i:bearer) +([\x21-\x7e]{1,512})")
MAX_AUTHORIZATION_CHARS = 600
PUBLIC = None

# HTTP route names (collector.http_api) -> the role they need; PUBLIC needs no token.
HTTP_ROLES: dict[str, str | None] = {
    "healthz": PUBLIC,
    "metrics": PUBLIC,
    "openapi": PUBLIC,
    # The dashboard's page and files hold no data: its API calls carry the token.
    "dashboard": PUBLIC,
    "dashboard_asset": PUBLIC,
    "costs": tokens.VIEWER,
    "devices": tokens.VIEWER,
    "device": tokens.VIEWER,
    "add_device": tokens.ADMIN,
    "rotate_device": tokens.ADMIN,
    "revoke_device": tokens.ADMIN,
    "price_books": tokens.VIEWER,
    "price_book": tokens.VIEWER,
    "create_price_book": tokens.ADMIN,
    "explain_record": tokens.VIEWER,
    "export_focus": tokens.VIEWER,
    "reprice": tokens.ADMIN,
    "prune": tokens.ADMIN,
    "forecasts": tokens.VIEWER,
    "budgets": tokens.VIEWER,
    "budget": tokens.VIEWER,
    "budget_events": tokens.VIEWER,
    "webhooks": tokens.VIEWER,
    "create_budget": tokens.ADMIN,
    "update_budget": tokens.ADMIN,
    "delete_budget": tokens.ADMIN,
    "add_webhook": tokens.ADMIN,
    "revoke_webhook": tokens.ADMIN,
    "workload_classes": tokens.VIEWER,
    "kpis": tokens.VIEWER,
    "kpi_report": tokens.VIEWER,
    "model_registry": tokens.VIEWER,
    "right_sizing": tokens.VIEWER,
    "set_workload_class": tokens.ADMIN,
    "delete_workload_class": tokens.ADMIN,
    "create_kpi": tokens.ADMIN,
    "delete_kpi": tokens.ADMIN,
    "shadow_processes": tokens.VIEWER,
    "tag_policy": tokens.VIEWER,
    "set_tag_policy": tokens.ADMIN,
    "device_tags": tokens.VIEWER,
    "set_device_tags": tokens.ADMIN,
    "untagged": tokens.VIEWER,
    "chargeback": tokens.VIEWER,
}
# infermeter.v1.Admin methods -> the role they need.
GRPC_ROLES: dict[str, str] = {
    "ListDevices": tokens.VIEWER,
    "GetDevice": tokens.VIEWER,
    "GetCosts": tokens.VIEWER,
    "ListPriceBooks": tokens.VIEWER,
    "GetPriceBook": tokens.VIEWER,
    "ExplainRecord": tokens.VIEWER,
    "AddDevice": tokens.ADMIN,
    "RotateDevice": tokens.ADMIN,
    "RevokeDevice": tokens.ADMIN,
    "CreatePriceBook": tokens.ADMIN,
    "Reprice": tokens.ADMIN,
    "PruneRecords": tokens.ADMIN,
    "GetForecast": tokens.VIEWER,
    "ListBudgets": tokens.VIEWER,
    "GetBudget": tokens.VIEWER,
    "ListBudgetEvents": tokens.VIEWER,
    "ListWebhooks": tokens.VIEWER,
    "CreateBudget": tokens.ADMIN,
    "UpdateBudget": tokens.ADMIN,
    "DeleteBudget": tokens.ADMIN,
    "AddWebhook": tokens.ADMIN,
    "RevokeWebhook": tokens.ADMIN,
    "ListWorkloadClasses": tokens.VIEWER,
    "ListKpis": tokens.VIEWER,
    "GetKpiReport": tokens.VIEWER,
    "GetModelRegistry": tokens.VIEWER,
    "GetRightSizing": tokens.VIEWER,
    "SetWorkloadClass": tokens.ADMIN,
    "DeleteWorkloadClass": tokens.ADMIN,
    "CreateKpi": tokens.ADMIN,
    "DeleteKpi": tokens.ADMIN,
    "ListShadowProcesses": tokens.VIEWER,
    "GetTagPolicy": tokens.VIEWER,
    "SetTagPolicy": tokens.ADMIN,
    "GetDeviceTags": tokens.VIEWER,
    "SetDeviceTags": tokens.ADMIN,
    "GetUntaggedCosts": tokens.VIEWER,
    "GetChargeback": tokens.VIEWER,
}


class Denied(Exception):
    """The call may not proceed. forbidden: the caller is known but lacks the role (403)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


def parse_bearer(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, or None if absent or malformed."""
    if not isinstance(value, str) or len(value) > MAX_AUTHORIZATION_CHARS:
        return None
    match = _BEARER.fullmatch(value)
    return match[1] if match else None


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of a gRPC call's one `authorization: Bearer <token>` entry, or None."""
    values = [value for key, value in metadata or () if key == "authorization"]
    if len(values) != 1:
        return None
    return parse_bearer(values[0])


def authorize_admin(store: Store, authorization: str | None, needed: str) -> AdminAuth:
    """The admin token an Authorization value carries, if its role grants `needed`; Denied
    otherwise. Blocking (the store may be asked): run it off the event loop."""
    if authorization is None:
        raise Denied("missing 'Authorization: Bearer <token>': this API needs an admin token (infermeter admin token add)")
    token = parse_bearer(authorization)
    if token is None:
        raise Denied("malformed Authorization: expected 'Bearer <token>' with a token of at most 512 visible ASCII characters")
    if token.startswith(tokens.TOKEN_PREFIX):
        raise Denied("a device token cannot call the admin API: use an admin token (infermeter admin token add)")
    auth = store.authenticate_admin(token)
    if auth is None:
        raise Denied("unknown admin token")
    if auth.revoked:
        raise Denied(f"admin token {auth.token_id} is revoked")
    if not tokens.role_grants(auth.role, needed):
        raise Denied(f"this needs the {needed} role; admin token {auth.token_id} has the {auth.role} role", forbidden=True)
    return auth
