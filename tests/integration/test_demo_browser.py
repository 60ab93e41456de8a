"""The chat demo (examples/chat/) and the master's status page, driven in headless chromium as a
person would use them: two pages chat in a room, one sends a private message, one is forced
offline by the business; the status page counts the clients and charts them. Assertions are on
the DOM, through the DevTools protocol (tests/integration/cdp.py).

NETSVR_SCREENSHOTS=<dir> also saves chat.png and status.png there (`make demo-screenshots`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import netsvr_harness as h
from cdp import Browser, find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="chromium is not installed (scripts/install-deps.sh installs it)")

CHAT = h.REPO_ROOT / "examples" / "chat" / "chat_business.py"


@pytest.fixture
def demo(gateway_factory, tmp_path):
    """A gateway with its status page, and the chat business registered on it."""
    status_port, chat_port = h.free_ports(2)
    gw = gateway_factory({"LogLevel": "info",
                          "Metrics": {"ListenAddress": f"127.0.0.1:{status_port}"}})
    log = open(tmp_path / "chat.log", "wb")
    biz = subprocess.Popen([sys.executable, str(CHAT), "--gateway-config", str(gw.config_path),
                            "--listen", f"127.0.0.1:{chat_port}"],
                           env={**os.environ, "NETSVR_PROTO_PY": h.PROTO_PY_DIR},
                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        h.wait_for(lambda: biz.poll() is None and h.port_accepts(chat_port)
                   and sum(w.get("links", 0) for w in gw.status()["workers"]) == 1, 10,
                   message=lambda: "the chat business to serve its page and register: "
                                   + (tmp_path / "chat.log").read_text(errors="replace")[-1500:])
        yield gw, f"http://127.0.0.1:{chat_port}/", f"http://127.0.0.1:{status_port}/"
    finally:
        biz.terminate()
        biz.wait(10)
        log.close()
        # shown by pytest only when the test failed
        print("--- chat business log ---\n" + (tmp_path / "chat.log").read_text(errors="replace")[-3000:])


def status_json(status_url: str) -> dict:
    with urllib.request.urlopen(status_url + "status.json", timeout=5) as r:
        return json.loads(r.read())


async def submit(page, form: str, **inputs: str) -> None:
    """Types into the form's inputs and submits it, as a person pressing Enter would."""
    js = "".join(f"document.getElementById({json.dumps(k.replace('_', '-'))}).value = {json.dumps(v)};"
                 for k, v in inputs.items())
    await page.eval(js + f"document.getElementById({json.dumps(form)}).requestSubmit(); true")


def has_message(kind: str, text: str) -> str:
    """JS: a message of that kind whose text contains `text` is shown."""
    return (f"[...document.querySelectorAll('#messages .msg[data-type^={json.dumps(kind)}]')]"
            f".some((m) => m.textContent.includes({json.dumps(text)}))")


def members(page) -> str:
    return "[...document.querySelectorAll('#members li')].map((li) => li.dataset.nick).join(',')"


STATE = "document.getElementById('state').dataset"


async def scenario(gw, chat_url: str, status_url: str, workdir: Path, shots: str | None) -> None:
    async with Browser.launch(workdir) as browser:
        alice = await browser.new_page(chat_url)
        bob = await browser.new_page(chat_url)
        for page in (alice, bob):
            await page.wait(f"{STATE}.state === 'connected'", what="the page to connect")
        status = await browser.new_page(status_url)
        await status.wait("document.getElementById('total-clients').textContent === '2'",
                          what="the status page to count 2 clients")

        # nicknames (ConnInfoUpdate) and a room (TopicSubscribe)
        await submit(alice, "nick-form", nick_input="alice")
        await submit(bob, "nick-form", nick_input="bob")
        await alice.wait("document.getElementById('me').textContent === 'alice'")
        await bob.wait("document.getElementById('me').textContent === 'bob'")
        for page in (alice, bob):
            await submit(page, "join-form", room_input="lobby")
        # who is in the room (TopicCustomerIdList), refreshed when someone joins
        await alice.wait(f"{members(alice)} === 'alice,bob'", what="alice,bob in lobby")
        await bob.wait(f"{members(bob)} === 'alice,bob'", what="alice,bob in lobby")

        # messages to the room (TopicPublish), both ways
        await submit(alice, "say-form", say_input="hello from alice")
        await bob.wait(has_message("message", "hello from alice"))
        await submit(bob, "say-form", say_input="hi alice, bob here")
        await alice.wait(has_message("message", "hi alice, bob here"))

        # a reload replaces the workers: nobody is disconnected, the chat goes on
        cp = gw.cli("reload", timeout=30)
        assert cp.returncode == 0, cp.stderr
        await submit(alice, "say-form", say_input="after the reload")
        await bob.wait(has_message("message", "after the reload"))
        for page in (alice, bob):
            assert await page.eval(f"{STATE}.state + '/' + {STATE}.connects") == "connected/1"

        # a private message (SingleCastByCustomerId) reaches bob only
        await submit(alice, "pm-form", pm_to="bob", pm_text="psst, private")
        await bob.wait(has_message("pm", "psst, private"))
        await alice.wait(has_message("pm", "psst, private"))  # the sender's own copy
        assert not await alice.eval(has_message("message", "psst"))

        # alice kicks bob: the business forces him offline (ForceOfflineByCustomerId)
        await alice.eval("document.querySelector('#members li[data-nick=\"bob\"] .kick').click(); true")
        await bob.wait(f"{STATE}.state === 'offline'", what="bob's page to show he is offline")
        await bob.wait(has_message("kicked", "alice made the business force you offline"))
        await alice.wait(has_message("system", "bob left (disconnected)"))
        await alice.wait(f"{members(alice)} === 'alice'", what="only alice left in lobby")

        # the status page follows: one client, a chart with data
        await status.wait("document.getElementById('total-clients').textContent === '1'",
                          what="the status page to count 1 client")
        points = await status.wait("+document.getElementById('chart-clients').dataset.points >= 2 &&"
                                   " document.querySelectorAll('#chart-clients polyline').length",
                                   what="the clients chart to have data")
        assert points == 1
        workers = await status.eval("document.querySelectorAll('#generations tr.worker').length")
        assert workers >= gw.workers  # the new generation, plus the old one while it drains
        st = status_json(status_url)
        assert st["totals"]["clients"] == 1
        assert max(st["history"]["clients"]) == 2  # the chart's data saw both
        assert "[Metrics]" in await status.eval("document.getElementById('config').textContent")

        if shots:
            await alice.screenshot(Path(shots) / "chat.png")
            await status.screenshot(Path(shots) / "status.png")


def test_chat_and_status_pages_in_chromium(demo, tmp_path):
    gw, chat_url, status_url = demo
    shots = os.environ.get("NETSVR_SCREENSHOTS")
    asyncio.run(asyncio.wait_for(scenario(gw, chat_url, status_url, tmp_path, shots), 50))
