//! `fourd`: 4DThinker in Rust.

mod bench;
mod data_cmd;
mod demo;
mod eval_cmd;
mod infer;
mod model_args;
mod model_cmd;
mod serve_cmd;
mod synth_cmd;
mod train_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fourd",
    version,
    about = "4DThinker: thinking with 4D imagery, in Rust (candle)"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Answer a question about images or a video with a Qwen2.5-VL / 4DThinker checkpoint.
    Infer(infer::InferArgs),
    /// Evaluate checkpoints on DSR-Bench or another multiple-choice video benchmark.
    Eval(eval_cmd::EvalArgs),
    /// Checkpoint preparation.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Benchmarks (timings are never asserted in tests).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Synthetic 4D clips with exact ground truth, written in the SpatialVID layout.
    Synth(synth_cmd::SynthCmd),
    /// Data pipeline: SpatialVID-layout clips -> motion questions with imagery (DIFT, 4DRL).
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// End to end on CPU: synthetic world -> questions -> DIFT of a tiny model -> evaluation.
    Demo(demo::DemoArgs),
    /// Training: DIFT, then 4DRL (GRPO).
    #[command(subcommand)]
    Train(train_cmd::TrainCommand),
    /// Serve a checkpoint over an OpenAI-compatible HTTP API, with latent imagery and continuous
    /// batching.
    Serve(serve_cmd::ServeArgs),
}

/// candle runs its CPU element-wise ops on a second pool of threads beside the rayon pool its
/// matmul and our kernels use, and that pool's idle workers spin before they sleep: with both
/// pools sized to the cores, the spinning took cores from the matmul. One thread for that pool
/// (element-wise ops run on the calling thread) made a CPU training step 12 to 15% faster on 2
/// cores and left inference unchanged (docs/performance.md). A user's own `CANDLE_NUM_THREADS`
/// is left alone.
///
/// candle also asks for the thread count at every matmul, and without `RAYON_NUM_THREADS` that
/// count is the number of physical cores, read from `/proc/cpuinfo` each time (num_cpus does not
/// cache it): on the demo's tiny model the kernel's formatting of that file was 3-4% of a DIFT
/// step. The count is therefore computed once, the same way, and kept in `RAYON_NUM_THREADS`,
/// unless the user set it.
fn one_pool_of_cpu_threads() {
    // Before any thread starts: nothing reads the environment concurrently.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// glibc's allocator gives blocks over 128 KiB their own mappings and returns them to the kernel
/// when freed, so every step's tensors came from fresh pages that the kernel zeroes on first
/// touch: a fifth of a CPU training step (docs/performance.md). Blocks up to 32 MiB (glibc's
/// ceiling for this setting) now come from the heap, and freed memory stays there for reuse.
/// A user's own `GLIBC_TUNABLES` or `MALLOC_*_` settings are left alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    let user_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc"))
        || std::env::vars().any(|(k, _)| k.starts_with("MALLOC_") && k.ends_with('_'));
    if user_set {
        return;
    }
    // SAFETY: mallopt only sets allocator parameters; it is called once, before any thread
    // starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() {
    keep_freed_memory();
    one_pool_of_cpu_threads();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Infer(a) => infer::run(a),
        Command::Bench(c) => bench::run(c),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Model(c) => model_cmd::run(c),
        Command::Synth(a) => synth_cmd::run(a),
        Command::Data(c) => data_cmd::run(c),
        Command::Train(c) => train_cmd::run(c),
        Command::Demo(a) => demo::run(a),
        Command::Serve(a) => serve_cmd::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
