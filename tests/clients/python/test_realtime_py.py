"""The PyPI `realtime` client (vsn 1.0.0 JSON) against the server:
connect, join, leave, broadcast self/ack, presence track/sync/leave, REST."""

from __future__ import annotations

import asyncio

from realtime import RealtimeAcknowledgementStatus

from conftest import subscribe, token, uniq, wait_for


async def test_connect_join_and_leave(make_client):
    client = await make_client()
    assert client.is_connected
    states: list[str] = []
    channel = client.channel(uniq("join"))
    await channel.subscribe(lambda s, e: states.append(s.value))
    await wait_for(lambda: "SUBSCRIBED" in states, what="SUBSCRIBED")
    assert channel.is_joined
    await channel.unsubscribe()
    await wait_for(lambda: "CLOSED" in states, what="CLOSED after leave")
    assert channel.is_closed
    assert client.is_connected


async def test_join_error_reason_is_reported(make_client):
    client = await make_client()
    errors: list[Exception | None] = []
    channel = client.channel("")
    await channel.subscribe(lambda s, e: errors.append(e) if s.value == "CHANNEL_ERROR" else None)
    await wait_for(lambda: len(errors) > 0, what="CHANNEL_ERROR")
    assert "TopicNameRequired: You must provide a topic name" in str(errors[0])


async def _pair(make_client, topic: str, sender_cfg: dict, receiver_cfg: dict | None = None):
    a = await make_client()
    b = await make_client()
    ca = a.channel(topic, {"config": {"broadcast": sender_cfg, "presence": {"key": "", "enabled": False}, "private": False}})
    cb = b.channel(topic, {"config": {"broadcast": receiver_cfg or {}, "presence": {"key": "", "enabled": False}, "private": False}})
    got_a: list[dict] = []
    got_b: list[dict] = []
    ca.on_broadcast("*", got_a.append)
    cb.on_broadcast("*", got_b.append)
    assert (await subscribe(ca))[0] == "SUBSCRIBED"
    assert (await subscribe(cb))[0] == "SUBSCRIBED"
    return ca, cb, got_a, got_b


async def test_broadcast_self_true_and_ack(make_client):
    ca, cb, got_a, got_b = await _pair(make_client, uniq("bc"), {"self": True, "ack": True})
    acks: list[str] = []
    push = await ca.push("broadcast", {"type": "broadcast", "event": "greet", "payload": {"hello": "py", "n": [1, 2]}})
    push.receive(RealtimeAcknowledgementStatus.Ok, lambda _r: acks.append("ok"))
    push.receive(RealtimeAcknowledgementStatus.Error, lambda _r: acks.append("error"))
    await wait_for(lambda: len(got_b) == 1, what="delivery to the receiver")
    # (the client's pydantic model keeps only event/payload/meta of the frame payload)
    assert (got_b[0]["event"], got_b[0]["payload"]) == ("greet", {"hello": "py", "n": [1, 2]})
    await wait_for(lambda: len(got_a) == 1, what="self delivery (self=true)")
    assert got_a[0]["payload"] == {"hello": "py", "n": [1, 2]}
    await wait_for(lambda: acks == ["ok"], what="ack reply")


async def test_broadcast_self_false_excludes_sender(make_client):
    ca, cb, got_a, got_b = await _pair(make_client, uniq("bcself"), {"self": False, "ack": False})
    await ca.send_broadcast("only-others", {"x": 1})
    await wait_for(lambda: len(got_b) == 1, what="delivery to the receiver")
    assert got_b[0]["event"] == "only-others"
    await asyncio.sleep(0.4)
    assert got_a == []


async def test_broadcast_without_ack_gets_no_reply(make_client):
    ca, cb, got_a, got_b = await _pair(make_client, uniq("noack"), {"self": False, "ack": False})
    push = await ca.push("broadcast", {"type": "broadcast", "event": "e", "payload": {}}, timeout=1)
    outcomes: list[str] = []
    push.receive(RealtimeAcknowledgementStatus.Ok, lambda _r: outcomes.append("ok"))
    push.receive(RealtimeAcknowledgementStatus.Timeout, lambda: outcomes.append("timeout"))
    await wait_for(lambda: len(got_b) == 1, what="delivery")
    await wait_for(lambda: len(outcomes) > 0, timeout=3, what="push outcome")
    assert outcomes == ["timeout"], f"ack=false must not be replied to, got {outcomes}"


async def test_presence_track_sync_and_leave(make_client):
    topic = uniq("pres")
    a = await make_client()
    b = await make_client()
    ca = a.channel(topic, {"config": {"broadcast": {}, "presence": {"key": "alice", "enabled": True}, "private": False}})
    cb = b.channel(topic, {"config": {"broadcast": {}, "presence": {"key": "bob", "enabled": True}, "private": False}})
    joins: list[tuple[str, list]] = []
    leaves: list[tuple[str, list]] = []
    syncs: list[int] = []
    cb.on_presence_join(lambda key, cur, new: joins.append((key, new)))
    cb.on_presence_leave(lambda key, cur, left: leaves.append((key, left)))
    cb.on_presence_sync(lambda: syncs.append(1))
    ca.on_presence_sync(lambda: None)
    assert (await subscribe(ca))[0] == "SUBSCRIBED"
    assert (await subscribe(cb))[0] == "SUBSCRIBED"
    await wait_for(lambda: len(syncs) > 0, what="presence_state sync on bob")

    await ca.track({"user": "alice", "online_at": 1})
    await wait_for(lambda: any(k == "alice" for k, _ in joins), what="alice join on bob")
    key, new = next(j for j in joins if j[0] == "alice")
    assert [{k: v for k, v in p.items() if k != "presence_ref"} for p in new] == [{"user": "alice", "online_at": 1}]
    assert isinstance(new[0]["presence_ref"], str) and len(new[0]["presence_ref"]) == 16
    state = cb.presence_state()
    assert list(state.keys()) == ["alice"]

    await ca.untrack()
    await wait_for(lambda: any(k == "alice" for k, _ in leaves), what="alice leave on bob")
    await wait_for(lambda: "alice" not in cb.presence_state(), what="alice removed from bob's state")


async def test_presence_state_for_late_joiner_and_leave_on_disconnect(make_client):
    topic = uniq("late")
    a = await make_client()
    ca = a.channel(topic, {"config": {"broadcast": {}, "presence": {"key": "alice", "enabled": True}, "private": False}})
    ca.on_presence_sync(lambda: None)
    assert (await subscribe(ca))[0] == "SUBSCRIBED"
    await ca.track({"user": "alice"})
    await asyncio.sleep(0.2)

    b = await make_client()
    cb = b.channel(topic, {"config": {"broadcast": {}, "presence": {"key": "bob", "enabled": True}, "private": False}})
    leaves: list[str] = []
    cb.on_presence_leave(lambda key, cur, left: leaves.append(key))
    assert (await subscribe(cb))[0] == "SUBSCRIBED"
    await wait_for(lambda: "alice" in cb.presence_state(), what="alice in the late joiner's presence_state")
    assert cb.presence_state()["alice"][0]["user"] == "alice"

    await a.close()
    await wait_for(lambda: "alice" in leaves, timeout=5, what="leave of alice after her socket closed")


async def test_http_send_reaches_subscriber(make_client):
    topic = uniq("http")
    b = await make_client()
    cb = b.channel(topic)
    got: list[dict] = []
    cb.on_broadcast("rest", got.append)
    assert (await subscribe(cb))[0] == "SUBSCRIBED"
    a = await make_client()
    await a.channel(topic).http_send("rest", {"via": "http"})
    await wait_for(lambda: len(got) == 1, what="REST broadcast")
    assert (got[0]["event"], got[0]["payload"]) == ("rest", {"via": "http"})


async def test_set_auth_keeps_channel_working(make_client):
    topic = uniq("auth")
    a = await make_client()
    ca = a.channel(topic, {"config": {"broadcast": {"self": True, "ack": True}, "presence": {"key": "", "enabled": False}, "private": False}})
    got: list[dict] = []
    ca.on_broadcast("after", got.append)
    assert (await subscribe(ca))[0] == "SUBSCRIBED"
    await a.set_auth(token(sub="someone"))
    await asyncio.sleep(0.3)
    assert ca.is_joined
    await ca.send_broadcast("after", {"ok": True})
    await wait_for(lambda: len(got) == 1, what="broadcast after set_auth")
