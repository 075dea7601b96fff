// pgpchat web: the single page. It speaks the core's JSON-RPC (docs/ipc.md) on the WebSocket of
// `pgpchat web`; every string from a peer goes into the page as text (textContent), never as
// HTML, and names and bodies are isolated for bidi (<bdi>, dir="auto").
"use strict";

const HISTORY_PAGE = 50;
// The session's key (docs/web.md): given once by the login redirect in the URL's fragment, kept in
// this origin's storage (another port of this machine cannot read it, though it may see the
// cookie), offered with the cookie when the WebSocket opens.
const KEY_ITEM = "pgpchat-key";
{
  const m = location.hash.match(/^#key=([0-9a-f]{64})$/);
  if (m) {
    localStorage.setItem(KEY_ITEM, m[1]);
    history.replaceState(null, "", "/");
  }
}
const RECONNECT_MS = 2000;

const $ = (id) => document.getElementById(id);

// Build an element: el("li", {className: "x", dir: "auto"}, child or text, ...). Text children
// become text nodes: nothing here parses HTML.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

const bdi = (text) => el("bdi", {}, text);
// A peer's string inside a sentence of the page's own (a title, a notice, an option, a
// notification, an error): its bidi controls and control characters shown escaped, as the command
// line prints them (`\u{202e}`, `\x1b`), so it cannot turn the rest of the sentence around. (Where
// a name stands alone it is a <bdi>, exact.)
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const named = (text) => String(text ?? "").replace(CONTROLS, (c) => {
  const n = c.codePointAt(0);
  return n < 0x80 ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u{${n.toString(16)}}`;
});
const groups = (fp) => (fp || "").match(/.{1,4}/g)?.join(" ") ?? "";
const short = (fp) => (fp || "").slice(0, 16);
const when = (secs) => {
  const d = new Date(secs * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleString();
};

// --- The connection --------------------------------------------------------------------------

const rpc = {
  ws: null,
  next: 1,
  pending: new Map(),
  up: false,
};

function call(method, params) {
  return new Promise((resolve, reject) => {
    if (!rpc.ws || rpc.ws.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected to pgpchat web"));
      return;
    }
    const id = rpc.next++;
    rpc.pending.set(id, { resolve, reject });
    rpc.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params: params || {} }));
  });
}

function connect() {
  const key = localStorage.getItem(KEY_ITEM);
  if (!key) {
    banner("This page has no key for its session (it was opened without the link). Open the link pgpchat web printed, or the one in run/web.url.");
    return;
  }
  const ws = new WebSocket(`ws://${location.host}/ws`, ["pgpchat", `pgpchat-key.${key}`]);
  rpc.ws = ws;
  ws.onopen = async () => {
    rpc.up = true;
    setConn("connected");
    try {
      await call("subscribe");
      await resync();
    } catch (e) {
      say(e.message);
    }
  };
  ws.onmessage = (m) => {
    let v;
    try { v = JSON.parse(m.data); } catch { return; }
    if (v.id !== undefined && v.id !== null && rpc.pending.has(v.id)) {
      const p = rpc.pending.get(v.id);
      rpc.pending.delete(v.id);
      if (v.error) {
        const e = new Error(v.error.message);
        e.kind = v.error.data?.kind;
        p.reject(e);
      } else p.resolve(v.result);
      return;
    }
    notice(v);
  };
  ws.onclose = async () => {
    rpc.up = false;
    for (const p of rpc.pending.values()) p.reject(new Error("the connection to pgpchat web ended"));
    rpc.pending.clear();
    setConn("offline");
    // Logged out (or pgpchat web restarted: sessions end with it)?
    try {
      const r = await fetch("/", { method: "GET", cache: "no-store" });
      if (r.status === 401) {
        localStorage.removeItem(KEY_ITEM);
        banner("This session has ended (logged out, or pgpchat web was restarted). Open the link it printed.");
        return;
      }
      // pgpchat web is there: the socket ended (the page fell behind its events, or too many
      // pages are open). Connect again; everything is read anew.
      banner("Reconnecting to pgpchat web…");
      setTimeout(connect, RECONNECT_MS / 4);
      return;
    } catch {
      // pgpchat web itself is gone.
    }
    banner("pgpchat web is not answering; trying again…");
    setTimeout(connect, RECONNECT_MS);
  };
}

function setConn(state) {
  const c = $("conn");
  c.textContent = state === "offline" ? "○" : "●";
  c.title = { connected: "connected to the core", "core-gone": "the core is not running", offline: "pgpchat web is not answering" }[state];
  c.className = "conn " + state;
}

function banner(text) {
  const b = $("banner");
  if (text) {
    b.textContent = named(text);
    b.hidden = false;
  } else {
    b.hidden = true;
  }
}

// A passing message (an error, an outcome) in the banner, for a while.
let sayTimer = null;
function say(text, ok) {
  banner(text);
  $("banner").classList.toggle("ok", !!ok);
  clearTimeout(sayTimer);
  sayTimer = setTimeout(() => { if (state.coreUp) banner(null); }, 6000);
}

// --- State -------------------------------------------------------------------------------------

const state = {
  me: null,
  coreUp: true,
  contacts: [],
  discussions: [],
  requests: [],
  intros: [],
  open: null, // the discussion on screen: {id, peer, first, messages: Map seq->li}
  // Our new keys announced by "Rotate key" and not active yet (the peer has not switched): by
  // discussion id. The `key_rotated` event ends each; a key the core rotates by itself is shown
  // once active.
  pendingKeys: new Map(),
  // The last key `key_rotated` made active, by discussion id: an answer of `rotate` that comes
  // after its event is not taken for pending.
  activeKeys: new Map(),
  tab: "chats",
};

async function resync() {
  const [me, contacts, discussions, requests, intros] = await Promise.all([
    call("whoami"),
    call("contacts"),
    call("discussions"),
    call("requests"),
    call("introductions"),
  ]);
  state.coreUp = true;
  banner(null);
  state.me = me;
  $("me").replaceChildren(bdi(me.name), " ", el("span", { className: "fp" }, short(me.fingerprint)));
  state.contacts = contacts;
  state.discussions = discussions;
  state.requests = requests;
  state.intros = intros;
  renderAll();
  if (state.open) await showDiscussion(state.open.id, true);
  if (state.tab === "status") await renderStatus();
}

function notice(v) {
  if (v.method === "lagged") {
    // The WebSocket closes after it; the reconnection reads everything again.
    banner("Fell behind the core's events; reading everything again…");
    return;
  }
  if (v.method === "core") {
    if (v.params.connected) {
      state.coreUp = true;
      setConn("connected");
      banner(null);
      resync().catch((e) => say(e.message));
    } else {
      state.coreUp = false;
      setConn("core-gone");
      banner("The core is not running. Start it (pgpchat daemon, or pgpchat chat); this page reconnects by itself.");
    }
    return;
  }
  if (v.method !== "event") return;
  const e = v.params;
  switch (e.event) {
    case "contact_seen": upsertContact(e.contact); break;
    case "key_changed": say(`Warning: ${named(e.name)} announced a different key. This is not the person you knew.`); refreshContacts(); break;
    case "request":
      state.requests = state.requests.filter((r) => r.id !== e.request.id).concat([e.request]);
      renderRequests();
      alertUser(`Discussion request from ${named(e.request.name)}`);
      break;
    case "request_closed":
      state.requests = state.requests.filter((r) => r.id !== e.request_id);
      renderRequests();
      break;
    case "request_refused": refreshRefusals(); break;
    case "discussion_opened": refreshDiscussions(); break;
    case "discussion_closed": refreshDiscussions(); if (state.open?.id === e.discussion_id) showDiscussion(e.discussion_id, true); break;
    case "message": onMessage(e.message); break;
    case "delivery": onDelivery(e); break;
    case "key_rotated": onKeyRotated(e).catch((x) => say(x.message)); break;
    case "connection": {
      const d = state.discussions.find((x) => x.id === e.discussion_id);
      if (d) { d.connected = e.connected; renderDiscussions(); if (state.open?.id === d.id) renderChatHead(d); }
      break;
    }
    case "handshake_failed": say(`A discussion attempt failed: ${named(e.reason)}`); break;
    case "introduction":
      state.intros = [e.introduction].concat(state.intros.filter((i) => i.id !== e.introduction.id));
      renderIntros();
      alertUser(`${named(e.introduction.introducer.name)} introduces ${named(e.introduction.peer_name)} to you`);
      break;
    case "introduction_ended": refreshIntros(); break;
    case "list_requested": break;
  }
}

async function refreshContacts() { state.contacts = await call("contacts"); renderContacts(); }
async function refreshDiscussions() { state.discussions = await call("discussions"); renderDiscussions(); }
async function refreshIntros() { state.intros = await call("introductions"); renderIntros(); }
async function refreshRefusals() {
  if (state.tab !== "requests") return;
  renderRefusals(await call("requests", { refused: true }));
}

function upsertContact(c) {
  const i = state.contacts.findIndex((x) => x.fingerprint === c.fingerprint);
  if (i >= 0) state.contacts[i] = c; else state.contacts.push(c);
  renderContacts();
}

// --- Unread counts, title and browser notifications -------------------------------------------

function renderCounts() {
  const unread = state.discussions.reduce((n, d) => n + (d.unread || 0), 0);
  const reqs = state.requests.length;
  const intros = state.intros.filter((i) => i.state === "pending").length;
  $("count-chats").textContent = unread ? String(unread) : "";
  $("count-requests").textContent = reqs ? String(reqs) : "";
  $("count-intros").textContent = intros ? String(intros) : "";
  const n = unread + reqs + intros;
  document.title = n ? `(${n}) pgpchat` : "pgpchat";
}

function alertUser(text) {
  if (document.hidden && "Notification" in window && Notification.permission === "granted") {
    new Notification("pgpchat", { body: text });
  }
}

// --- Rendering ---------------------------------------------------------------------------------

function renderAll() {
  renderDiscussions();
  renderContacts();
  renderRequests();
  renderIntros();
}

function renderDiscussions() {
  const list = $("discussions");
  list.replaceChildren(...state.discussions.map((d) => {
    const li = el("li", {
      className: "item discussion" + (state.open?.id === d.id ? " selected" : "") + (d.state !== "open" ? " closed" : ""),
      dataset: { id: d.id, peer: d.peer_name },
      tabIndex: 0,
      on: { click: () => showDiscussion(d.id), keydown: (ev) => { if (ev.key === "Enter") showDiscussion(d.id); } },
    },
    el("div", { className: "line1" }, bdi(d.peer_name), d.unread ? el("span", { className: "badge unread" }, String(d.unread)) : null),
    el("div", { className: "line2" }, `${d.state} · ${d.messages} messages · ${when(d.last_activity)}`));
    return li;
  }));
  $("no-discussions").hidden = state.discussions.length > 0;
  renderCounts();
}

function originText(c) {
  const o = c.origin || {};
  if (o.kind === "via") return `from ${named(o.name)}'s list`;
  if (o.kind === "introduced") return `introduced by ${named(o.name)}`;
  if (o.kind === "added") return "added by address";
  return "seen on the network";
}

function renderContacts() {
  const list = $("contacts");
  const sorted = [...state.contacts].sort((a, b) => a.name.localeCompare(b.name));
  list.replaceChildren(...sorted.map((c) => el("li", { className: "item contact", dataset: { name: c.name, fp: c.fingerprint } },
    el("div", { className: "line1" },
      bdi(c.name),
      c.verified ? el("span", { className: "badge ok" }, "verified") : el("span", { className: "badge" }, "not verified"),
      c.key_changed ? el("span", { className: "badge danger" }, "different key!") : null),
    el("div", { className: "line2 fp" }, groups(c.fingerprint)),
    el("div", { className: "line2" }, `${originText(c)} · ${c.address}:${c.tcp_port}`),
    el("div", { className: "actions" },
      el("button", { type: "button", className: "small open", on: { click: () => openWith(c) } }, "Open discussion"),
      el("button", { type: "button", className: "small verify", on: { click: () => verify(c) } }, c.verified ? "Unverify" : "Verify"),
      el("button", { type: "button", className: "small", on: { click: () => removeContact(c) } }, "Forget"),
      el("button", { type: "button", className: "small danger", on: { click: () => block(c) } }, "Block")))));
  $("no-contacts").hidden = state.contacts.length > 0;
  for (const sel of [$("intro-a"), $("intro-b")]) {
    const was = sel.value;
    sel.replaceChildren(...sorted.map((c) => el("option", { value: c.fingerprint }, `${named(c.name)} (${short(c.fingerprint)})`)));
    if (was) sel.value = was;
  }
}

function renderRequests() {
  $("requests").replaceChildren(...state.requests.map((r) => el("li", { className: "item request", dataset: { id: String(r.id), name: r.name } },
    el("div", { className: "line1" }, bdi(r.name), r.key_changed ? el("span", { className: "badge danger" }, "different key!") : null),
    el("div", { className: "line2 fp" }, groups(r.fingerprint)),
    el("div", { className: "line2" }, `from ${r.address} · ${when(r.received)}`),
    el("div", { className: "actions" },
      el("button", { type: "button", className: "small accept", on: { click: () => accept(r) } }, "Accept"),
      el("button", { type: "button", className: "small danger refuse", on: { click: () => refuse(r) } }, "Refuse")))));
  $("no-requests").hidden = state.requests.length > 0;
  renderCounts();
}

function renderRefusals(list) {
  $("refusals-title").hidden = list.length === 0;
  $("refusals").replaceChildren(...list.slice().reverse().map((r) =>
    el("li", { className: "item" }, bdi(r.name), ` ${short(r.fingerprint)} · ${named(r.reason)} · ${when(r.time)}`)));
}

function renderIntros() {
  $("intros").replaceChildren(...state.intros.map((i) => el("li", { className: "item intro", dataset: { id: String(i.id) } },
    el("div", { className: "line1" }, bdi(i.introducer.name), " introduces ", bdi(i.peer_name),
      el("span", { className: "badge" }, i.state), i.key_changed ? el("span", { className: "badge danger" }, "different key!") : null),
    el("div", { className: "line2 fp" }, groups(i.peer_fingerprint)),
    i.state === "pending" ? el("div", { className: "line2" }, "When you both accept, the discussion opens by itself; ", bdi(i.peer_name), " stays unverified until you verify the fingerprint.") : null,
    i.state === "pending" ? el("div", { className: "actions" },
      el("button", { type: "button", className: "small", on: { click: () => decideIntro(i, true) } }, "Accept"),
      el("button", { type: "button", className: "small danger", on: { click: () => decideIntro(i, false) } }, "Decline")) : null)));
  $("no-intros").hidden = state.intros.length > 0;
  renderCounts();
}

async function renderStatus() {
  const s = await call("status");
  const rows = [
    ["Name", s.whoami.name],
    ["Fingerprint", groups(s.whoami.fingerprint)],
    ["Node", s.whoami.node],
    ["TCP port", String(s.whoami.tcp_port)],
    ["Data directory", s.whoami.data_dir],
    ["API / core", `${s.version.api} / ${s.version.core}`],
    ["Announces received / accepted", `${s.discovery.received} / ${s.discovery.accepted}`],
    ["Announces sent", String(s.discovery.announces_sent)],
    ["DHT", s.dht?.enabled ? `on (${s.dht.public_address || "no public address yet"})` : "off"],
  ];
  $("status").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { dir: "auto" }, v)]));
}

// --- The chat view -----------------------------------------------------------------------------

const MARKS = { stored: "…", sent: "✓", delivered: "✓✓", received: "" };

function messageItem(m) {
  const li = el("li", { className: `msg ${m.direction}`, dataset: { seq: String(m.seq), dir: m.direction } },
    el("div", { className: "body", dir: "auto" }, m.body),
    el("div", { className: "meta" }, when(m.time), " ",
      el("span", { className: "mark", title: m.state }, MARKS[m.state] ?? m.state)));
  li.dataset.state = m.state;
  return li;
}

function renderChatHead(d) {
  $("chat-peer").textContent = d.peer_name;
  const c = state.contacts.find((x) => x.fingerprint === d.peer_fingerprint);
  $("chat-fp").textContent = `${c?.verified ? "verified" : "not verified"} · ${groups(d.peer_fingerprint)}`;
  $("chat-state").textContent = d.state === "open" ? (d.connected === false ? "offline" : "") : d.state;
  renderKey(d);
  const open = d.state === "open";
  $("rotate").hidden = !open;
  $("composer").disabled = !open;
  $("send").disabled = !open;
  $("close").hidden = d.state === "closed";
}

// Our current encryption key of the discussion and when it last replaced the one before
// (`discussions`: key_id, last_rotation), and the new one while the peer has not switched to it.
function renderKey(d) {
  const k = $("chat-key");
  if (d.key_id && state.pendingKeys.get(d.id) === d.key_id) state.pendingKeys.delete(d.id);
  const pending = state.pendingKeys.get(d.id);
  k.dataset.key = d.key_id ?? "";
  k.dataset.pending = pending ?? "";
  if (!d.key_id) { k.textContent = "no key (closed: every key is destroyed)"; return; }
  const rotated = d.last_rotation ? `rotated ${when(d.last_rotation)}` : "never rotated";
  k.textContent = pending
    ? `key ${d.key_id} · new key ${pending} pending: active when ${named(d.peer_name)} has it`
    : `key ${d.key_id} · ${rotated}`;
}

async function rotateKey() {
  const o = state.open;
  if (!o) return;
  try {
    const r = await call("rotate", { discussion: o.id });
    const d = state.discussions.find((x) => x.id === o.id);
    // The event may have come first: then the key is active already.
    if (state.activeKeys.get(o.id) !== r.key_id) state.pendingKeys.set(o.id, r.key_id);
    if (d && state.open?.id === o.id) renderKey(d);
  } catch (e) { say(e.message); }
}

async function onKeyRotated(e) {
  state.pendingKeys.delete(e.discussion_id);
  state.activeKeys.set(e.discussion_id, e.key_id);
  await refreshDiscussions();
  const d = state.discussions.find((x) => x.id === e.discussion_id);
  if (d && state.open?.id === d.id) renderKey(d);
}

async function showDiscussion(id, keepScroll) {
  const d = state.discussions.find((x) => x.id === id) || (await refreshDiscussions(), state.discussions.find((x) => x.id === id));
  if (!d) return;
  const box = $("messages-box");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const history = await call("history", { discussion: id, limit: HISTORY_PAGE });
  state.open = { id, peer: d.peer_name, first: history[0]?.position ?? null, messages: new Map() };
  renderChatHead(d);
  const list = $("messages");
  list.replaceChildren(...history.map((m) => {
    const li = messageItem(m);
    if (m.direction === "out") state.open.messages.set(m.seq, li);
    return li;
  }));
  $("earlier").hidden = !(state.open.first > 1);
  d.unread = 0;
  document.body.classList.add("in-chat");
  $("chat").hidden = false;
  $("welcome").hidden = true;
  renderDiscussions();
  if (!keepScroll || atBottom) box.scrollTop = box.scrollHeight;
  if (!keepScroll) $("composer").focus();
}

async function earlier() {
  const o = state.open;
  if (!o || !(o.first > 1)) return;
  const box = $("messages-box");
  const before = box.scrollHeight;
  const page = await call("history", { discussion: o.id, limit: HISTORY_PAGE, before: o.first });
  if (state.open !== o) return;
  o.first = page[0]?.position ?? o.first;
  $("messages").prepend(...page.map((m) => {
    const li = messageItem(m);
    if (m.direction === "out") o.messages.set(m.seq, li);
    return li;
  }));
  $("earlier").hidden = !(page.length > 0 && o.first > 1);
  box.scrollTop += box.scrollHeight - before;
}

function onMessage(m) {
  const d = state.discussions.find((x) => x.id === m.discussion_id);
  if (!d) { refreshDiscussions(); return; }
  d.messages += 1;
  d.last_activity = m.time;
  const showing = state.open?.id === m.discussion_id;
  if (showing) {
    if (m.direction === "out" && state.open.messages.has(m.seq)) return;
    const box = $("messages-box");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const li = messageItem(m);
    $("messages").append(li);
    if (m.direction === "out") state.open.messages.set(m.seq, li);
    if (atBottom || m.direction === "out") box.scrollTop = box.scrollHeight;
    if (m.direction === "in") {
      if (document.hidden) { d.unread += 1; alertUser(`New message from ${named(d.peer_name)}`); }
      else call("mark_read", { discussion: d.id }).catch(() => {});
    }
  } else if (m.direction === "in") {
    d.unread += 1;
    alertUser(`New message from ${named(d.peer_name)}`);
  }
  state.discussions.sort((a, b) => b.last_activity - a.last_activity);
  renderDiscussions();
}

function onDelivery(e) {
  if (state.open?.id !== e.discussion_id) return;
  const li = state.open.messages.get(e.seq);
  if (!li) return;
  li.dataset.state = e.state;
  const mark = li.querySelector(".mark");
  mark.textContent = MARKS[e.state] ?? e.state;
  mark.title = e.state;
}

// When the page comes back into view, what arrived meanwhile in the open discussion is read.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.open && rpc.up) {
    const d = state.discussions.find((x) => x.id === state.open.id);
    if (d && d.unread) {
      call("mark_read", { discussion: d.id }).then(() => { d.unread = 0; renderDiscussions(); }).catch(() => {});
    }
  }
});

async function send(ev) {
  ev.preventDefault();
  const box = $("composer");
  const text = box.value;
  if (!text.trim() || !state.open) return;
  box.value = "";
  try {
    const m = await call("send", { discussion: state.open.id, text });
    onMessage(m);
  } catch (e) {
    box.value = text;
    say(e.message);
  }
}

// --- Dialogs -----------------------------------------------------------------------------------

// Ask for a shared secret, then run `go(secret)`; the dialog stays up with the error if it fails.
function askSecret(title, help, go) {
  const dlg = $("secret-dialog");
  $("secret-title").textContent = title;
  $("secret-help").textContent = help;
  $("secret-error").textContent = "";
  $("secret").value = "";
  $("secret-go").disabled = false;
  const form = $("secret-form");
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const secret = $("secret").value;
    if (!secret) return;
    $("secret-go").disabled = true;
    $("secret-error").textContent = "Waiting for the other side…";
    try {
      await go(secret);
      $("secret").value = "";
      dlg.close();
    } catch (e) {
      $("secret-error").textContent = named(e.message);
      $("secret-go").disabled = false;
    }
  };
  $("secret-cancel").onclick = () => { $("secret").value = ""; dlg.close(); if (dlg.onCancel) dlg.onCancel(); };
  dlg.showModal();
  $("secret").focus();
}

function confirmBox(title, body) {
  return new Promise((resolve) => {
    const dlg = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-body").replaceChildren(...body);
    dlg.returnValue = "";
    dlg.onclose = () => resolve(dlg.returnValue === "yes");
    dlg.showModal();
  });
}

// --- Actions -----------------------------------------------------------------------------------

function openWith(c) {
  const dlg = $("secret-dialog");
  dlg.onCancel = () => call("cancel", { contact: c.fingerprint }).catch(() => {});
  askSecret(`Open a discussion with ${named(c.name)}`,
    `Type the secret you agreed with ${named(c.name)} (face to face or by phone). The page waits for ${named(c.name)} to accept.`,
    async (password) => {
      const r = await call("open", { contact: c.fingerprint, password });
      dlg.onCancel = null;
      await refreshDiscussions();
      await showDiscussion(r.discussion_id);
    });
}

function accept(r) {
  $("secret-dialog").onCancel = null;
  askSecret(`Accept ${named(r.name)}'s request`, `Type the secret you agreed with ${named(r.name)}.`, async (password) => {
    const a = await call("accept", { request: r.id, password });
    state.requests = state.requests.filter((x) => x.id !== r.id);
    renderRequests();
    await refreshDiscussions();
    await showDiscussion(a.discussion_id);
  });
}

async function refuse(r) {
  try {
    await call("refuse", { request: r.id });
    state.requests = state.requests.filter((x) => x.id !== r.id);
    renderRequests();
  } catch (e) { say(e.message); }
}

async function verify(c) {
  if (c.verified) {
    try { upsertContact(await call("verify", { contact: c.fingerprint, verified: false })); } catch (e) { say(e.message); }
    return;
  }
  const ok = await confirmBox(`Verify ${named(c.name)}`, [
    el("p", {}, "Compare this fingerprint with the one ", bdi(c.name), " reads you from their own device (in person or by phone). Mark it verified only if every group matches."),
    el("p", { className: "fp big" }, groups(c.fingerprint)),
  ]);
  if (!ok) return;
  try { upsertContact(await call("verify", { contact: c.fingerprint, verified: true })); } catch (e) { say(e.message); }
}

async function removeContact(c) {
  if (!(await confirmBox(`Forget ${named(c.name)}?`, [el("p", {}, "It comes back if it announces itself again.")]))) return;
  try { await call("remove_contact", { contact: c.fingerprint }); await refreshContacts(); } catch (e) { say(e.message); }
}

async function block(c) {
  if (!(await confirmBox(`Block ${named(c.name)}?`, [el("p", {}, "Its announces and requests are ignored and the contact is forgotten. Discussions already open stay open: close them to stop them.")]))) return;
  try { await call("block", { fingerprint: c.fingerprint }); await refreshContacts(); } catch (e) { say(e.message); }
}

async function decideIntro(i, yes) {
  try {
    await call(yes ? "accept_introduction" : "decline_introduction", { introduction: i.id });
    await refreshIntros();
  } catch (e) { say(e.message); }
}

async function closeDiscussion() {
  const o = state.open;
  if (!o) return;
  const force = el("input", { type: "checkbox", id: "close-force" });
  const ok = await confirmBox(`Close the discussion with ${named(o.peer)}?`, [
    el("p", {}, "Both sides are told; the history stays. Keys are destroyed once the peer confirms."),
    el("label", {}, force, " Close now, without waiting for the peer (undelivered messages stay undelivered)"),
  ]);
  if (!ok) return;
  try {
    await call("close", { discussion: o.id, force: force.checked });
    await refreshDiscussions();
    await showDiscussion(o.id, true);
  } catch (e) { say(e.message); }
}

async function contactsFrom() {
  const o = state.open;
  if (!o) return;
  try {
    const r = await call("contacts_from", { peer: o.id });
    say(`${r.learned.length} new contacts from ${named(o.peer)} (${r.known} known already)`, true);
    await refreshContacts();
  } catch (e) { say(e.message); }
}

async function addContact(ev) {
  ev.preventDefault();
  const address = $("add-address").value.trim();
  if (!address) return;
  try {
    const c = await call("add_contact", { address });
    $("add-address").value = "";
    upsertContact(c);
    say(`${named(c.name)} added: verify its fingerprint before trusting it`, true);
  } catch (e) { say(e.message); }
}

async function introduce(ev) {
  ev.preventDefault();
  const a = $("intro-a").value, b = $("intro-b").value;
  if (!a || !b || a === b) { say("Choose two different contacts"); return; }
  try {
    await call("introduce", { a, b });
    say("Introduction sent: both are asked to accept", true);
  } catch (e) { say(e.message); }
}

function showTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const p of document.querySelectorAll(".pane")) p.hidden = p.id !== `pane-${tab}`;
  if (tab === "status") renderStatus().catch((e) => say(e.message));
  if (tab === "requests") refreshRefusals().catch(() => {});
  document.body.classList.remove("in-chat");
}

async function logout() {
  localStorage.removeItem(KEY_ITEM);
  try { await fetch("/logout", { method: "POST" }); } catch { /* the page goes away anyway */ }
  location.href = "/";
}

// --- Wiring ------------------------------------------------------------------------------------

for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
$("composer-form").addEventListener("submit", send);
$("composer").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $("composer-form").requestSubmit(); }
});
$("earlier").addEventListener("click", () => earlier().catch((e) => say(e.message)));
$("close").addEventListener("click", closeDiscussion);
$("rotate").addEventListener("click", rotateKey);
$("contacts-from").addEventListener("click", contactsFrom);
$("add-form").addEventListener("submit", addContact);
$("introduce-form").addEventListener("submit", introduce);
$("refresh-status").addEventListener("click", () => renderStatus().catch((e) => say(e.message)));
$("logout").addEventListener("click", logout);
$("back").addEventListener("click", () => { document.body.classList.remove("in-chat"); });
if ("Notification" in window && Notification.permission === "default") {
  $("notify").hidden = false;
  $("notify").addEventListener("click", async () => { await Notification.requestPermission(); $("notify").hidden = true; });
}
showTab("chats");
connect();
