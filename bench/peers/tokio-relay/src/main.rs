//! `peer-tokio-relay`: a comparison peer, not part of the server.
//!
//! The broadcast relay most Rust developers would write first: a
//! single-threaded (`current_thread`) tokio runtime, tokio-tungstenite for
//! WebSocket, one task reading each connection and one task writing it, an
//! unbounded mpsc channel per subscriber, and the topic table behind a mutex.
//! It speaks the tiny text protocol described in `bench/peers/README.md`:
//!
//! - `sub <topic>`: subscribe this connection; answered with `ok <topic>`.
//! - `pub <topic> <payload>`: send `<payload>` as a text frame to every
//!   subscriber of `<topic>` (the sender too, if subscribed). No answer.
//!
//! Listens on 127.0.0.1:`$PORT` (default 4102).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Default listening port.
const DEFAULT_PORT: u16 = 4102;

/// Subscribers by topic: (connection id, that connection's outbound queue).
type Table = Arc<Mutex<HashMap<String, Vec<(u64, UnboundedSender<Message>)>>>>;

fn main() -> std::io::Result<()> {
    let port = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|e| std::io::Error::other(format!("PORT={p:?}: {e}")))?,
        Err(_) => DEFAULT_PORT,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(serve(port))
}

/// Accepts forever; one task per connection.
async fn serve(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("peer-tokio-relay listening on 127.0.0.1:{port}");
    let table = Table::default();
    let mut next_id = 0u64;
    loop {
        let (sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        next_id += 1;
        tokio::spawn(connection(sock, next_id, table.clone()));
    }
}

/// One WebSocket connection: reads commands until it closes, then leaves
/// every topic it joined.
async fn connection(sock: TcpStream, id: u64, table: Table) {
    let Ok(ws) = tokio_tungstenite::accept_async(sock).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    // The writer: drains the queue, flushing once per batch it finds.
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut joined: Vec<String> = Vec::new();
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else {
            continue;
        };
        let text = text.as_str();
        if let Some(topic) = text.strip_prefix("sub ") {
            table
                .lock()
                .expect("topic table poisoned")
                .entry(topic.to_string())
                .or_default()
                .push((id, tx.clone()));
            joined.push(topic.to_string());
            let _ = tx.send(Message::text(format!("ok {topic}")));
        } else if let Some((topic, payload)) =
            text.strip_prefix("pub ").and_then(|r| r.split_once(' '))
        {
            // One shared buffer; each subscriber's queue gets a cheap clone.
            let frame = Message::Text(Utf8Bytes::from(payload.to_string()));
            if let Some(subs) = table.lock().expect("topic table poisoned").get(topic) {
                for (_, sub) in subs {
                    let _ = sub.send(frame.clone());
                }
            }
        } else {
            let _ = tx.send(Message::text("err unknown command"));
        }
    }
    let mut t = table.lock().expect("topic table poisoned");
    for topic in joined {
        if let Some(subs) = t.get_mut(&topic) {
            subs.retain(|(sid, _)| *sid != id);
            if subs.is_empty() {
                t.remove(&topic);
            }
        }
    }
    drop(t);
    writer.abort();
}
