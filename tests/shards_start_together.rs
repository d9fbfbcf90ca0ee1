//! Several servers of four shards each, started at once on a busy
//! machine, all come up. A shard's executor that went to sleep while it
//! joined the other shards used to sleep for good: the process never
//! listened (about half of them, started this way on two cores).

mod support;
use support::*;

#[test]
fn eight_servers_of_four_shards_started_at_once_all_serve() {
    let servers: Vec<Server> = std::thread::scope(|s| {
        let starting: Vec<_> = (0..8)
            .map(|_| s.spawn(|| Server::start(&[("SHARDS", "4")])))
            .collect();
        starting.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for srv in &servers {
        let (status, _, body) = srv.http("GET", "/healthcheck", &[], b"");
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    }
}
