// The wallet: balance live from `wallet:updated`, packages, and buying with the dev provider.
import { newId, rest } from "./net.js";
import { $, el, notice, showError } from "./ui.js";

export class Wallet {
  constructor(socket, token) {
    this.token = token;
    this.balance = null;
    // Account events arrive on every namespace the user is connected to: listen on one of them only.
    socket.on("wallet:updated", (w) => {
      this.show(w);
      notice(`Wallet ${w.delta >= 0 ? "+" : ""}${w.delta} (${w.reason}), balance ${w.balance}`);
    });
    $("buy").addEventListener("click", () => this.buy());
  }

  async load() {
    try {
      const [wallet, catalogue] = await Promise.all([
        rest("GET", "/api/wallet", { token: this.token }), rest("GET", "/api/credits/packages")]);
      this.show(wallet);
      this.providers = catalogue.providers.map((p) => p.id);
      $("package").replaceChildren(...catalogue.packages.map((p) =>
        el("option", { value: p.id }, `${p.name}: ${p.credits} credits`)));
      $("buy").disabled = !this.providers.includes("dev");
      $("buy").title = this.providers.includes("dev") ? "completes at once; no real payment"
        : "the dev provider is not offered by this server";
    } catch (err) {
      showError("Loading the wallet", err);
    }
  }

  show({ balance, held, available }) {
    this.balance = balance;
    $("balance").textContent = String(balance);
    $("held").textContent = held ? `(${held} held, ${available} available)` : "";
  }

  async buy() {
    const package_id = $("package").value;
    try {
      // The idempotency key makes a retried click (after a lost response) one purchase, not two.
      const purchase = await rest("POST", "/api/purchases", {
        token: this.token, body: { package_id, provider: "dev", idempotency_key: newId() } });
      notice(`Purchase ${purchase.status}: ${purchase.credits} credits (${package_id})`);
    } catch (err) {
      showError("Purchase failed", err);
    }
  }
}
