//! A load generator for `fourd bench serve`: `clients` threads send streaming chat requests to
//! a server on this machine, one after another each, until `requests` are answered or the time
//! is up, and the report gives throughput (generated tokens per second of wall time), time to the
//! first token and end-to-end latency. One client is the same requests run one at a time.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One load run's measurements.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub clients: usize,
    /// Requests answered.
    pub requests: usize,
    pub wall_seconds: f64,
    /// Generated tokens (the usage's `completion_tokens`, imagery steps included).
    pub tokens: usize,
    /// Per request, seconds: to the first generated token, and to the end of the answer.
    pub ttft: Vec<f64>,
    pub latency: Vec<f64>,
}

impl LoadReport {
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.wall_seconds.max(1e-9)
    }
}

/// The `q`-quantile (0..=1) of `v`, nearest rank; 0 when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// One streamed request: (seconds to the first token, seconds to the end, generated tokens).
fn one(agent: &ureq::Agent, url: &str, body: &str) -> Result<(f64, f64, usize), String> {
    let started = Instant::now();
    let mut resp = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| format!("request failed: {e}"))?;
    if resp.status().as_u16() != 200 {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        return Err(format!("HTTP {}: {text}", resp.status()));
    }
    let mut first = None;
    let mut tokens = 0;
    for line in BufReader::new(resp.body_mut().as_reader()).lines() {
        let line = line.map_err(|e| format!("reading the stream: {e}"))?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: serde_json::Value =
            serde_json::from_str(data).map_err(|e| format!("a chunk is not JSON: {e}"))?;
        if let Some(e) = v.get("error") {
            return Err(format!("the server failed the request: {e}"));
        }
        let delta = &v["choices"][0]["delta"];
        let token = delta["content"].as_str().is_some_and(|t| !t.is_empty())
            || delta.get("latent_segment").is_some()
            || v["choices"][0]["finish_reason"].is_string();
        if token && first.is_none() {
            first = Some(started.elapsed().as_secs_f64());
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            tokens = n as usize;
        }
    }
    let end = started.elapsed().as_secs_f64();
    Ok((first.unwrap_or(end), end, tokens))
}

/// Sends `bodies` (chat requests with `"stream": true` and `stream_options.include_usage`), in
/// turn, from `clients` threads, until `requests` are answered or `limit` has passed.
pub fn run(
    addr: SocketAddr,
    bodies: &[String],
    clients: usize,
    requests: usize,
    limit: Duration,
) -> Result<LoadReport, String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr}: the load generator only talks to this machine"
        ));
    }
    if bodies.is_empty() || clients == 0 {
        return Err("no requests or no clients".into());
    }
    let url = format!("http://{addr}/v1/chat/completions");
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let failure = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= requests || started.elapsed() > limit {
                        return;
                    }
                    match one(&agent, &url, &bodies[i % bodies.len()]) {
                        Ok(r) => results.lock().expect("results").push(r),
                        Err(e) => {
                            failure.lock().expect("failure").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("failure") {
        return Err(e);
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let results = results.into_inner().expect("results");
    Ok(LoadReport {
        clients,
        requests: results.len(),
        wall_seconds,
        tokens: results.iter().map(|r| r.2).sum(),
        ttft: results.iter().map(|r| r.0).collect(),
        latency: results.iter().map(|r| r.1).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert_eq!(quantile(&v, 0.99), 4.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
