#!/usr/bin/env python3
"""A chat business for netsvr: rooms, private messages, nicknames, a kick.

Browsers talk websocket to the gateway; every message they send reaches us as a Transfer event
(with the sender's uniqId, customerId and topics: the gateway keeps that state, so this business
keeps none). We answer with task commands. The chat page itself (static/) is served here too.

Browser -> business messages are JSON objects; the `type` picks what happens:
  nick {nick}          ConnInfoUpdate: the nickname becomes the connection's customerId
  join {room}          TopicSubscribe (a room is a topic), then TopicPublish "alice joined"
  leave {room}         TopicUnsubscribe, then TopicPublish "alice left"
  say {room, text}     TopicPublish to the room
  who {room}           TopicCustomerIdList (request/response), answered with SingleCast
  pm {to, text}        SingleCastByCustomerId to every connection of that nickname
  kick {nick}          ForceOfflineByCustomerId: the business closes that user's connections

Run: python3 examples/chat/chat_business.py --gateway-config etc/netsvr.toml --listen 127.0.0.1:6080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import tomllib
from pathlib import Path

from aiohttp import web

from netsvr_link import TaskLink, WorkerLink, pb

STATIC = Path(__file__).resolve().parent / "static"
NICK = re.compile(r"^[\w.-]{1,24}$")
ROOM = re.compile(r"^[\w.-]{1,32}$")
log = logging.getLogger("chat")


def data(**fields) -> bytes:
    """A message to browsers: JSON bytes for the `data` field of a command."""
    return json.dumps(fields).encode()


class Chat:
    def __init__(self, task: TaskLink):
        self.task = task

    async def to(self, uniq_id: str, /, **fields) -> None:
        await self.task.send("SingleCast", pb("SingleCast")(uniqId=uniq_id, data=data(**fields)))

    async def publish(self, room: str, /, **fields) -> None:
        await self.task.send("TopicPublish", pb("TopicPublish")(topics=[room], data=data(**fields)))

    # ---- events from the gateway -------------------------------------------------------------

    async def on_open(self, ev) -> None:
        await self.to(ev.uniqId, type="welcome", uniqId=ev.uniqId)

    async def on_close(self, ev) -> None:
        for room in ev.topics:  # what the connection had when it closed
            await self.publish(room, type="system", room=room,
                               text=f"{ev.customerId or 'a guest'} left (disconnected)")

    async def on_message(self, ev) -> None:
        try:
            msg = json.loads(ev.data)
            handler = getattr(self, "cmd_" + str(msg.get("type")), None)
        except (ValueError, AttributeError):
            handler = None
        if handler is None:
            await self.to(ev.uniqId, type="error", text="unknown message")
            return
        nick = ev.customerId
        if not nick and handler != self.cmd_nick:
            await self.to(ev.uniqId, type="error", text="pick a nickname first")
            return
        await handler(ev, nick, msg)

    # ---- what the browser asks for -------------------------------------------------------------

    async def cmd_nick(self, ev, _nick, msg) -> None:
        nick = str(msg.get("nick", ""))
        if not NICK.match(nick):
            await self.to(ev.uniqId, type="error", text="a nickname is 1-24 letters, digits, . _ -")
            return
        await self.task.send("ConnInfoUpdate", pb("ConnInfoUpdate")(
            uniqId=ev.uniqId, newCustomerId=nick, data=data(type="nick", nick=nick)))

    async def cmd_join(self, ev, nick, msg) -> None:
        room = str(msg.get("room", ""))
        if not ROOM.match(room):
            await self.to(ev.uniqId, type="error", text="a room name is 1-32 letters, digits, . _ -")
            return
        await self.task.send("TopicSubscribe", pb("TopicSubscribe")(
            uniqId=ev.uniqId, topics=[room], data=data(type="joined", room=room)))
        await self.publish(room, type="system", room=room, text=f"{nick} joined")

    async def cmd_leave(self, ev, nick, msg) -> None:
        room = str(msg.get("room", ""))
        await self.task.send("TopicUnsubscribe", pb("TopicUnsubscribe")(
            uniqId=ev.uniqId, topics=[room], data=data(type="left", room=room)))
        await self.publish(room, type="system", room=room, text=f"{nick} left")

    async def cmd_say(self, ev, nick, msg) -> None:
        room, text = str(msg.get("room", "")), str(msg.get("text", ""))[:2000]
        if room not in ev.topics:
            await self.to(ev.uniqId, type="error", text=f"join {room} first")
        elif text:
            await self.publish(room, type="message", room=room, nick=nick, text=text)

    async def cmd_who(self, ev, _nick, msg) -> None:
        room = str(msg.get("room", ""))
        resp = await self.task.request("TopicCustomerIdList",
                                       pb("TopicCustomerIdListReq")(topics=[room]),
                                       "TopicCustomerIdListResp")
        members = sorted(resp.items[room].customerIds) if room in resp.items else []
        await self.to(ev.uniqId, type="who", room=room, members=members)

    async def cmd_pm(self, ev, nick, msg) -> None:
        to, text = str(msg.get("to", "")), str(msg.get("text", ""))[:2000]
        if not (NICK.match(to) and text):
            return
        await self.task.send("SingleCastByCustomerId", pb("SingleCastByCustomerId")(
            customerId=to, data=data(type="pm", nick=nick, to=to, text=text)))
        if to != nick:  # the sender sees what it sent
            await self.to(ev.uniqId, type="pm", nick=nick, to=to, text=text)

    async def cmd_kick(self, _ev, nick, msg) -> None:
        who = str(msg.get("nick", ""))
        # The gateway sends the data frame, then closes with 1008 "forceOfflineByCustomerId".
        await self.task.send("ForceOfflineByCustomerId", pb("ForceOfflineByCustomerId")(
            customerIds=[who], data=data(type="kicked", by=nick)))


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def page_config(gateway: dict) -> dict:
    """What the page needs to reach the gateway (its host is the page's own when unset)."""
    customer = gateway.get("Customer", {})
    host, port = host_port(customer.get("ListenAddress", "127.0.0.1:6060"))
    return {"wsPort": port, "wsPath": customer.get("HandlePattern", "/netsvr"),
            "wsScheme": "wss" if customer.get("TLSCertFile") else "ws",
            "heartbeat": customer.get("HeartbeatMessage", "~6YOt5rW35piO~")}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateway-config", required=True, help="the gateway's netsvr.toml")
    ap.add_argument("--listen", default="127.0.0.1:6080", help="host:port of the chat page")
    args = ap.parse_args()
    gateway = tomllib.loads(Path(args.gateway_config).read_text())
    worker_host, worker_port = host_port(gateway.get("Worker", {}).get("ListenAddress", "127.0.0.1:6061"))
    task_host, task_port = host_port(gateway.get("Task", {}).get("ListenAddress", "127.0.0.1:6062"))
    beat = gateway.get("Worker", {}).get("HeartbeatMessage", "~6YOt5rW35piO~").encode()
    task_beat = gateway.get("Task", {}).get("HeartbeatMessage", "~6YOt5rW35piO~").encode()

    chat = Chat(TaskLink(task_host, task_port, task_beat))
    worker = WorkerLink(worker_host, worker_port, beat, {
        "ConnOpen": chat.on_open, "ConnClose": chat.on_close, "Transfer": chat.on_message})

    app = web.Application()
    config = page_config(gateway)
    app.router.add_get("/config.json", lambda _r: web.json_response(config))
    app.router.add_get("/", lambda _r: web.FileResponse(STATIC / "index.html"))
    app.router.add_static("/", STATIC)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = host_port(args.listen)
    await web.TCPSite(runner, host, port).start()
    log.info("chat page on http://%s:%d/", host, port)
    try:
        await worker.run_forever()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chat: %(message)s")
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass  # Ctrl-C: the links close with the process
