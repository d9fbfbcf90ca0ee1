//! A nats-server for tests: the Debian package `scripts/install-deps`
//! installs, on a free loopback port, stopped on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server on a free loopback port, stopped on drop.
pub struct Nats {
    child: Child,
    pub addr: SocketAddr,
    conf: std::path::PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Nats {
    /// Started with `config` (nats-server's configuration format).
    pub fn start(config: &str) -> Nats {
        let port = super::free_port();
        let dir = std::env::temp_dir().join(format!("rt-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nats.conf");
        std::fs::write(&conf, format!("host: 127.0.0.1\nport: {port}\n{config}\n")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Nats {
            child: spawn(&conf, addr),
            addr,
            conf,
            _dir: tempdir::Dir(dir),
        }
    }

    /// `nats://host:port`, for `NATS_URL`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills the server (SIGKILL: its clients see their connections cut).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.conf, self.addr);
    }
}

fn spawn(conf: &std::path::Path, addr: SocketAddr) -> Child {
    let child = Command::new("nats-server")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (scripts/install-deps installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every shard of `node` is connected to NATS (or, with
/// `up` false, none is).
pub fn until_connected(node: &super::Server, up: bool) {
    let shards = node.metric_by_shard("realtime_connections").len() as i64;
    let want = if up { shards } else { 0 };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = node.metric("realtime_nats_connected");
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} of {shards} shards connected, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
