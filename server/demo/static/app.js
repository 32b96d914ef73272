// The demo client: sign-in, one Socket.IO connection for /chat, /presence and /call, and the wiring
// between the page's parts. Read this file first; each module holds one part of the protocol.
import { Calls } from "./call.js";
import { Chat } from "./chat.js";
import { RequestError, rest, tokenSubject } from "./net.js";
import { Presence } from "./presence.js";
import { Probe } from "./probe.js";
import { $, notice, showError } from "./ui.js";
import { Wallet } from "./wallet.js";

const SESSION_KEY = "pairly-demo-session"; // sessionStorage: each window signs in as its own user

export function start(parser) {
  $("parser").value = parser;
  $("parser").addEventListener("change", (e) => {
    const url = new URL(location.href);
    url.searchParams.set("parser", e.target.value);
    location.href = url.toString();
  });
  $("signin-dev").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const { token, user } = await rest("POST", "/api/dev/token", {
        body: { user: $("signin-user").value.trim(), name: $("signin-name").value.trim() || undefined } });
      enter({ token, user }, parser);
    } catch (err) {
      showSignInError(err);
    }
  });
  $("signin-jwt").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("signin-token").value.trim();
    const subject = tokenSubject(token);
    if (!subject || !subject.user) return showSignInError(new Error("that does not look like a JWT with a `sub` claim"));
    enter({ token, user: subject.user }, parser);
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(SESSION_KEY); location.reload(); });
  const saved = sessionStorage.getItem(SESSION_KEY);
  if (saved) enter(JSON.parse(saved), parser);
  document.body.dataset.ready = "1"; // handlers attached (the tests wait for this)
}

function showSignInError(err) {
  const p = document.createElement("p");
  p.className = "warning";
  p.dataset.testid = "signin-error";
  p.textContent = `Sign-in failed: ${err.words || err.message}`;
  $("signin").append(p);
}

function enter(session, parser) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  const { token, user } = session;
  $("signin").hidden = true;
  $("app").hidden = false;
  for (const id of ["wallet", "my-status", "signout"]) $(id).hidden = false;
  $("who").textContent = `${user} (${parser})`;

  // One Engine.IO connection (one Manager) multiplexes the three namespaces; each namespace connect
  // carries the token and is authorised on its own. The Manager reconnects by itself with backoff.
  const manager = new io.Manager(location.origin, { path: "/socket.io/", reconnectionDelayMax: 5000 });
  const sockets = {};
  for (const ns of ["/chat", "/presence", "/call"]) sockets[ns] = manager.socket(ns, { auth: { token } });

  const presence = new Presence(sockets["/presence"], { onChange: () => chat.renderList() });
  const calls = new Calls(sockets["/call"], user);
  const chat = new Chat(sockets["/chat"], user, {
    presence,
    onOpen: () => { $("probe-run").disabled = false; },
  });
  const wallet = new Wallet(sockets["/chat"], token);
  const probe = new Probe(sockets["/call"]);
  wallet.load();
  $("probe-run").disabled = false;

  $("add-contact").addEventListener("submit", (e) => {
    e.preventDefault();
    const peer = $("contact").value.trim();
    if (peer) chat.openConversation(peer);
    $("contact").value = "";
  });
  // A caller we have never talked to appears in the list, with their presence.
  sockets["/call"].on("call:incoming", ({ from }) => {
    chat.conversation(from);
    presence.watch([from]);
    chat.renderList();
  });
  $("call-audio").addEventListener("click", () => chat.open && calls.start(chat.open, "audio"));
  $("call-video").addEventListener("click", () => chat.open && calls.start(chat.open, "video"));

  const conn = $("conn");
  const chatSocket = sockets["/chat"];
  chatSocket.on("connect", () => { conn.textContent = "connected"; conn.className = "pill ok"; });
  chatSocket.on("disconnect", (reason) => {
    conn.textContent = `reconnecting (${reason})`;
    conn.className = "pill bad";
  });
  for (const [ns, socket] of Object.entries(sockets)) {
    // A refused namespace connect (bad token, ban, too many devices) is not retried by the client:
    // say why and let the user sign in again.
    // Without `data` it is the transport failing (server down, network): the Manager keeps retrying.
    socket.on("connect_error", (err) => {
      conn.className = "pill bad";
      if (!err.data) {
        conn.textContent = `cannot reach the server (${err.message}); retrying`;
        return;
      }
      conn.textContent = `refused: ${err.data.code}`;
      showError(`Connecting ${ns}`, new RequestError(err.data.code, err.data.message || err.message));
    });
  }
  // Account events reach every namespace: handle each on one of them only.
  chatSocket.on("session:revoked", ({ reason }) => {
    notice(`This session was ended by the server: ${reason}. Sign in again.`, "error");
    // Closing every socket closes the Manager for good: it must not reconnect with a dead token.
    Object.values(sockets).forEach((socket) => socket.disconnect());
  });
  chatSocket.on("server:shutdown", () => notice("The server is restarting; reconnecting…"));
  chatSocket.on("system:notice", ({ text, level }) => notice(`Operator: ${text}`, level === "warning" ? "error" : "info"));

  // For the end-to-end tests and for poking around in the console.
  window.pairly = { user, parser, manager, sockets, chat, presence, calls, wallet, probe };
}
