"""Device token rotation, end to end: an operator starts it (HTTP or gRPC Admin), the device's
next push with its old token gets the new one in the reply, both tokens work until the device
first pushes with the new one, which retires the old one. Every retry and every replica hands
over the same new token; revoking the device refuses both. The database never holds a token,
only SHA-256 digests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
import sqlalchemy as sa
from infermeter.v1 import admin_pb2, admin_pb2_grpc, ingest_pb2_grpc

from collector import tokens
from collector.credentials import RotationRefused
from collector.schema import device_rotations, device_tokens
from collector.store import Store
from tests.collector.databases import run_together, store_url  # noqa: F401
from tests.collector.helpers import bearer, bearer_metadata, make_record, push_request


class Device:
    """A device pushing one record a push, over a real channel, with whichever token it is given."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._push = ingest_pb2_grpc.IngestStub(channel).Push
        self.seq = 0

    def push(self, token: str, *, seq: int | None = None):
        """Push record `seq` (the next one by default); the reply."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        return self._push(push_request([make_record(seq)]), metadata=bearer_metadata(token), timeout=10)

    def refused(self, token: str) -> grpc.StatusCode:
        """Push the next record, expecting a refusal; its status."""
        with pytest.raises(grpc.RpcError) as caught:
            self.push(token, seq=self.seq + 1)
        return caught.value.code()


@pytest.fixture
def edge(store):
    return store.add_device("edge-1")


def rotate_over_http(servers, admin_token: str, name: str) -> dict:
    request = urllib.request.Request(
        f"{servers.http_url}/api/v1/devices/{name}/rotate", method="POST", headers=bearer(admin_token)
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def stored_digests(store: Store, device_id: str) -> set[str]:
    with store.engine.connect() as connection:
        return set(connection.execute(
            sa.select(device_tokens.c.token_sha256).where(device_tokens.c.device_id == device_id)
        ).scalars())


def test_without_a_rotation_replies_carry_no_token(channel, edge):
    assert Device(channel).push(edge.token).new_token == ""


def test_rotation_end_to_end(servers, channel, store, edge, admin_token):
    device = Device(channel)
    old = edge.token
    device.push(old)

    assert rotate_over_http(servers, admin_token, "edge-1")["rotating"] is True

    # The next push with the old token gets the new one; so do retries, and later pushes.
    new = device.push(old).new_token
    assert new.startswith(tokens.TOKEN_PREFIX) and new != old
    retry = device.push(old, seq=device.seq)
    assert (retry.new_token, retry.inserted, retry.duplicates) == (new, 0, 1)
    assert device.push(old).new_token == new
    assert stored_digests(store, edge.device_id) == {tokens.token_sha256(old), tokens.token_sha256(new)}
    assert store.device("edge-1").rotating

    # The first push with the new token retires the old one.
    assert device.push(new).new_token == ""
    assert device.refused(old) is grpc.StatusCode.UNAUTHENTICATED
    assert device.push(new).new_token == ""

    assert stored_digests(store, edge.device_id) == {tokens.token_sha256(new)}
    now = store.device("edge-1")
    assert (now.rotating, now.records) == (False, device.seq)  # every record once, whichever token


def test_a_device_can_be_rotated_again(channel, store, edge):
    device = Device(channel)
    token = edge.token
    seen = {token}
    for _ in range(3):
        store.rotate_device(edge.device_id)
        token = device.push(token).new_token
        device.push(token)
        seen.add(token)

    assert len(seen) == 4
    assert stored_digests(store, edge.device_id) == {tokens.token_sha256(token)}


def test_no_new_token_exists_until_it_is_handed_over(channel, store, edge):
    """Until a push with the old token the rotation holds only a nonce; the new token is derived
    from it and the old token then."""
    store.rotate_device(edge.device_id)

    assert stored_digests(store, edge.device_id) == {tokens.token_sha256(edge.token)}
    with store.engine.connect() as connection:
        (row,) = connection.execute(sa.select(device_rotations)).all()
    assert (row.old_token_sha256, row.new_token_sha256) == (tokens.token_sha256(edge.token), None)
    assert Device(channel).push(edge.token).new_token == tokens.rotated_token(edge.token, row.nonce)


def test_grpc_rotate_then_revoke_refuses_both_tokens(servers, channel, store, edge, admin_token):
    admin = admin_pb2_grpc.AdminStub(channel)
    metadata = bearer_metadata(admin_token)
    device = Device(channel)
    admin.RotateDevice(admin_pb2.RotateDeviceRequest(name="edge-1"), metadata=metadata, timeout=10)
    new = device.push(edge.token).new_token

    revoked = admin.RevokeDevice(admin_pb2.RevokeDeviceRequest(name=edge.device_id), metadata=metadata, timeout=10)

    assert (revoked.revoked, revoked.rotating) == (True, False)
    assert device.refused(edge.token) is grpc.StatusCode.PERMISSION_DENIED
    assert device.refused(new) is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as caught:
        admin.RotateDevice(admin_pb2.RotateDeviceRequest(name="edge-1"), metadata=metadata, timeout=10)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert store.device("edge-1").records == 1


def test_http_rotating_twice_is_a_conflict(servers, edge, admin_token):
    rotate_over_http(servers, admin_token, "edge-1")

    with pytest.raises(urllib.error.HTTPError) as caught:
        rotate_over_http(servers, admin_token, "edge-1")

    assert caught.value.code == 409
    assert json.load(caught.value)["code"] == "conflict"


# Replicas: several stores over one database (SQLite and PostgreSQL)


@pytest.fixture
def replicas(store_url):
    """Three stores over one database, without token caches: each call sees the database as
    it is, as it would once another replica's change outlived the cache (auth_cache_ttl_s)."""
    stores = [Store.open(store_url, auth_cache_ttl_s=0) for _ in range(3)]
    yield stores
    for store in stores:
        store.close()


def hand_over(store: Store, token: str) -> str:
    """What a replica does after a push made with `token`: the new token it hands over, or ""."""
    auth = store.authenticate(token)
    assert auth is not None and not auth.revoked
    return store.advance_rotation(auth, token)


def test_every_replica_hands_over_the_same_token(replicas):
    first = replicas[0]
    edge = first.add_device("edge-1")
    first.rotate_device(edge.device_id)

    handed = [hand_over(replica, edge.token) for replica in replicas]
    handed += run_together([lambda replica=replica: hand_over(replica, edge.token) for replica in replicas])

    assert len(set(handed)) == 1 and handed[0].startswith(tokens.TOKEN_PREFIX)
    assert stored_digests(first, edge.device_id) == {tokens.token_sha256(edge.token), tokens.token_sha256(handed[0])}
    # Any replica retires the old token at the first push with the new one.
    assert hand_over(replicas[2], handed[0]) == ""
    assert stored_digests(first, edge.device_id) == {tokens.token_sha256(handed[0])}
    assert first.authenticate(edge.token) is None


def test_concurrent_rotations_start_one(replicas):
    edge = replicas[0].add_device("edge-1")

    def rotate(replica: Store) -> str:
        try:
            replica.rotate_device(edge.device_id)
        except RotationRefused:
            return "refused"
        return "started"

    outcomes = run_together([lambda replica=replica: rotate(replica) for replica in replicas])

    assert sorted(outcomes) == ["refused", "refused", "started"]


def test_a_rotation_racing_a_revocation_leaves_the_device_revoked_and_not_rotating(replicas):
    edge = replicas[0].add_device("edge-1")

    def rotate() -> None:
        try:
            replicas[0].rotate_device(edge.device_id)
        except RotationRefused:  # the revocation came first
            pass

    run_together([rotate, lambda: replicas[1].revoke_device(edge.device_id)])

    now = replicas[2].device("edge-1")
    assert (now.revoked, now.rotating) == (True, False)


def test_rotating_a_revoked_or_unknown_device_is_refused(replicas):
    store = replicas[0]
    edge = store.add_device("edge-1")
    store.revoke_device(edge.device_id)

    with pytest.raises(RotationRefused, match="revoked"):
        store.rotate_device(edge.device_id)
    with pytest.raises(KeyError):
        store.rotate_device("dev_0000000000000000")
