// The pre-call probe: a WebRTC connection to the server's own peer that measures the path
// (`call:probe` → answer, then `call:probe:result`). The server sends timestamped packets on a data
// channel named "probe"; the page echoes each one back unchanged, and the server grades the echoes.
import { request } from "./net.js";
import { $, showError } from "./ui.js";

const GATHER_TIMEOUT_MS = 5000;
const RESULT_TIMEOUT_MS = 30000;
const GRADE_WORDS = {
  excellent: "excellent — calls will sound great",
  good: "good",
  fair: "fair — expect some glitches",
  poor: "poor — calls may be hard to follow",
  unreachable: "unreachable — no media path to the server",
};

export class Probe {
  constructor(socket) {
    this.socket = socket;
    this.results = new Map(); // probe_id -> result (it may arrive before we read the ack)
    this.waiters = new Map();
    this.last = null;
    socket.on("call:probe:result", (r) => {
      const waiter = this.waiters.get(r.probe_id);
      if (waiter) waiter(r); else this.results.set(r.probe_id, r);
    });
    $("probe-run").addEventListener("click", () => this.run());
  }

  async run(iceServers) {
    $("probe-run").disabled = true;
    $("probe-result").textContent = "testing…";
    let pc = null;
    let mic = null;
    try {
      if (!iceServers) iceServers = (await request(this.socket, "call:ice_servers", {})).ice_servers;
      pc = new RTCPeerConnection({ iceServers });
      // With the microphone the probe also measures what a call sends (the server folds in its RTP
      // stats), and Chromium offers the machine's real addresses: without a media permission it hides
      // host candidates behind mDNS names. Refused, the probe runs on the data channel alone.
      mic = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => null);
      if (mic) mic.getTracks().forEach((track) => pc.addTrack(track, mic));
      const channel = pc.createDataChannel("probe");
      channel.onmessage = (e) => channel.send(e.data); // echo unchanged: the server times the round trip
      await pc.setLocalDescription(await pc.createOffer());
      // No trickle here: call:probe carries one offer, so send it with every candidate gathered.
      await gathered(pc);
      const ack = await request(this.socket, "call:probe", { sdp: pc.localDescription.sdp, type: "offer" });
      await pc.setRemoteDescription({ type: "answer", sdp: ack.sdp });
      const result = await this.result(ack.probe_id);
      this.last = result;
      $("probe-result").textContent = describe(result);
      $("probe-result").dataset.grade = result.grade;
      return result;
    } catch (err) {
      $("probe-result").textContent = `failed: ${err.words || err.message}`;
      showError("Connection test", err);
      return null;
    } finally {
      if (pc) pc.close();
      if (mic) mic.getTracks().forEach((track) => track.stop());
      $("probe-run").disabled = false;
    }
  }

  result(probeId) {
    if (this.results.has(probeId)) {
      const r = this.results.get(probeId);
      this.results.delete(probeId);
      return Promise.resolve(r);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(probeId);
        reject(new Error(`no result within ${RESULT_TIMEOUT_MS / 1000} s`));
      }, RESULT_TIMEOUT_MS);
      this.waiters.set(probeId, (r) => { clearTimeout(timer); this.waiters.delete(probeId); resolve(r); });
    });
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); } };
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS); // send what we have
    pc.addEventListener("icegatheringstatechange", done);
  });
}

function describe(r) {
  const fmt = (v, unit = "") => (v === null || v === undefined ? "–" : `${Math.round(v * 10) / 10}${unit}`);
  const rtt = r.rtt_ms || {};
  return `Grade: ${GRADE_WORDS[r.grade] || r.grade}. MOS ${fmt(r.mos)}, RTT p50 ${fmt(rtt.p50, " ms")} / p95 ${fmt(rtt.p95, " ms")}, jitter ${fmt(r.jitter_ms, " ms")}, loss ${fmt(r.loss_pct, " %")}`;
}
