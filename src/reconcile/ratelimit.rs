//! A token bucket bounding the reconciler's writes to the API server.

use std::time::Duration;

use tokio::time::Instant;

/// `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` is clamped to at least one token per hour, `burst` to at least 1.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(1.0 / 3600.0),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
    }

    /// How long until a token is available (zero when one is).
    pub fn wait_time(&mut self) -> Duration {
        self.refill();
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// Takes one token, sleeping until there is one.
    pub async fn acquire(&mut self) {
        loop {
            let wait = self.wait_time();
            if wait.is_zero() {
                self.tokens -= 1.0;
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Virtual time (tokio's paused clock): the count of tokens over 10 s is exact, not timed.
    #[tokio::test(start_paused = true)]
    async fn holds_the_rate_after_the_burst() {
        let mut bucket = TokenBucket::new(5.0, 3);
        let start = Instant::now();
        let mut taken = 0;
        while start.elapsed() < Duration::from_secs(10) {
            bucket.acquire().await;
            taken += 1;
        }
        // 3 saved up, then 5 per second for 10 s (the last one lands exactly at 10 s).
        assert!((52..=54).contains(&taken), "{taken}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_served_at_once() {
        let mut bucket = TokenBucket::new(1.0, 4);
        let start = Instant::now();
        for _ in 0..4 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        bucket.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
