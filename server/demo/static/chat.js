// /chat: conversation list, history paging, live messages, receipts, typing, edit/delete, block.
import { newId, request } from "./net.js";
import { $, el, notice, presenceText, showError, time } from "./ui.js";

const PAGE = 30;
const TYPING_EVERY_MS = 2000; // the server drops typing events faster than PAIRLY_CHAT_TYPING_THROTTLE_S
const TYPING_IDLE_MS = 3000; // no keystroke for this long: send "stop"
const TYPING_SHOW_MS = 6000; // a "start" with no "stop" (the peer went away) fades after this
const STATUS_RANK = { sent: 0, delivered: 1, read: 2 };

export class Chat {
  constructor(socket, me, { presence, onOpen }) {
    this.socket = socket;
    this.me = me;
    this.presence = presence;
    this.onOpen = onOpen;
    this.conversations = new Map(); // peer -> {unread, last}
    this.messages = new Map(); // peer -> Map(id -> M)
    this.older = new Map(); // peer -> next_before (null: nothing older); absent: history not loaded yet
    this.byId = new Map(); // id -> peer
    this.open = null;
    this.lastId = null; // the newest message id seen: where `sync` resumes after a reconnect
    this.blocked = new Set();
    this.hiddenForMe = new Set();
    this.editing = null;
    this.pending = null; // {text, client_id} of a send whose ack never came: a retry reuses the id
    this.typingSentAt = 0;
    this.typingIdle = null;
    this.peerTyping = null;
    this.bindSocket();
    this.bindDom();
  }

  bindSocket() {
    const s = this.socket;
    // Fires on the first connect and after every reconnect. Live events missed while disconnected
    // are not replayed by the server: `sync` from the last id we saw fetches them, then the list
    // refreshes the unread counts.
    s.on("connect", async () => {
      try {
        if (this.lastId !== null) await this.catchUp();
        await this.loadList();
        if (this.open && !this.older.has(this.open)) await this.loadHistory(this.open);
      } catch (err) {
        showError("Loading conversations", err);
      }
    });
    s.on("message:new", (m) => this.receive(m));
    s.on("message:status", ({ ids, status }) => {
      for (const id of ids) {
        const m = this.find(id);
        // Receipts can arrive out of order (delivered after read): never move a tick backwards.
        if (m && STATUS_RANK[status] > STATUS_RANK[m.status]) m.status = status;
      }
      this.renderMessages();
    });
    s.on("message:updated", (m) => { this.store(m); this.renderMessages(); this.renderList(); });
    s.on("message:deleted", ({ id }) => {
      const peer = this.byId.get(id);
      if (!peer) return;
      if (this.hiddenForMe.has(id)) this.messages.get(peer).delete(id);
      else Object.assign(this.messages.get(peer).get(id), { deleted: true, text: "" });
      this.renderMessages();
      this.renderList();
    });
    s.on("conversation:updated", ({ with: peer, unread }) => {
      this.conversation(peer).unread = unread;
      this.renderList();
    });
    s.on("typing", ({ from, state }) => {
      if (from !== this.open) return;
      clearTimeout(this.peerTyping);
      $("typing").textContent = state === "start" ? `${from} is typing…` : "";
      if (state === "start") this.peerTyping = setTimeout(() => { $("typing").textContent = ""; }, TYPING_SHOW_MS);
    });
  }

  bindDom() {
    $("composer").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    $("text").addEventListener("input", () => this.typed());
    $("older").addEventListener("click", () => this.loadHistory(this.open, this.older.get(this.open)));
    $("cancel-edit").addEventListener("click", () => this.stopEditing());
    $("block").addEventListener("click", () => this.toggleBlock());
    // Read receipts follow what the user can see: mark read when the window regains focus.
    window.addEventListener("focus", () => this.open && this.markRead(this.open));
  }

  // -- state --------------------------------------------------------------------------------------
  peerOf(m) { return m.from === this.me ? m.to : m.from; }
  conversation(peer) {
    if (!this.conversations.has(peer)) this.conversations.set(peer, { unread: 0, last: null });
    return this.conversations.get(peer);
  }
  find(id) { const peer = this.byId.get(id); return peer ? this.messages.get(peer).get(id) : undefined; }

  store(m) {
    const peer = this.peerOf(m);
    if (!this.messages.has(peer)) this.messages.set(peer, new Map());
    const known = this.messages.get(peer).get(m.id);
    // Keep the best status we know: a history page may be older than a receipt we already got.
    if (known && STATUS_RANK[known.status] > STATUS_RANK[m.status]) m = { ...m, status: known.status };
    this.messages.get(peer).set(m.id, m);
    this.byId.set(m.id, peer);
    const conv = this.conversation(peer);
    if (!conv.last || m.id >= conv.last.id) conv.last = m;
    if (this.lastId === null || m.id > this.lastId) this.lastId = m.id;
    return peer;
  }

  // A message from the server, live or from `sync`: acknowledge delivery, read it if it is on screen.
  receive(m) {
    const isNew = !this.byId.has(m.id);
    const peer = this.store(m);
    if (m.from !== this.me && m.status === "sent") {
      request(this.socket, "message:delivered", { ids: [m.id] }).catch((err) => showError("Delivery receipt", err));
    }
    if (m.from !== this.me && isNew) {
      if (peer === this.open && document.hasFocus()) this.markRead(peer);
      else this.conversation(peer).unread += 1;
      this.presence.watch([peer]);
    }
    if (peer === this.open) { $("typing").textContent = ""; this.renderMessages(); }
    this.renderList();
  }

  // -- requests -----------------------------------------------------------------------------------
  async loadList() {
    const { conversations } = await request(this.socket, "conversation:list", { limit: 100 });
    for (const c of conversations) {
      if (c.last_message) this.store(c.last_message);
      this.conversation(c.with).unread = c.unread;
    }
    this.presence.watch(conversations.map((c) => c.with));
    this.renderList();
  }

  async catchUp() {
    let since = this.lastId;
    for (;;) {
      const { messages, more } = await request(this.socket, "sync", { since });
      messages.forEach((m) => this.receive(m));
      if (!more || messages.length === 0) break;
      since = messages[messages.length - 1].id;
    }
  }

  async loadHistory(peer, before) {
    try {
      const payload = { with: peer, limit: PAGE };
      if (before) payload.before = before;
      const { messages, next_before } = await request(this.socket, "conversation:history", payload);
      messages.forEach((m) => this.store(m));
      this.older.set(peer, next_before);
      if (peer === this.open) this.renderMessages(!before);
      if (!before) await this.markRead(peer);
    } catch (err) {
      showError("Loading history", err);
    }
  }

  async markRead(peer) {
    const list = [...(this.messages.get(peer) || new Map()).values()].filter((m) => m.from === peer);
    if (list.length === 0) return;
    const newest = list.reduce((a, b) => (a.id > b.id ? a : b));
    if (newest.status === "read" && this.conversation(peer).unread === 0) return;
    try {
      const { unread } = await request(this.socket, "conversation:read", { with: peer, up_to: newest.id });
      list.forEach((m) => { m.status = "read"; });
      this.conversation(peer).unread = unread;
      this.renderList();
    } catch (err) {
      showError("Read receipt", err);
    }
  }

  async send() {
    const text = $("text").value.trim();
    if (!text || !this.open) return;
    this.stopTyping();
    if (this.editing) return this.saveEdit(text);
    // The ack is what says the message was accepted and charged. If it never comes the message may
    // or may not have been sent: retrying with the same client_id returns the same message and
    // charges nothing, so a retry can never pay twice.
    const client_id = this.pending && this.pending.text === text && this.pending.to === this.open
      ? this.pending.client_id : newId();
    this.pending = { text, to: this.open, client_id };
    try {
      const { message, price } = await request(this.socket, "message:send", { to: this.open, client_id, text });
      this.pending = null;
      $("text").value = "";
      this.store(message);
      this.renderMessages(true);
      this.renderList();
      if (price) notice(`Sent to ${message.to} for ${price} credit${price === 1 ? "" : "s"}`);
    } catch (err) {
      if (err.code !== "timeout") this.pending = null;
      showError("Message not sent", err);
    }
  }

  startEditing(m) {
    this.editing = m;
    $("text").value = m.text;
    $("send").textContent = "Save";
    $("cancel-edit").hidden = false;
    $("text").focus();
  }

  stopEditing() {
    this.editing = null;
    $("text").value = "";
    $("send").textContent = "Send";
    $("cancel-edit").hidden = true;
  }

  async saveEdit(text) {
    try {
      const { message } = await request(this.socket, "message:edit", { id: this.editing.id, text });
      this.store(message);
      this.stopEditing();
      this.renderMessages();
    } catch (err) {
      showError("Edit refused", err);
    }
  }

  async remove(m, scope) {
    try {
      if (scope === "me") this.hiddenForMe.add(m.id);
      await request(this.socket, "message:delete", { id: m.id, for: scope });
    } catch (err) {
      this.hiddenForMe.delete(m.id);
      showError("Delete refused", err);
    }
  }

  async toggleBlock() {
    const peer = this.open;
    const blocking = !this.blocked.has(peer);
    try {
      await request(this.socket, blocking ? "user:block" : "user:unblock", { user: peer });
      if (blocking) this.blocked.add(peer); else this.blocked.delete(peer);
      notice(blocking ? `You blocked ${peer}: no messages, calls, presence or typing between you`
        : `You unblocked ${peer}`);
      this.renderHead();
    } catch (err) {
      showError(blocking ? "Block" : "Unblock", err);
    }
  }

  // `typing` has no ack and may be dropped: a hint, never stored or charged.
  typed() {
    if (!this.open || this.editing) return;
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_EVERY_MS) {
      this.socket.emit("typing", { to: this.open, state: "start" });
      this.typingSentAt = now;
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.typingIdle);
    if (this.typingSentAt && this.open) this.socket.emit("typing", { to: this.open, state: "stop" });
    this.typingSentAt = 0;
  }

  // -- view ---------------------------------------------------------------------------------------
  openConversation(peer) {
    if (peer === this.me) return;
    this.stopTyping();
    this.stopEditing();
    this.open = peer;
    this.conversation(peer);
    this.presence.watch([peer]);
    $("typing").textContent = "";
    for (const id of ["text", "send", "call-audio", "call-video", "block"]) $(id).disabled = false;
    this.renderHead();
    this.renderList();
    this.renderMessages(true);
    if (!this.older.has(peer)) this.loadHistory(peer);
    else this.markRead(peer);
    this.onOpen(peer);
  }

  renderHead() {
    if (!this.open) return;
    $("peer-name").textContent = this.open;
    $("peer-presence").textContent = presenceText(this.presence.get(this.open));
    $("block").textContent = this.blocked.has(this.open) ? "Unblock" : "Block";
  }

  renderList() {
    const list = $("conversations");
    const peers = [...this.conversations.keys()].sort((a, b) => {
      const la = this.conversations.get(a).last, lb = this.conversations.get(b).last;
      return (lb ? lb.id : "\uffff").localeCompare(la ? la.id : "\uffff");
    });
    list.replaceChildren(...peers.map((peer) => {
      const c = this.conversations.get(peer);
      const p = this.presence.get(peer);
      return el("li", { class: peer === this.open ? "open" : "", testid: `conv-${peer}`, onclick: () => this.openConversation(peer) },
        el("span", { class: `dot ${p ? p.status : ""}`, title: presenceText(p) }),
        el("div", { style: "flex:1;min-width:0" },
          el("div", {}, el("b", {}, peer), " ", el("small", { class: "muted", testid: `presence-${peer}` }, presenceText(p))),
          el("div", { class: "last" }, c.last ? (c.last.deleted ? "message deleted" : c.last.text) : "no messages yet")),
        c.unread ? el("span", { class: "badge", testid: `unread-${peer}` }, String(c.unread)) : null);
    }));
    this.renderHead();
  }

  renderMessages(scrollToEnd = false) {
    const box = $("messages");
    if (!this.open) return box.replaceChildren();
    const list = [...(this.messages.get(this.open) || new Map()).values()].sort((a, b) => a.id.localeCompare(b.id));
    box.replaceChildren(...list.map((m) => this.renderMessage(m)));
    $("older").hidden = !this.older.get(this.open);
    if (scrollToEnd) box.scrollTop = box.scrollHeight;
  }

  renderMessage(m) {
    const mine = m.from === this.me;
    const tick = { sent: "✓", delivered: "✓✓", read: "✓✓" }[m.status];
    return el("li", { class: `${mine ? "mine" : ""} ${m.deleted ? "deleted" : ""}`, "data-id": m.id, "data-status": m.status, testid: "message" },
      el("div", { class: "body" }, m.deleted ? "message deleted" : m.text),
      el("div", { class: "meta" },
        el("span", {}, time(m.created_at)), m.edited_at ? el("span", {}, "(edited)") : null,
        mine ? el("span", { class: `tick ${m.status}`, title: m.status, testid: "tick" }, tick) : null,
        m.deleted ? null : el("span", { class: "actions" },
          mine ? el("button", { onclick: () => this.startEditing(m), testid: "edit" }, "edit") : null,
          mine ? el("button", { onclick: () => this.remove(m, "everyone"), testid: "delete-everyone" }, "delete for everyone") : null,
          el("button", { onclick: () => this.remove(m, "me"), testid: "delete-me" }, "delete for me"))));
  }
}
