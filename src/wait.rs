//! The one waiting helper: polls a condition until it holds or a deadline passes, and says what
//! it waited for, and what it last saw, when it gives up.

use std::future::Future;
use std::time::{Duration, Instant};

/// What one check of a condition found.
#[derive(Debug)]
pub enum Poll<T, E> {
    /// The condition holds.
    Ready(T),
    /// Not yet; why (kept for the message when the deadline passes).
    Pending(String),
    /// A failure that waiting cannot fix: stop now.
    Abort(E),
}

/// Why a wait ended without its condition.
#[derive(Debug, thiserror::Error)]
pub enum WaitError<E> {
    #[error("gave up waiting for {what} after {}s{}", .waited.as_secs(), if .last.is_empty() { String::new() } else { format!(": {}", .last) })]
    TimedOut {
        what: String,
        waited: Duration,
        /// What the last check reported.
        last: String,
    },
    #[error(transparent)]
    Aborted(E),
}

impl<E> WaitError<E> {
    /// Turns a wait's failure into the caller's error type.
    pub fn into_error(self, timed_out: impl FnOnce(String) -> E) -> E
    where
        E: std::fmt::Display,
    {
        match self {
            WaitError::Aborted(e) => e,
            t @ WaitError::TimedOut { .. } => timed_out(t.to_string()),
        }
    }
}

/// Checks `check` every `interval` until it is ready, aborts, or `deadline` has passed since
/// the first check (the last check runs at or after the deadline, never a sleep past it).
/// `what` completes "gave up waiting for ...".
pub async fn poll_until<T, E, F, Fut>(
    deadline: Duration,
    interval: Duration,
    what: &str,
    mut check: F,
) -> Result<T, WaitError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Poll<T, E>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Poll::Ready(v) => return Ok(v),
            Poll::Abort(e) => return Err(WaitError::Aborted(e)),
            Poll::Pending(why) => why,
        };
        let waited = start.elapsed();
        if waited >= deadline {
            tracing::debug!("gave up waiting for {what} after {waited:?}: {last}");
            return Err(WaitError::TimedOut {
                what: what.to_string(),
                waited,
                last,
            });
        }
        tracing::trace!("waiting for {what}: {last}");
        tokio::time::sleep(interval.min(deadline - waited)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn ready_after_some_checks() {
        let n = AtomicU32::new(0);
        let r: Result<u32, WaitError<String>> =
            poll_until(Duration::from_secs(5), Duration::from_millis(5), "three", || {
                let i = n.fetch_add(1, Ordering::SeqCst);
                async move {
                    if i >= 2 {
                        Poll::Ready(i)
                    } else {
                        Poll::Pending(format!("check {i}"))
                    }
                }
            })
            .await;
        assert_eq!(r.unwrap(), 2);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_saying_what_and_last_seen() {
        let start = Instant::now();
        let r: Result<(), WaitError<String>> = poll_until(
            Duration::from_millis(120),
            Duration::from_millis(50),
            "node w1 to be Ready",
            || async { Poll::Pending("w1: KubeletNotReady".into()) },
        )
        .await;
        let e = r.unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(120));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(
            e.to_string()
                .starts_with("gave up waiting for node w1 to be Ready after 0s: w1: KubeletNotReady"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn abort_stops_at_once() {
        let n = AtomicU32::new(0);
        let r: Result<(), WaitError<String>> =
            poll_until(Duration::from_secs(60), Duration::from_secs(10), "x", || {
                n.fetch_add(1, Ordering::SeqCst);
                async { Poll::Abort("refused".to_string()) }
            })
            .await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(r.unwrap_err().into_error(|t| t), "refused");
    }
}
