//! The per-channel client presence rate limiter.

/// Default presence messages one channel may send per window
/// (`CLIENT_PRESENCE_MAX_CALLS`).
pub const DEFAULT_CLIENT_PRESENCE_MAX_CALLS: u32 = 5;

/// Default length of that window (`CLIENT_PRESENCE_WINDOW_MS`).
pub const DEFAULT_CLIENT_PRESENCE_WINDOW_MS: u64 = 30_000;

/// The per-channel client presence limiter: at most `max_calls` presence
/// messages per window. Like the Elixir server's, the window is **fixed**
/// and starts at the first call after the previous window expired
/// (`now > reset_at`); a refused call does not count. The first call of a
/// window is always allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPresenceLimiter {
    /// Calls allowed per window.
    max_calls: u32,
    /// Window length.
    window_ms: u64,
    /// Calls allowed in the current window.
    counter: u32,
    /// End of the current window (inclusive); `None` before the first call.
    reset_at: Option<u64>,
}

impl Default for ClientPresenceLimiter {
    fn default() -> Self {
        Self::new(
            DEFAULT_CLIENT_PRESENCE_MAX_CALLS,
            DEFAULT_CLIENT_PRESENCE_WINDOW_MS,
        )
    }
}

impl ClientPresenceLimiter {
    /// A limiter allowing `max_calls` per `window_ms`.
    pub fn new(max_calls: u32, window_ms: u64) -> Self {
        ClientPresenceLimiter {
            max_calls,
            window_ms,
            counter: 0,
            reset_at: None,
        }
    }

    /// Counts one presence message at `now_ms`; `false` means the limit is
    /// exceeded (the server then shuts the channel down with
    /// `Client presence rate limit exceeded`).
    pub fn allow(&mut self, now_ms: u64) -> bool {
        match self.reset_at {
            Some(reset_at) if now_ms <= reset_at => {
                if self.counter >= self.max_calls {
                    false
                } else {
                    self.counter += 1;
                    true
                }
            }
            _ => {
                self.counter = 1;
                self.reset_at = Some(now_ms.saturating_add(self.window_ms));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn limiter_fixed_window() {
        let mut l = ClientPresenceLimiter::new(5, 30_000);
        for i in 0..5 {
            assert!(l.allow(1000 + i), "call {i}");
        }
        assert!(!l.allow(2000));
        assert!(
            !l.allow(31_000),
            "reset_at itself is still inside the window"
        );
        assert!(l.allow(31_001), "new window");
        for _ in 0..4 {
            assert!(l.allow(31_002));
        }
        assert!(!l.allow(61_001));
        assert!(l.allow(61_002));
        assert_eq!(
            ClientPresenceLimiter::default(),
            ClientPresenceLimiter::new(5, 30_000)
        );
    }

    #[test]
    fn limiter_zero_calls_still_allows_the_first() {
        let mut l = ClientPresenceLimiter::new(0, 10);
        assert!(l.allow(0));
        assert!(!l.allow(5));
        assert!(l.allow(11));
    }
}
