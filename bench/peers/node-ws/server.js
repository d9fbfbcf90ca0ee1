// peer-node-ws: a comparison peer, not part of the server.
//
// A single-process Node `ws` broadcast relay speaking the tiny text protocol
// in ../README.md:
//   "sub <topic>"           subscribe this connection; answered "ok <topic>"
//   "pub <topic> <payload>" send <payload> as a text frame to every
//                           subscriber of <topic> (the sender too, if
//                           subscribed); no answer
// Listens on 127.0.0.1:$PORT (default 4101).
'use strict';

const { WebSocketServer } = require('ws');

const port = Number(process.env.PORT || 4101);
// topic -> Set of sockets subscribed to it
const topics = new Map();

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });

wss.on('connection', (ws) => {
  const joined = [];
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const text = data.toString();
    if (text.startsWith('sub ')) {
      const topic = text.slice(4);
      let subs = topics.get(topic);
      if (!subs) {
        subs = new Set();
        topics.set(topic, subs);
      }
      subs.add(ws);
      joined.push(topic);
      ws.send(`ok ${topic}`);
    } else if (text.startsWith('pub ')) {
      const sp = text.indexOf(' ', 4);
      if (sp < 0) return;
      const subs = topics.get(text.slice(4, sp));
      if (!subs) return;
      // Encode the payload once; every subscriber gets the same buffer.
      const payload = Buffer.from(text.slice(sp + 1));
      for (const s of subs) {
        if (s.readyState === 1) s.send(payload, { binary: false });
      }
    } else {
      ws.send('err unknown command');
    }
  });
  ws.on('close', () => {
    for (const topic of joined) {
      const subs = topics.get(topic);
      if (!subs) continue;
      subs.delete(ws);
      if (subs.size === 0) topics.delete(topic);
    }
  });
  ws.on('error', () => {});
});

wss.on('listening', () => console.error(`peer-node-ws listening on 127.0.0.1:${port}`));
