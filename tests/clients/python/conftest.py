"""Fixtures for the PyPI `realtime` client suite.

The server instances are described in tests/clients/servers.conf (shared with
the scripts and the JS suites); RT_<NAME>_PORT overrides a port.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from realtime import AsyncRealtimeClient

DEFAULT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
CONF = Path(os.environ.get("RT_SERVERS_CONF", Path(__file__).resolve().parent.parent / "servers.conf"))


def _instances() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for raw in CONF.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, port, *kv = line.split()
        env = dict(item.split("=", 1) for item in kv)
        port = os.environ.get(f"RT_{name.upper()}_PORT", port)
        out[name] = {"port": int(port), "env": env, "secret": env.get("API_JWT_SECRET", DEFAULT_SECRET)}
    return out


INSTANCES = _instances()
MAIN = INSTANCES["main"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims: dict[str, Any], secret: str = MAIN["secret"]) -> str:
    """HS256 JWT, hand-rolled."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"


def token(**extra: Any) -> str:
    now = int(time.time())
    return sign({"role": "anon", "iat": now, "exp": now + 3600, **extra})


def uniq(prefix: str = "py") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def wait_for(cond: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def make_client():
    """Factory for connected AsyncRealtimeClient instances, closed after the test."""
    clients: list[AsyncRealtimeClient] = []

    async def factory(tok: str | None = None, **kwargs: Any) -> AsyncRealtimeClient:
        url = f"ws://127.0.0.1:{MAIN['port']}/socket"
        client = AsyncRealtimeClient(url, token=tok or token(), auto_reconnect=False, max_retries=1, timeout=5, **kwargs)
        await client.connect()
        clients.append(client)
        return client

    yield factory
    for c in clients:
        try:
            await asyncio.wait_for(c.close(), 2)
        except Exception:
            pass


async def subscribe(channel) -> tuple[str, Exception | None]:
    """Subscribes and returns the first (state, error) the client reported."""
    seen: list[tuple[str, Exception | None]] = []
    await asyncio.wait_for(channel.subscribe(lambda state, err: seen.append((str(state.value if hasattr(state, "value") else state), err))), 8)
    await wait_for(lambda: len(seen) > 0, what="a subscribe state")
    return seen[0]
