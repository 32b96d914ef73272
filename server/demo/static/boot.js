// Loads the pinned Socket.IO browser bundle for the chosen wire parser, then the page's modules.
// Both bundles define the global `io`; the msgpack one is the same client built with
// socket.io-msgpack-parser. The server tells the parsers apart by the first packet (docs/demo.md).
(function () {
  "use strict";
  const parser = new URLSearchParams(location.search).get("parser") === "msgpack" ? "msgpack" : "json";
  const script = document.createElement("script");
  script.src = parser === "msgpack" ? "vendor/socket.io.msgpack.min.js" : "vendor/socket.io.min.js";
  script.onload = () => import("./app.js").then((app) => app.start(parser));
  script.onerror = () => { document.body.textContent = "Could not load " + script.src; };
  document.head.appendChild(script);
})();
