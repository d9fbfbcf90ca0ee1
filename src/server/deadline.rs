//! Every wait on the network or on another task has a deadline; this is
//! the one way the server writes it.

use std::future::Future;
use std::time::Duration;

/// `fut`'s output if it is ready within `limit`, else `None`. Past the
/// limit `fut` is dropped, so whatever it was waiting on must be safe to
/// abandon midway (each caller says why it is).
pub async fn within<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_in_time_or_none() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                assert_eq!(within(Duration::from_secs(5), async { 7 }).await, Some(7));
                let never = std::future::pending::<()>();
                let started = std::time::Instant::now();
                assert_eq!(within(Duration::from_millis(20), never).await, None);
                assert!(started.elapsed() >= Duration::from_millis(20));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
