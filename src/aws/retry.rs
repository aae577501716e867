//! Retries of whole operations (an object upload, a listing page) with exponential back-off.
//!
//! The SDK already retries each request (see [`super::sdk_config`]); this outer loop covers
//! what a single request retry cannot: a multipart upload or a streamed read restarted as a
//! whole, and outages longer than the SDK's attempts.

use std::future::Future;
use std::time::Duration;

/// Attempts of [`retry`], and the first and longest pause between them.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Pause after the first failure; doubled after each further one.
    pub initial: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for Backoff {
    /// 8 attempts, 200 ms doubling to 5 s: rides out about half a minute of outage.
    fn default() -> Self {
        Backoff {
            attempts: 8,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The pause before attempt `n + 1` (n from 0).
    pub fn pause(&self, n: u32) -> Duration {
        self.initial.saturating_mul(1u32 << n.min(16)).min(self.max)
    }
}

/// Runs `op` until it succeeds or `backoff.attempts` are used; logs each failure with `what`.
pub async fn retry<T, E, F, Fut>(what: &str, backoff: Backoff, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut n = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if n + 1 < backoff.attempts.max(1) => {
                let pause = backoff.pause(n);
                tracing::warn!(attempt = n + 1, ?pause, "{what}: {e:#}; retrying");
                tokio::time::sleep(pause).await;
                n += 1;
            }
            Err(e) => anyhow::bail!("{what}: {e:#} (after {} attempts)", n + 1),
        }
    }
}
