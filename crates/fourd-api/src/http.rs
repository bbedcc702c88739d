//! One JSON POST with retries: the part both clients share.
//!
//! Retried: timeouts, connection errors (refused, reset, DNS, a reply cut short), HTTP 429 and
//! 5xx. Not retried: other 4xx, bad URLs, TLS configuration errors. The wait before retry `n`
//! (0-based) is `backoff * 2^n`, capped at [`MAX_BACKOFF`]; a `Retry-After` header (seconds or an
//! HTTP date) on a 429/5xx reply replaces it, capped at [`MAX_RETRY_AFTER`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{snippet, ApiError};

/// The longest exponential-backoff wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest wait a server's `Retry-After` can ask for; longer values are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The largest reply body read (masks for many large frames are big).
const MAX_BODY: u64 = 1 << 30;
/// Characters of an error reply's body kept in [`ApiError::Status`].
const ERROR_BODY_CHARS: usize = 600;

/// Retry settings and the HTTP agent.
#[derive(Clone)]
pub(crate) struct Poster {
    agent: ureq::Agent,
    timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    bearer: Option<String>,
}

/// Why one attempt failed, and whether to try again.
enum Attempt {
    Retry {
        error: ApiError,
        retry_after: Option<Duration>,
    },
    Fatal(ApiError),
}

impl Poster {
    pub(crate) fn new(
        timeout: Duration,
        max_retries: u32,
        backoff: Duration,
        bearer: Option<String>,
    ) -> Result<Self, ApiError> {
        if timeout.is_zero() {
            return Err(ApiError::Config("timeout must be greater than zero".into()));
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("fourd-api/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
            timeout,
            max_retries,
            backoff,
            bearer: bearer.filter(|k| !k.trim().is_empty()),
        })
    }

    /// POSTs `body` (JSON) to `url` and returns the body of the first 2xx reply.
    pub(crate) fn post_json(&self, url: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        let attempts_allowed = self.max_retries.saturating_add(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.try_once(url, body, attempt) {
                Ok(reply) => {
                    if attempt > 1 {
                        tracing::info!(url, attempt, "request succeeded after retrying");
                    }
                    return Ok(reply);
                }
                Err(Attempt::Fatal(error)) => return Err(error),
                Err(Attempt::Retry { error, retry_after }) => {
                    if attempt >= attempts_allowed {
                        return Err(error);
                    }
                    let wait = match retry_after {
                        Some(ra) => ra.min(MAX_RETRY_AFTER),
                        None => self.backoff_for(attempt - 1),
                    };
                    tracing::warn!(
                        url,
                        attempt,
                        max_attempts = attempts_allowed,
                        wait_ms = wait.as_millis() as u64,
                        error = %error,
                        "request failed, retrying"
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }

    fn backoff_for(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }

    fn try_once(&self, url: &str, body: &[u8], attempt: u32) -> Result<Vec<u8>, Attempt> {
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(key) = &self.bearer {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        tracing::debug!(url, attempt, bytes = body.len(), "POST");
        let mut response = match request.send(body) {
            Ok(response) => response,
            Err(e) => return Err(self.classify(url, attempt, e)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let reply = match response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
        {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.classify(url, attempt, e)),
        };
        if (200..300).contains(&status) {
            return Ok(reply);
        }
        let error = ApiError::Status {
            url: url.to_string(),
            status,
            attempts: attempt,
            body: snippet(&reply, ERROR_BODY_CHARS),
        };
        if status == 429 || status >= 500 {
            Err(Attempt::Retry { error, retry_after })
        } else {
            Err(Attempt::Fatal(error))
        }
    }

    fn classify(&self, url: &str, attempts: u32, e: ureq::Error) -> Attempt {
        let url = url.to_string();
        match e {
            ureq::Error::Timeout(_) => Attempt::Retry {
                error: ApiError::Timeout {
                    url,
                    timeout: self.timeout,
                    attempts,
                },
                retry_after: None,
            },
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Attempt::Retry {
                    error: ApiError::Timeout {
                        url,
                        timeout: self.timeout,
                        attempts,
                    },
                    retry_after: None,
                }
            }
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_) => Attempt::Retry {
                error: ApiError::Transport {
                    url,
                    attempts,
                    message: e.to_string(),
                },
                retry_after: None,
            },
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                Attempt::Fatal(ApiError::Config(format!("cannot request {url}: {e}")))
            }
            ureq::Error::BodyExceedsLimit(limit) => Attempt::Fatal(ApiError::MalformedReply {
                url,
                field: "(body)".into(),
                problem: format!("is larger than {limit} bytes"),
            }),
            other => Attempt::Fatal(ApiError::Transport {
                url,
                attempts,
                message: other.to_string(),
            }),
        }
    }
}

/// `Retry-After: <seconds>` or `Retry-After: <IMF-fixdate>` (RFC 9110 section 10.2.3).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(
                secs.min(MAX_RETRY_AFTER.as_secs_f64()),
            ));
        }
        return None;
    }
    let at = parse_http_date(value)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` -> seconds since the Unix epoch.
fn parse_http_date(value: &str) -> Option<u64> {
    let rest = value.split_once(", ")?.1;
    let mut parts = rest.split_whitespace();
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let s: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Thu, 01 Foo 1970 00:00:00 GMT"), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = Poster::new(Duration::from_secs(1), 3, Duration::from_millis(100), None).unwrap();
        assert_eq!(p.backoff_for(0), Duration::from_millis(100));
        assert_eq!(p.backoff_for(1), Duration::from_millis(200));
        assert_eq!(p.backoff_for(3), Duration::from_millis(800));
        assert_eq!(p.backoff_for(40), MAX_BACKOFF);
    }
}
