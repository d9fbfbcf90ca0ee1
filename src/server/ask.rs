//! Questions a shard asked another and waits for: a ticket per question,
//! the answer parked under it until the asker polls, and a deadline, so
//! that a shard that never answers costs a timeout, not a hang. A leaf:
//! the asking itself is `ShardState::ask`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::task::{Poll, Waker};
use std::time::Duration;

/// This shard's open questions of one kind, by ticket: the answer once it
/// came, and the asker's waker.
pub struct Asks<T>(RefCell<HashMap<u64, Slot<T>>>);

/// One open question: its answer once it came, and the asker's waker.
type Slot<T> = (Option<T>, Option<Waker>);

impl<T> Default for Asks<T> {
    fn default() -> Self {
        Self(RefCell::default())
    }
}

impl<T> Asks<T> {
    /// The answer to question `ticket` came.
    pub fn answered(&self, ticket: u64, answer: T) {
        let mut open = self.0.borrow_mut();
        if let Some((slot, waker)) = open.get_mut(&ticket) {
            *slot = Some(answer);
            if let Some(w) = waker.take() {
                w.wake();
            }
        }
    }
}

impl<T> Asks<T> {
    /// Opens question `ticket`.
    fn open(&self, ticket: u64) {
        self.0.borrow_mut().insert(ticket, (None, None));
    }

    /// Forgets question `ticket`.
    fn close(&self, ticket: u64) {
        self.0.borrow_mut().remove(&ticket);
    }

    /// Waits for the answer to `ticket`, at most `wait`; `None` past it.
    pub async fn wait(&self, ticket: u64, wait: Duration) -> Option<T> {
        let answer = std::future::poll_fn(|cx| {
            let mut open = self.0.borrow_mut();
            match open.get_mut(&ticket) {
                Some((Some(_), _)) => Poll::Ready(open.remove(&ticket).and_then(|(a, _)| a)),
                Some((None, waker)) => {
                    *waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                None => Poll::Ready(None),
            }
        });
        let answer = super::deadline::within(wait, answer).await;
        if answer.is_none() {
            self.close(ticket);
        }
        answer.flatten()
    }

    /// Opens a question; its ticket comes from `next`.
    pub fn ticket(&self, next: &std::cell::Cell<u64>) -> Ticket<'_, T> {
        let t = next.get();
        next.set(t + 1);
        self.open(t);
        Ticket { asks: self, id: t }
    }
}

/// An open question; dropped unanswered (a send that failed), it is
/// forgotten.
pub struct Ticket<'a, T> {
    asks: &'a Asks<T>,
    /// Its number.
    pub id: u64,
}

impl<T> Ticket<'_, T> {
    /// Waits for its answer (see [`Asks::wait`]).
    pub async fn answer(self, wait: Duration) -> Option<T> {
        let id = self.id;
        let asks = self.asks;
        std::mem::forget(self);
        asks.wait(id, wait).await
    }
}

impl<T> Drop for Ticket<'_, T> {
    fn drop(&mut self) {
        self.asks.close(self.id);
    }
}
