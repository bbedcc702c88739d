//! `fourd serve`: an OpenAI-compatible HTTP server that runs the latent-imagery loop.
//!
//! Servers such as vLLM serve Qwen2.5-VL but cannot feed a model its own hidden states back, so
//! a 4DThinker checkpoint behind them reasons without imagery. This one runs
//! [`fourd_model::generation::DecodeBatch`]:
//!
//! 1. **HTTP** (axum on tokio): `POST /v1/chat/completions` (JSON, or server-sent events with
//!    `"stream": true`), `GET /v1/models`, `GET /health`, `GET /metrics`. A handler checks the key,
//!    the body and the fields ([`request`]), decodes the media on a blocking thread, and hands a
//!    [`engine::Job`] to the model thread; it never waits on the model otherwise.
//! 2. **The model thread** ([`engine`]): continuous batching. Between decode steps waiting
//!    requests are prefilled and join the batch; finished, stopped or abandoned sequences leave
//!    at once. Each sequence keeps its own sampling state and imagery phase.
//! 3. **Responses** ([`response`]): OpenAI's shapes, plus where the model imagined
//!    (`latent_segments`) and the settings each request ran with (`fourd.settings`).

pub mod engine;
pub mod error;
pub mod load;
pub mod metrics;
pub mod request;
pub mod response;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fourd_model::ModelBundle;

pub use error::ApiError;
use metrics::Metrics;
pub use request::MediaPolicy;

/// Everything `fourd serve` is started with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub model: PathBuf,
    /// A PEFT LoRA adapter run on `model`.
    pub adapter: Option<PathBuf>,
    /// The name clients use (`model` in requests and `/v1/models`): the folder's name.
    pub served_name: String,
    pub dtype: candle_core::DType,
    pub device: fourd_model::DeviceSpec,
    pub rope_index: fourd_model::RopeIndexStyle,
    pub limits: engine::EngineLimits,
    /// `None`: the checkpoint's `max_position_embeddings`.
    pub max_model_len: Option<usize>,
    /// Requests waiting for the model at most; more get 503 with `Retry-After`.
    pub max_queue: usize,
    pub max_body_bytes: usize,
    /// Required as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    pub media: MediaPolicy,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
}

/// What the handlers share.
struct App {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<engine::Job>>,
    metrics: Arc<Metrics>,
    served_name: String,
    api_key: Option<String>,
    max_queue: usize,
    max_body_bytes: usize,
    media: MediaPolicy,
    created: u64,
}

/// A running server: its address, and how to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    pub metrics: Arc<Metrics>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish (within the shutdown timeout), and waits.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.shutdown()
    }

    /// Waits until the server stops by its shutdown signal (the `signal` given to [`start`]).
    pub fn wait(mut self) -> std::io::Result<()> {
        self.join()
    }

    fn join(&mut self) -> std::io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The context length of a checkpoint: `max_position_embeddings` of its `config.json` (top
/// level, or its `text_config`).
fn checkpoint_context(dir: &std::path::Path) -> Option<usize> {
    let text = std::fs::read_to_string(fourd_model::model::config_file(dir).ok()?).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("max_position_embeddings")
        .or_else(|| v.get("text_config")?.get("max_position_embeddings"))
        .and_then(serde_json::Value::as_u64)
        .map(|n| n as usize)
}

/// Loads the model, binds `addr` and serves on background threads until stopped (by
/// [`RunningServer::stop`] or when `signal` completes).
pub fn start(
    cfg: ServeConfig,
    addr: SocketAddr,
    signal: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<RunningServer, Box<dyn std::error::Error + Send + Sync>> {
    let device = cfg.device.open()?;
    let mut bundle = ModelBundle::load(&cfg.model, cfg.dtype, &device)?;
    if let Some(dir) = &cfg.adapter {
        bundle.attach_adapter(dir)?;
    }
    bundle.model.config.rope_index = cfg.rope_index;
    let mut limits = cfg.limits.clone();
    limits.max_model_len = cfg
        .max_model_len
        .or_else(|| checkpoint_context(&cfg.model))
        .unwrap_or(limits.max_model_len);
    // Fails before binding when the checkpoint's latent tokens do not fit the asked size.
    bundle.latent_tokens(limits.latent_size)?;
    let metrics = Arc::new(Metrics::default());
    let (jobs, rx) = std::sync::mpsc::channel();
    let engine_metrics = metrics.clone();
    std::thread::Builder::new()
        .name("fourd-model".into())
        .spawn(move || engine::run(bundle, limits, rx, engine_metrics))?;
    let app = Arc::new(App {
        jobs: std::sync::Mutex::new(jobs),
        metrics: metrics.clone(),
        served_name: cfg.served_name.clone(),
        api_key: cfg.api_key.clone(),
        max_queue: cfg.max_queue,
        max_body_bytes: cfg.max_body_bytes,
        media: cfg.media.clone(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let timeout = cfg.shutdown_timeout;
    let thread = std::thread::Builder::new()
        .name("fourd-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let (fired, on_fire) = tokio::sync::oneshot::channel::<()>();
                let shutdown = async move {
                    match signal {
                        Some(sig) => {
                            tokio::select! { _ = stopped => {}, _ = sig => {} }
                        }
                        None => {
                            let _ = stopped.await;
                        }
                    }
                    let _ = fired.send(());
                };
                let server = axum::serve(listener, router(app)).with_graceful_shutdown(shutdown);
                let mut served = tokio::spawn(async move { server.await });
                // After the signal no connection is accepted and in-flight requests finish; past
                // the timeout they are dropped (the model thread then cancels their sequences).
                let deadline = async move {
                    if on_fire.await.is_ok() {
                        tokio::time::sleep(timeout).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    r = &mut served => match r {
                        Ok(r) => r,
                        Err(e) => Err(std::io::Error::other(e)),
                    },
                    _ = deadline => {
                        tracing::warn!("in-flight requests did not finish within {timeout:?}; dropping them");
                        served.abort();
                        Ok(())
                    }
                }
            })
        })?;
    Ok(RunningServer {
        addr,
        stop: Some(stop),
        thread: Some(thread),
        metrics,
    })
}

fn router(app: Arc<App>) -> Router {
    let limit = app.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model_by_id))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        // The chat handler reads its body itself, within --max-body-bytes.
        .layer(DefaultBodyLimit::max(limit.saturating_add(1)))
        .with_state(app)
}

/// The bearer key check; every endpoint but `/health` needs it when a key is set.
fn authorized(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &app.api_key else {
        return Ok(());
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        app.metrics.count("rejected");
        Err(ApiError::unauthorized())
    }
}

async fn models(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&app, &headers) {
        return e.into_response();
    }
    axum::Json(serde_json::json!({
        "object": "list",
        "data": [{
            "id": app.served_name,
            "object": "model",
            "created": app.created,
            "owned_by": "fourd",
        }]
    }))
    .into_response()
}

async fn model_by_id(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Err(e) = authorized(&app, &headers) {
        return e.into_response();
    }
    if id != app.served_name {
        return ApiError::unknown_model(&id, &app.served_name).into_response();
    }
    axum::Json(serde_json::json!({
        "id": app.served_name,
        "object": "model",
        "created": app.created,
        "owned_by": "fourd",
    }))
    .into_response()
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        app.metrics.render(&app.served_name),
    )
        .into_response()
}

async fn chat_completions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    match accept(&app, &headers, body).await {
        Ok((events, stream, include_usage, logprobs)) => {
            let shape = response::Shape {
                model: app.served_name.clone(),
                created: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                id: format!("chatcmpl-{:x}", fresh_id()),
                include_usage,
                logprobs,
            };
            if stream {
                response::stream(events, shape).into_response()
            } else {
                response::collect(events, shape).await
            }
        }
        Err(e) => {
            if e.status != StatusCode::UNAUTHORIZED && e.status != StatusCode::SERVICE_UNAVAILABLE {
                app.metrics.count("error");
            }
            e.into_response()
        }
    }
}

/// The request body, at most `--max-body-bytes`: a larger announced `Content-Length` is refused
/// before anything is read, a larger body as soon as it passes the limit.
async fn read_body(
    limit: usize,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, ApiError> {
    let announced = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

fn fresh_id() -> u128 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    t ^ (NEXT.fetch_add(1, Ordering::Relaxed) as u128)
}

type Accepted = (
    tokio::sync::mpsc::UnboundedReceiver<engine::Event>,
    bool,
    bool,
    bool,
);

/// Checks a request and hands it to the model thread: its events, whether it streams, and
/// whether it asked for the usage chunk and log-probabilities.
async fn accept(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Accepted, ApiError> {
    authorized(app, headers)?;
    let body = read_body(app.max_body_bytes, headers, body).await?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if let Some(name) = json.get("model").and_then(serde_json::Value::as_str) {
        if name != app.served_name {
            return Err(ApiError::unknown_model(name, &app.served_name));
        }
    }
    if app.metrics.queued.load(Ordering::Relaxed) >= app.max_queue as i64 {
        app.metrics.count("rejected");
        return Err(ApiError::overloaded(app.max_queue));
    }
    let received = Instant::now();
    let media = app.media.clone();
    // Media decoding is CPU work: off the async threads.
    let request = tokio::task::spawn_blocking(move || request::parse(&json, &media))
        .await
        .map_err(|e| ApiError::internal(format!("request parsing failed: {e}")))??;
    let (stream, include_usage, logprobs) =
        (request.stream, request.include_usage, request.logprobs);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    app.metrics.queued.fetch_add(1, Ordering::Relaxed);
    let sent = app
        .jobs
        .lock()
        .map_err(|_| ApiError::internal("the job queue is poisoned"))?
        .send(engine::Job {
            request,
            events: tx,
            received,
        });
    if sent.is_err() {
        app.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::shutting_down());
    }
    Ok((rx, stream, include_usage, logprobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_over_the_limit_are_413_announced_or_not() {
        let body = || axum::body::Body::from("x".repeat(2048));
        let none = HeaderMap::new();
        let e = read_body(1024, &none, body()).await.unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let mut announced = HeaderMap::new();
        announced.insert("content-length", "2048".parse().unwrap());
        let e = read_body(1024, &announced, body()).await.unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(read_body(4096, &none, body()).await.unwrap().len(), 2048);
    }
}
