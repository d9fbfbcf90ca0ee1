//! Every wait on the network or on another task has a deadline; this is
//! the one way the server writes it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use glommio::timer::Timer;

/// `fut`'s output if it is ready within `limit`, else `None`. Past the
/// limit `fut` is dropped, so whatever it was waiting on must be safe to
/// abandon midway (each caller says why it is).
///
/// A plain combinator, not an `async fn`: an `async fn` keeps its
/// argument and the future it awaits in separate slots, so every layer of
/// waits wrapped in waits doubled the size of the futures inside it, and
/// one such chain (a replay query inside the database client's own
/// deadline) overflowed a shard's 2 MiB stack while being built.
pub fn within<F: Future>(limit: Duration, fut: F) -> Within<F> {
    Within {
        fut,
        timer: Timer::new(limit),
    }
}

pin_project_lite::pin_project! {
    /// What [`within`] returns.
    pub struct Within<F> {
        #[pin]
        fut: F,
        timer: Timer,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        match Pin::new(this.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
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
