// Small DOM helpers shared by the page's modules.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "testid") node.dataset.testid = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// Notices: what happened and every error, in words. `error` may be a RequestError or any Error.
export function notice(text, level = "info") {
  const list = $("notices");
  list.prepend(el("li", { class: level, testid: `notice-${level}` }, `${time(new Date().toISOString())} ${text}`));
  while (list.children.length > 50) list.lastChild.remove();
}

export function showError(what, error) {
  notice(`${what}: ${error.words || error.message}`, "error");
}

export function presenceText(p) {
  if (!p) return "";
  if (p.status === "offline") return p.last_seen ? `offline, last seen ${time(p.last_seen)}` : "offline";
  return p.status;
}
