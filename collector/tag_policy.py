"""The tag policy: the tags every record must carry, and the values each may take.

A policy document (JSON; TOML from the command line):

    {"required": {"department": ["ml", "search"], "project": [], "environment": ["prod", "dev"]}}

A tag with an empty list takes any value that is not empty. A record is *tagged* when it
carries every required tag with an allowed value, and *untagged* otherwise; each required tag
it fails is `missing` (absent, or empty) or `disallowed` (a value not in the list). With no
policy (version 0) every record is tagged.

Policies are versioned only for the record: each change adds a version, and a report applies
the newest version in force when the report is made to every record of its range, whenever
the record was made. Records are never re-tagged: a policy judges the tags records carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.record import (
    MAX_TAG_KEY_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
    InvalidRecord,
    check_text,
)

MISSING = "missing"
DISALLOWED = "disallowed"
# A report groups by every required tag: a few are plenty for a chargeback.
MAX_REQUIRED_TAGS = 16
MAX_ALLOWED_VALUES = 1000


class TagPolicyError(ValueError):
    """A policy document or a set of tags that cannot be used; `field` names the part at fault
    (a path such as `required.department.2`)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TagPolicy:
    """`required` maps each required tag to its allowed values (empty: any non-empty value)."""

    required: Mapping[str, frozenset[str]] = field(default_factory=dict)
    version: int = 0  # 0: no policy was ever set
    created_unix_ns: int = 0

    def violations(self, tags: Mapping[str, str]) -> dict[str, str]:
        """The required tags that `tags` fails, each MISSING or DISALLOWED (empty: tagged)."""
        failed = {}
        for key, allowed in self.required.items():
            value = tags.get(key) or ""
            if not value:
                failed[key] = MISSING
            elif allowed and value not in allowed:
                failed[key] = DISALLOWED
        return failed

    def document(self) -> dict:
        """The policy as a document that parse_policy reads back."""
        return {"required": {key: sorted(allowed) for key, allowed in sorted(self.required.items())}}

    def to_json(self) -> dict:
        return {"version": self.version, "created_unix_ns": self.created_unix_ns, **self.document()}


def parse_policy(document: object) -> TagPolicy:
    """A policy from its document; TagPolicyError naming the first fault."""
    if not isinstance(document, Mapping):
        raise TagPolicyError(None, "a tag policy must be a JSON object: {\"required\": {TAG: [VALUES]}}")
    unknown = sorted(set(document) - {"required"})
    if unknown:
        raise TagPolicyError(unknown[0], f"unknown field {unknown[0]!r} in the tag policy (expected: required)")
    required = document.get("required", {})
    if not isinstance(required, Mapping):
        raise TagPolicyError("required", "required must map each tag to a list of allowed values ([] for any)")
    if len(required) > MAX_REQUIRED_TAGS:
        raise TagPolicyError("required", f"at most {MAX_REQUIRED_TAGS} tags can be required, not {len(required)}")
    parsed = {}
    for key, values in required.items():
        check_tag_key(key, field=f"required.{key}")
        where = f"required.{key}"
        if not isinstance(values, list):
            raise TagPolicyError(where, f"{where} must be a list of allowed values ([] for any value)")
        if len(values) > MAX_ALLOWED_VALUES:
            raise TagPolicyError(where, f"{where} lists {len(values)} values; the limit is {MAX_ALLOWED_VALUES}")
        for index, value in enumerate(values):
            _check_value(value, field=f"{where}.{index}", required=True)
        if len(set(values)) != len(values):
            raise TagPolicyError(where, f"{where} lists a value more than once")
        parsed[key] = frozenset(values)
    return TagPolicy(parsed)


def check_tag_key(key: object, *, field: str) -> str:
    """A tag name that reports can group by."""
    try:
        check_text(field, key, MAX_TAG_KEY_CHARS, required=True)
    except InvalidRecord as err:
        raise TagPolicyError(field, f"the tag name {field!r} {err.reason}") from None
    # SQLite's JSON paths have no escape for a double quote inside a key (collector.reports).
    if '"' in key:
        raise TagPolicyError(field, f"the tag name {key!r} has a double quote, which reports cannot group by")
    return key


def check_tags(tags: object, policy: TagPolicy, *, field: str = "tags") -> dict[str, str]:
    """Default tags for a device: names and values as records carry them, at most MAX_TAGS, and
    allowed by `policy` where it lists values. TagPolicyError naming the first fault."""
    if not isinstance(tags, Mapping):
        raise TagPolicyError(field, f"{field} must be a JSON object of tag names to values")
    if len(tags) > MAX_TAGS:
        raise TagPolicyError(field, f"{field} has {len(tags)} tags; a record carries at most {MAX_TAGS}")
    checked = {}
    for key, value in tags.items():
        check_tag_key(key, field=f"{field}.{key}")
        _check_value(value, field=f"{field}.{key}", required=True)
        allowed = policy.required.get(key)
        if allowed and value not in allowed:
            raise TagPolicyError(
                f"{field}.{key}", f"{value!r} is not an allowed value of {key} (tag policy version "
                f"{policy.version} allows: {', '.join(sorted(allowed))})",
            )
        checked[key] = value
    return checked


def _check_value(value: object, *, field: str, required: bool) -> None:
    try:
        check_text(field, value, MAX_TEXT_CHARS, required=required)
    except InvalidRecord as err:
        raise TagPolicyError(field, f"{field}: {err.reason}") from None
