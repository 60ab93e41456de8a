// The chat page: one websocket to the gateway, JSON messages both ways (see chat_business.py).
"use strict";
const $ = (id) => document.getElementById(id);
const state = {ws: null, me: "", rooms: new Set(), current: "", connects: 0, kicked: false, config: null};

function setState(name, text) {
  $("state").dataset.state = name;
  $("state").textContent = text;
}

function show(cls, parts, room) {
  const div = document.createElement("div");
  div.className = `msg ${cls}`;
  div.dataset.type = cls;
  if (room) div.dataset.room = room;
  for (const [c, t] of parts) {
    const span = document.createElement("span");
    if (c) span.className = c;
    span.textContent = t;
    div.append(span);
  }
  $("messages").append(div);
  div.scrollIntoView({block: "end"});
}

function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
}

function renderRooms() {
  const ul = $("rooms"), select = $("say-room");
  ul.replaceChildren();
  select.replaceChildren();
  for (const room of [...state.rooms].sort()) {
    const li = document.createElement("li");
    li.dataset.room = room;
    li.className = room === state.current ? "current" : "";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `# ${room}`;
    name.onclick = () => { state.current = room; renderRooms(); send({type: "who", room}); };
    const leave = document.createElement("button");
    leave.className = "small leave";
    leave.textContent = "leave";
    leave.onclick = () => send({type: "leave", room});
    li.append(name, leave);
    ul.append(li);
    select.append(new Option(`# ${room}`, room, false, room === state.current));
  }
  $("members-room").textContent = state.current || "–";
}

function renderMembers(room, members) {
  if (room !== state.current) return;
  const ul = $("members");
  ul.replaceChildren();
  for (const nick of members) {
    const li = document.createElement("li");
    li.dataset.nick = nick;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = nick === state.me ? `${nick} (you)` : nick;
    name.onclick = () => { $("pm-to").value = nick; $("pm-text").focus(); };
    li.append(name);
    if (nick !== state.me) {
      const kick = document.createElement("button");
      kick.className = "small kick";
      kick.textContent = "kick";
      kick.onclick = () => send({type: "kick", nick});
      li.append(kick);
    }
    ul.append(li);
  }
}

function onMessage(msg) {
  switch (msg.type) {
    case "welcome":
      setState("connected", `connected · ${msg.uniqId}`);
      if (state.me) send({type: "nick", nick: state.me});  // after a reconnection
      for (const room of state.rooms) send({type: "join", room});
      break;
    case "nick":
      state.me = msg.nick;
      $("me").textContent = msg.nick;
      break;
    case "joined":
      state.rooms.add(msg.room);
      state.current = msg.room;
      renderRooms();
      send({type: "who", room: msg.room});
      break;
    case "left":
      state.rooms.delete(msg.room);
      if (state.current === msg.room) state.current = [...state.rooms][0] || "";
      renderRooms();
      if (state.current) send({type: "who", room: state.current}); else $("members").replaceChildren();
      break;
    case "message":
      show(msg.nick === state.me ? "message mine" : "message",
           [["where", `#${msg.room}`], ["who", msg.nick], ["text", msg.text]], msg.room);
      break;
    case "system":
      show("system", [["text", `#${msg.room}: ${msg.text}`]], msg.room);
      if (msg.room === state.current) send({type: "who", room: msg.room});
      break;
    case "who":
      renderMembers(msg.room, msg.members);
      break;
    case "pm":
      show("pm", [["where", msg.nick === state.me ? `private to ${msg.to}` : "private"],
                  ["who", msg.nick], ["text", msg.text]]);
      break;
    case "kicked":
      state.kicked = true;
      show("kicked", [["text", `${msg.by} made the business force you offline`]]);
      break;
    case "error":
      show("error", [["text", msg.text]]);
      break;
  }
}

function connect() {
  const c = state.config;
  const ws = new WebSocket(`${c.wsScheme}://${location.hostname}:${c.wsPort}${c.wsPath}`);
  state.ws = ws;
  setState("connecting", "connecting…");
  ws.onopen = () => { state.connects += 1; $("state").dataset.connects = String(state.connects); };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") onMessage(JSON.parse(e.data));
    else e.data.text().then((t) => onMessage(JSON.parse(t)));  // SendMessageType = 2 (binary)
  };
  ws.onclose = (e) => {
    state.ws = null;
    if (state.kicked || e.code === 1008) {
      setState("offline", `offline: forced by the business (${e.code} ${e.reason})`);
      return;  // a kick is final; reload the page to come back
    }
    setState("reconnecting", `disconnected (${e.code}); reconnecting…`);
    setTimeout(connect, 2000);
  };
}

$("nick-form").onsubmit = (e) => {
  e.preventDefault();
  send({type: "nick", nick: $("nick-input").value.trim()});
};
$("join-form").onsubmit = (e) => {
  e.preventDefault();
  const room = $("room-input").value.trim();
  if (room) send({type: "join", room});
  $("room-input").value = "";
};
$("say-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("say-input").value;
  if (text && state.current) send({type: "say", room: $("say-room").value || state.current, text});
  $("say-input").value = "";
};
$("say-room").onchange = () => { state.current = $("say-room").value; renderRooms(); send({type: "who", room: state.current}); };
$("pm-form").onsubmit = (e) => {
  e.preventDefault();
  const to = $("pm-to").value.trim(), text = $("pm-text").value;
  if (to && text) send({type: "pm", to, text});
  $("pm-text").value = "";
};
$("who-button").onclick = () => { if (state.current) send({type: "who", room: state.current}); };

// The gateway closes a client that sends nothing for HeartbeatInterval: send its heartbeat.
setInterval(() => { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(state.config.heartbeat); }, 30000);

fetch("config.json").then((r) => r.json()).then((c) => { state.config = c; connect(); })
  .catch((e) => setState("offline", `cannot load config.json: ${e.message}`));
