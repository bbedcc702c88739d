//! `GET /metrics` in Prometheus' text format, with vLLM's kind of figures: requests by outcome,
//! prompt and generated tokens, requests waiting and sequences running, and histograms of the
//! time to the first token and between tokens.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A Prometheus histogram over [`BUCKETS`].
#[derive(Default)]
pub struct Histogram {
    inner: Mutex<HistogramState>,
}

#[derive(Default)]
struct HistogramState {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let Ok(mut h) = self.inner.lock() else { return };
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.lock().map_or(0, |h| h.count)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let Ok(h) = self.inner.lock() else { return };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = h.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
    }
}

/// The server's counters, shared by the HTTP side and the model thread.
#[derive(Default)]
pub struct Metrics {
    /// Finished requests by outcome: `success`, `error` (a bad request or a model failure),
    /// `cancelled` (the client went away), `rejected` (a full queue, a wrong key).
    requests: Mutex<BTreeMap<&'static str, u64>>,
    pub prompt_tokens: AtomicU64,
    pub generation_tokens: AtomicU64,
    /// Requests sent to the model thread and not yet admitted.
    pub queued: AtomicI64,
    /// Sequences in the running batch.
    pub running: AtomicI64,
    pub ttft: Histogram,
    pub per_token: Histogram,
}

impl Metrics {
    pub fn count(&self, outcome: &'static str) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry(outcome).or_default() += 1;
        }
    }

    /// Requests that ended with `outcome`.
    pub fn requests(&self, outcome: &str) -> u64 {
        self.requests
            .lock()
            .map_or(0, |m| m.get(outcome).copied().unwrap_or(0))
    }

    pub fn render(&self, model: &str) -> String {
        let mut out = String::new();
        let label = format!("model_name=\"{}\"", model.replace('"', "'"));
        let _ = writeln!(
            out,
            "# HELP fourd_requests_total Finished requests by outcome.\n# TYPE fourd_requests_total counter"
        );
        if let Ok(m) = self.requests.lock() {
            for outcome in ["success", "error", "cancelled", "rejected"] {
                let n = m.get(outcome).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "fourd_requests_total{{{label},outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{label}}} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{label}}} {v}"
            );
        };
        counter(
            &mut out,
            "fourd_prompt_tokens_total",
            "Prompt tokens prefilled.",
            self.prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "fourd_generation_tokens_total",
            "Tokens generated (latent imagery steps included).",
            self.generation_tokens.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "fourd_num_requests_waiting",
            "Requests waiting for the model.",
            self.queued.load(Ordering::Relaxed).max(0),
        );
        gauge(
            &mut out,
            "fourd_num_requests_running",
            "Sequences in the running batch.",
            self.running.load(Ordering::Relaxed).max(0),
        );
        self.ttft.render(
            "fourd_time_to_first_token_seconds",
            "From a request's arrival to its first token.",
            &mut out,
        );
        self.per_token.render(
            "fourd_time_per_output_token_seconds",
            "Between two tokens of one sequence.",
            &mut out,
        );
        out
    }
}
