//! Rate limits on sign-in requests, per email address and per client address (in memory, per
//! process; each replica limits on its own).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

pub struct SigninLimits {
    per_email: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<String>,
    /// Passkey sign-in challenges (asked on every visit of the sign-in page where the browser
    /// offers passkeys in autofill): more generous, kept apart from email-link asks.
    ceremonies_per_ip: DefaultKeyedRateLimiter<String>,
}

impl Default for SigninLimits {
    fn default() -> Self {
        // Five links per address, then one every two minutes; twenty asks per client address,
        // then one every six seconds.
        let email = Quota::with_period(Duration::from_secs(120)).map(|q| q.allow_burst(nonzero(5)));
        let ip = Quota::with_period(Duration::from_secs(6)).map(|q| q.allow_burst(nonzero(20)));
        let ceremonies =
            Quota::with_period(Duration::from_secs(1)).map(|q| q.allow_burst(nonzero(60)));
        Self {
            per_email: RateLimiter::keyed(email.unwrap_or_else(|| Quota::per_minute(nonzero(1)))),
            per_ip: RateLimiter::keyed(ip.unwrap_or_else(|| Quota::per_minute(nonzero(10)))),
            ceremonies_per_ip: RateLimiter::keyed(
                ceremonies.unwrap_or_else(|| Quota::per_minute(nonzero(60))),
            ),
        }
    }
}

fn refuse(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> AppError {
    AppError::TooManyRequests {
        retry_after_secs: not_until
            .wait_time_from(DefaultClock::default().now())
            .as_secs()
            .max(1),
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl SigninLimits {
    /// Counts one attempt; refuses with the seconds to wait when either limit is reached.
    pub fn check(&self, email: &str, ip: Option<&str>) -> Result<(), AppError> {
        self.check_ip(ip)?;
        self.per_email
            .check_key(&email.trim().to_lowercase())
            .map_err(refuse)?;
        Ok(())
    }

    /// Counts one passkey sign-in challenge of a client address.
    pub fn check_ceremony(&self, ip: Option<&str>) -> Result<(), AppError> {
        if let Some(ip) = ip {
            self.ceremonies_per_ip
                .check_key(&ip.to_owned())
                .map_err(refuse)?;
        }
        Ok(())
    }

    /// Counts one attempt that names no address (a device login code).
    pub fn check_ip(&self, ip: Option<&str>) -> Result<(), AppError> {
        if let Some(ip) = ip {
            self.per_ip.check_key(&ip.to_owned()).map_err(refuse)?;
        }
        Ok(())
    }
}
