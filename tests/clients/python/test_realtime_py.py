"""The PyPI `realtime` client (vsn 1.0.0 JSON) against the server:
connect, join, leave, broadcast self/ack, presence track/sync/leave, REST,
and a `realtime.send()` from the `pg` instance's database (Broadcast from
Database)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest
from realtime import AsyncRealtimeClient, RealtimeAcknowledgementStatus

from conftest import INSTANCES, sign, subscribe, token, uniq, wait_for


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


def _pg_psql(sql: str) -> str:
    """Runs `sql` on the `pg` instance's database with psql (its values come
    from servers.conf, `${DEV_DB_*}` from the environment the scripts set)."""
    env = {k: os.path.expandvars(v) for k, v in INSTANCES["pg"]["env"].items()}
    if "$" in env["DB_HOST"] + env["DB_PORT"]:
        pytest.skip("the dev database is not running (scripts/run-clients starts it)")
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
    psql = os.path.join(bindir, "psql") if bindir else "psql"
    url = f"postgres://{env['DB_USER']}:{env['DB_PASSWORD']}@{env['DB_HOST']}:{env['DB_PORT']}/{env['DB_NAME']}"
    out = subprocess.run([psql, url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def test_realtime_send_from_the_database_reaches_a_public_channel_with_meta_id():
    pg = INSTANCES["pg"]
    topic = uniq("pybfd")
    tok = sign({"role": "anon", "iat": int(time.time()), "exp": int(time.time()) + 3600}, pg["secret"])
    client = AsyncRealtimeClient(f"ws://127.0.0.1:{pg['port']}/socket", token=tok, auto_reconnect=False, max_retries=1, timeout=5)
    await client.connect()
    try:
        ch = client.channel(topic, {"config": {"private": False}})
        got: list[dict] = []
        ch.on_broadcast("from_db", got.append)
        assert (await subscribe(ch))[0] == "SUBSCRIBED"
        slot = f"realtime_messages_slot{pg['env'].get('SLOT_NAME_SUFFIX', '')}"
        deadline = time.monotonic() + 10
        while _pg_psql(f"select coalesce(bool_or(active), false) from pg_replication_slots where slot_name = '{slot}'") != "t":
            assert time.monotonic() < deadline, f"the messages slot {slot} is not streaming"
            await asyncio.sleep(0.05)
        # The topic is a fresh hex name: safe inside the literal.
        _pg_psql(f"select realtime.send('{{\"n\": 1}}'::jsonb, 'from_db', '{topic}', false)")
        row_id = _pg_psql(f"select id from realtime.messages where topic = '{topic}' and event = 'from_db'")
        await wait_for(lambda: len(got) == 1, timeout=8, what="the realtime.send() broadcast")
        assert got[0]["event"] == "from_db"
        assert got[0]["payload"] == {"n": 1, "id": row_id}
        assert got[0].get("meta") == {"id": row_id}
    finally:
        await asyncio.wait_for(client.close(), 2)
