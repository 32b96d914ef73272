// /call: the pre-call gate, invite/ring/accept/reject/end, WebRTC between the two browsers (the
// server only relays signaling), per-minute charges and low-balance warnings as they happen.
import { request } from "./net.js";
import { $, el, notice, showError, time } from "./ui.js";

const END_WORDS = {
  completed: "hung up",
  rejected: "declined",
  cancelled: "cancelled by the caller",
  missed: "not answered in time",
  busy: "the other side is busy",
  insufficient_credits: "ran out of credits",
  disconnected: "a device lost its connection for too long",
  answered_elsewhere: "answered on another device",
  ended_by_admin: "ended by an operator",
  blocked: "one of you blocked the other",
};

export class Calls {
  constructor(socket, me) {
    this.socket = socket;
    this.me = me;
    this.call = null; // {id, peer, media, role, phase, pc, local, pendingIce, iceServers}
    this.lastEnded = null;
    socket.on("call:incoming", (c) => this.incoming(c));
    socket.on("call:accepted", ({ call_id }) => this.accepted(call_id));
    socket.on("call:signal", (s) => this.signal(s).catch((err) => showError("Call signaling", err)));
    socket.on("call:billed", (b) => this.billed(b));
    socket.on("call:low_balance", ({ call_id, seconds_left }) => {
      if (!this.is(call_id)) return;
      $("call-warning").hidden = false;
      $("call-warning").textContent = `Low balance: about ${Math.round(seconds_left)} s of paid time left. Buy credits to keep talking.`;
      this.log(`low balance warning: ${Math.round(seconds_left)} s left`);
    });
    socket.on("call:media", ({ call_id, media, from }) => this.is(call_id) && this.log(`${from} switched to ${media}`));
    socket.on("call:ended", (e) => this.ended(e));
    // A reconnect gives us a new socket id. Within PAIRLY_CALL_RECONNECT_GRACE_S the first call:signal
    // from the new socket moves the call to it: send a fresh offer with an ICE restart.
    socket.on("connect", () => {
      if (this.call && this.call.pc && this.call.phase !== "ringing") this.renegotiate();
    });
    $("call-accept").addEventListener("click", () => this.accept());
    $("call-reject").addEventListener("click", () => this.reject());
    $("call-hangup").addEventListener("click", () => this.hangup());
  }

  is(callId) { return this.call !== null && this.call.id === callId; }

  // -- caller ---------------------------------------------------------------------------------------
  async start(peer, media) {
    if (this.call) return notice("You are already in a call", "error");
    this.reset(`Preparing a ${media} call to ${peer}…`);
    this.call = { id: null, peer, media, role: "caller", phase: "preparing", pendingIce: [] };
    try {
      // The gate: one round trip says whether the call can happen at all, before anything rings.
      const gate = await request(this.socket, "call:prepare", { to: peer, media });
      this.showGate(gate);
      if (!gate.callee.reachable) throw new Error(`${peer} cannot be reached${gate.callee.reason ? ` (${gate.callee.reason})` : ""}`);
      if (gate.affordable_minutes < 1) throw new Error(`a minute costs ${gate.rate_per_minute} credits; buy credits first`);
      this.call.iceServers = gate.ice_servers;
      await this.openMedia();
      const { call_id, rate_per_minute } = await request(this.socket, "call:invite", { to: peer, media });
      this.call.id = call_id;
      this.phase("ringing", `Ringing ${peer}… (${rate_per_minute} credits/min)`);
      $("call-hangup").hidden = false;
    } catch (err) {
      showError(`Call to ${peer}`, err);
      this.teardown(`Call to ${peer} not started: ${err.words || err.message}`);
    }
  }

  // Signaling order: the callee's device is only known once it accepts, so the caller offers after
  // `call:accepted` (an earlier offer would be relayed to every ringing device of the callee).
  async accepted(callId) {
    if (!this.is(callId)) return;
    if (this.call.phase === "ringing" || this.call.phase === "incoming") this.phase("connecting", `Connecting with ${this.call.peer}…`);
    if (this.call.role !== "caller") return;
    try {
      this.createPeer();
      const offer = await this.call.pc.createOffer();
      await this.call.pc.setLocalDescription(offer);
      await this.send("offer", { type: "offer", sdp: offer.sdp });
    } catch (err) {
      showError("Starting the call", err);
      this.hangup();
    }
  }

  // -- callee ---------------------------------------------------------------------------------------
  incoming({ call_id, from, media }) {
    if (this.call) return; // the server answers `busy` for us; a second call never rings here
    this.reset();
    this.call = { id: call_id, peer: from, media, role: "callee", phase: "incoming", pendingIce: [] };
    this.phase("incoming", `${from} is calling (${media})`);
    $("call-accept").hidden = false;
    $("call-reject").hidden = false;
    notice(`Incoming ${media} call from ${from}`);
  }

  async accept() {
    const call = this.call;
    if (!call || call.phase !== "incoming") return;
    $("call-accept").hidden = true;
    $("call-reject").hidden = true;
    let accepting = false;
    try {
      const { ice_servers } = await request(this.socket, "call:ice_servers", {});
      call.iceServers = ice_servers;
      await this.openMedia();
      // Ready for the offer before accepting: the caller sends it as soon as it hears we accepted.
      this.createPeer();
      accepting = true;
      await request(this.socket, "call:accept", { call_id: call.id });
      $("call-hangup").hidden = false;
    } catch (err) {
      showError("Accepting the call", err);
      // No camera or microphone (or no ICE servers): decline rather than let it ring until `missed`.
      if (!accepting) request(this.socket, "call:reject", { call_id: call.id }).catch(() => {});
      if (this.call === call) this.teardown(`Could not accept: ${err.words || err.message}`);
    }
  }

  async reject() {
    if (!this.call) return;
    try {
      await request(this.socket, "call:reject", { call_id: this.call.id });
    } catch (err) {
      showError("Rejecting the call", err);
    }
  }

  async hangup() {
    const call = this.call;
    if (!call) return;
    if (!call.id) return this.teardown("Call abandoned");
    try {
      await request(this.socket, "call:end", { call_id: call.id }); // call:ended follows for both sides
    } catch (err) {
      showError("Hanging up", err);
    }
  }

  // -- WebRTC ---------------------------------------------------------------------------------------
  async openMedia() {
    const call = this.call;
    call.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: call.media === "video" });
    $("local-video").srcObject = call.local;
  }

  createPeer() {
    const call = this.call;
    if (call.pc) return;
    const pc = new RTCPeerConnection({ iceServers: call.iceServers || [] });
    call.pc = pc;
    call.statsTimer = setInterval(() => this.showStats(), 1000);
    $("ice").textContent = `ICE servers: ${(call.iceServers || []).map((s) => [].concat(s.urls).join(", ")).join("; ") || "none"}`;
    call.local.getTracks().forEach((track) => pc.addTrack(track, call.local));
    pc.ontrack = (e) => { $("remote-video").srcObject = e.streams[0]; };
    // Trickle ICE: every candidate goes to the other device as it is found (null: end of candidates).
    pc.onicecandidate = (e) => {
      const c = e.candidate;
      this.send("ice", { candidate: c ? c.candidate : null, sdpMid: c ? c.sdpMid : null, sdpMLineIndex: c ? c.sdpMLineIndex : null })
        .catch((err) => showError("Sending a network candidate", err));
    };
    pc.onconnectionstatechange = () => {
      if (this.call !== call) return;
      if (pc.connectionState === "connected") this.phase("connected", `In a ${call.media} call with ${call.peer}`);
      if (pc.connectionState === "failed") this.log("media connection failed");
    };
  }

  async send(type, payload) {
    await request(this.socket, "call:signal", { call_id: this.call.id, type, payload });
  }

  async signal({ call_id, type, payload }) {
    if (!this.is(call_id)) return;
    const call = this.call;
    if (!call.pc) this.createPeer();
    const pc = call.pc;
    if (type === "offer" || type === "renegotiate") {
      await pc.setRemoteDescription({ type: "offer", sdp: payload.sdp });
      await this.flushIce();
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await this.send("answer", { type: "answer", sdp: answer.sdp });
    } else if (type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: payload.sdp });
      await this.flushIce();
    } else if (type === "ice" && payload.candidate) {
      // Candidates can overtake the description they belong to: hold them until it is set.
      if (pc.remoteDescription) await pc.addIceCandidate(payload);
      else call.pendingIce.push(payload);
    }
  }

  async flushIce() {
    const pending = this.call.pendingIce.splice(0);
    for (const c of pending) await this.call.pc.addIceCandidate(c);
  }

  async renegotiate() {
    try {
      const offer = await this.call.pc.createOffer({ iceRestart: true });
      await this.call.pc.setLocalDescription(offer);
      await this.send("renegotiate", { type: "offer", sdp: offer.sdp });
      this.log("reconnected: renegotiating media");
    } catch (err) {
      showError("Resuming the call", err);
    }
  }

  // Inbound/outbound RTP counters from getStats(), per kind: what the page shows and the tests read.
  async stats() {
    const out = { inbound: { audio: 0, video: 0 }, outbound: { audio: 0, video: 0 }, rtt_ms: null };
    if (!this.call || !this.call.pc) return out;
    (await this.call.pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp") out.inbound[r.kind] += r.packetsReceived || 0;
      if (r.type === "outbound-rtp") out.outbound[r.kind] += r.packetsSent || 0;
      if (r.type === "candidate-pair" && r.nominated && r.currentRoundTripTime !== undefined) out.rtt_ms = r.currentRoundTripTime * 1000;
    });
    return out;
  }

  async showStats() {
    const s = await this.stats();
    $("call-stats").textContent = `packets in: audio ${s.inbound.audio}, video ${s.inbound.video}; out: audio ${s.outbound.audio}, video ${s.outbound.video}`
      + (s.rtt_ms === null ? "" : `; RTT ${Math.round(s.rtt_ms)} ms`);
  }

  // -- billing and the end --------------------------------------------------------------------------
  billed({ call_id, minute, credits, balance, refunded }) {
    if (!this.is(call_id)) return;
    this.log(refunded ? `minute ${minute} refunded: +${-credits} credits, balance ${balance}`
      : `minute ${minute} charged: ${credits} credits, balance ${balance}`);
  }

  async ended(e) {
    if (!this.is(e.call_id)) return;
    this.lastEnded = e;
    this.lastStats = await this.stats(); // what flowed, kept after the connection closes
    const why = END_WORDS[e.reason] || e.reason;
    const summary = `Call ended (${e.reason}): ${why} — ${e.duration_s} s, ${e.billed_minutes} billed minute${e.billed_minutes === 1 ? "" : "s"}, ${e.credits} credits`;
    this.log(summary);
    notice(summary, e.reason === "insufficient_credits" ? "error" : "info");
    this.teardown(summary);
  }

  // -- view -----------------------------------------------------------------------------------------
  phase(phase, text) {
    this.call.phase = phase;
    $("call-state").textContent = text;
    $("call-state").dataset.phase = phase;
  }

  log(text) {
    $("call-log").append(el("li", {}, `${time(new Date().toISOString())} ${text}`));
  }

  showGate(gate) {
    const probe = gate.probe ? `${gate.probe.grade} (MOS ${gate.probe.mos}, ${Math.round(gate.probe.age_s)} s ago)` : "none yet";
    const rows = [
      ["rate", `${gate.rate_per_minute} credits/min`],
      ["you can afford", `${gate.affordable_minutes} min`],
      ["callee", gate.callee.reachable ? `reachable (${gate.callee.via})` : `not reachable${gate.callee.reason ? `: ${gate.callee.reason}` : ""}`],
      ["last probe", probe + (gate.suggest_probe ? " — run the connection test" : "")],
    ];
    $("gate").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { testid: `gate-${k.replace(/ /g, "-")}` }, v)]));
    $("gate").hidden = false;
  }

  reset(text = "") {
    $("call-log").replaceChildren();
    $("call-warning").hidden = true;
    $("gate").hidden = true;
    if (text) $("call-state").textContent = text;
  }

  teardown(text) {
    const call = this.call;
    this.call = null;
    if (call) {
      clearInterval(call.statsTimer);
      if (call.pc) call.pc.close();
      if (call.local) call.local.getTracks().forEach((t) => t.stop());
    }
    $("local-video").srcObject = null;
    $("remote-video").srcObject = null;
    for (const id of ["call-accept", "call-reject", "call-hangup"]) $(id).hidden = true;
    $("call-state").textContent = text;
    $("call-state").dataset.phase = "ended";
  }
}
