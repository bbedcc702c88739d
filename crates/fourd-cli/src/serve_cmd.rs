//! `fourd serve`: the OpenAI-compatible server (`fourd_serve`), until Ctrl-C or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use fourd_serve::engine::EngineLimits;
use fourd_serve::{MediaPolicy, ServeConfig};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Checkpoint folder; clients name it by the folder's name (`model` in requests).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    #[command(flatten)]
    pub run: crate::model_args::RunModelArgs,
    /// Sequences decoding at once (a request with `n` choices takes `n`).
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Requests waiting for the model at most; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Prompt plus completion tokens of a sequence (default: the checkpoint's
    /// max_position_embeddings).
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Requests must carry `Authorization: Bearer <key>`; without the flag the key is read from
    /// FOURD_API_KEY when set (keeping it off the command line).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Larger request bodies are answered 413.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// Image and video parts may name local files under this folder (off by default).
    #[arg(long)]
    pub allowed_media_dir: Option<PathBuf>,
    /// Frames kept from a video part at most.
    #[arg(long, default_value_t = fourd_video::DEFAULT_MAX_FRAMES)]
    pub max_frames: usize,
    /// Seconds in-flight requests get to finish after Ctrl-C or SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
}

pub fn run(a: ServeArgs) -> Result<()> {
    if a.max_batch == 0 || a.max_queue == 0 {
        bail!("--max-batch and --max-queue must be at least 1");
    }
    if let Some(dir) = &a.allowed_media_dir {
        if !dir.is_dir() {
            bail!("--allowed-media-dir {}: no such folder", dir.display());
        }
    }
    // Served under the adapter's name when there is one (what was trained), else the model's.
    let served_name = a
        .run
        .adapter
        .as_ref()
        .unwrap_or(&a.model)
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .with_context(|| {
            let (flag, dir) = match &a.run.adapter {
                Some(d) => ("--adapter", d),
                None => ("--model", &a.model),
            };
            format!("{flag} {}: no such folder", dir.display())
        })?;
    let cfg = ServeConfig {
        model: a.model.clone(),
        adapter: a.run.adapter.clone(),
        served_name: served_name.clone(),
        dtype: a.run.dtype,
        device: a.run.device,
        rope_index: a.run.rope_index,
        limits: EngineLimits {
            max_batch: a.max_batch,
            max_model_len: 32_768,
            latent_size: a.run.latent_size,
        },
        max_model_len: a.max_model_len,
        max_queue: a.max_queue,
        max_body_bytes: a.max_body_bytes,
        api_key: a
            .api_key
            .clone()
            .or_else(|| std::env::var("FOURD_API_KEY").ok())
            .filter(|k| !k.is_empty()),
        media: MediaPolicy {
            allowed_dir: a.allowed_media_dir.clone(),
            max_frames: a.max_frames,
            ..MediaPolicy::default()
        },
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
    };
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                rt.block_on(shutdown_signal());
                let _ = signal_tx.send(());
            }
            Err(e) => {
                // Without signal handling the server runs until killed; it must not stop now.
                tracing::warn!("no Ctrl-C / SIGTERM handling ({e}): stop the server by killing it");
                let _keep = signal_tx;
                loop {
                    std::thread::park();
                }
            }
        }
    });
    let server = fourd_serve::start(cfg, SocketAddr::new(a.host, a.port), Some(signal_rx))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("starting the server for {}", a.model.display()))?;
    eprintln!(
        "serving {served_name} at http://{}/v1 (OpenAI-compatible; Ctrl-C stops)",
        server.addr
    );
    server.wait()?;
    eprintln!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix. A handler that cannot be installed never fires (the server
/// keeps running) rather than firing at once.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("no Ctrl-C handling: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
