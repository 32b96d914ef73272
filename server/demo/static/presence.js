// /presence: contacts' status (online/away/offline, last seen) and our own status.
import { request } from "./net.js";
import { $, showError } from "./ui.js";

const HEARTBEAT_MS = 60000; // well under PAIRLY_PRESENCE_AWAY_AFTER_S (300 s): active users stay online

export class Presence {
  constructor(socket, { onChange }) {
    this.socket = socket;
    this.onChange = onChange;
    this.known = new Map(); // user -> P
    this.watched = new Set();
    // Subscriptions belong to the socket: after a reconnect the server knows none of them, so
    // subscribe again and take the fresh snapshot (changes made while away are in it).
    socket.on("connect", () => this.subscribe([...this.watched]));
    socket.on("presence:update", (p) => { this.known.set(p.user, p); this.onChange(); });
    $("my-status").addEventListener("change", (e) => this.set(e.target.value));
    this.lastActivity = Date.now();
    for (const type of ["keydown", "pointerdown"]) window.addEventListener(type, () => { this.lastActivity = Date.now(); });
    // Heartbeats mark activity: only while the user actually did something since the last one, so an
    // unattended window turns `away` on its own.
    this.beat = setInterval(() => {
      if (socket.connected && Date.now() - this.lastActivity < HEARTBEAT_MS) {
        request(socket, "presence:heartbeat", {}).catch((err) => showError("Heartbeat", err));
      }
    }, HEARTBEAT_MS);
  }

  get(user) { return this.known.get(user); }

  watch(users) {
    const fresh = users.filter((u) => u && !this.watched.has(u));
    if (fresh.length === 0) return;
    fresh.forEach((u) => this.watched.add(u));
    if (this.socket.connected) this.subscribe(fresh);
  }

  async subscribe(users) {
    if (users.length === 0) return;
    try {
      for (let i = 0; i < users.length; i += 500) { // the server takes at most 500 per request
        const { presence } = await request(this.socket, "presence:subscribe", { users: users.slice(i, i + 500) });
        presence.forEach((p) => this.known.set(p.user, p));
      }
      this.onChange();
    } catch (err) {
      showError("Presence", err);
    }
  }

  async set(status) {
    try {
      await request(this.socket, "presence:set", { status });
    } catch (err) {
      showError("Setting your status", err);
    }
  }

  stop() { clearInterval(this.beat); }
}
