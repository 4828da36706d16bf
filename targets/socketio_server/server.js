"use strict";
// The Socket.IO target of deliverybench (targets/socketio.py starts it).
//
// A real Socket.IO 4 server, as a team would run it: every client is connected to the
// default namespace over the WebSocket transport (Engine.IO 4), and each JSON body
// POSTed to /publish is emitted to all of them as `42["event",<body>]`. GET /health
// answers 200 with the number of clients. It listens on 127.0.0.1 only, on the port
// given as its one argument (0: any free port), and prints one ready line once it
// listens -- {"ready":true,"pid":…,"port":…} -- which is how the harness learns the port.

const http = require("node:http");
const { Server } = require("socket.io");

const HOST = "127.0.0.1";
const MAX_BODY = 1 << 20; // an event is far smaller; a bigger body is refused, not buffered
const BACKLOG = 4096; // thousands of sessions connect at once at the start of a run

function answer(res, status, body) {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function publish(req, res) {
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      answer(res, 413, '{"error":"body too large"}');
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (size > MAX_BODY) return;
    let event;
    try {
      event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (err) {
      answer(res, 400, JSON.stringify({ error: "the body is not JSON" }));
      return;
    }
    io.emit("event", event);
    res.writeHead(204);
    res.end();
  });
}

const server = http.createServer((req, res) => {
  // engine.io handles /socket.io/ itself and hands every other request to this listener
  if (req.method === "POST" && req.url === "/publish") {
    publish(req, res);
  } else if (req.method === "GET" && req.url === "/health") {
    // clients: Engine.IO sessions open; connected: those that joined the namespace (sent 40) and get events
    answer(res, 200, JSON.stringify({ clients: io.engine.clientsCount, connected: io.of("/").sockets.size }));
  } else {
    answer(res, 404, '{"error":"POST /publish, GET /health, or a Socket.IO client on /socket.io/"}');
  }
});
server.keepAliveTimeout = 120000; // the publisher keeps its connections for the whole run

const io = new Server(server, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: MAX_BODY,
});

server.listen({ host: HOST, port: Number(process.argv[2] || 0), backlog: BACKLOG }, () => {
  process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, port: server.address().port }) + "\n");
});
