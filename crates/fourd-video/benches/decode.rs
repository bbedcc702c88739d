//! `decode_video` against the `ffmpeg` command line on the same file, in the same run.
//!
//! ```sh
//! cargo bench -p fourd-video --bench decode            # makes a 640x360, 30 s, 30 fps mpeg4 mp4
//! cargo bench -p fourd-video --bench decode -- FILE    # any video
//! ```
//!
//! Rows: fps=1 (the evaluation setting) and all frames (fps = source fps, no cap). Ours is timed
//! twice: the evaluation path (RGB + `resize_for_model`) and decode + RGB only (no resize), which
//! is what the CLI command does (`-f rawvideo -pix_fmt rgb24`). Then a time window (the last
//! fifth of the video at fps=1, as an STI-Bench question asks): ours seeking to the key frame
//! before it, ours decoding from the start, and the CLI with input seeking (`-ss`/`-to` before
//! `-i`). Best of `REPS` runs each.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fourd_video::{decode_video, decode_video_range, probe, SamplingOptions, TimeRange};

const REPS: usize = 3;

fn best<F: FnMut() -> usize>(mut f: F) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..REPS {
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed());
    }
    (best, n)
}

/// Run the ffmpeg CLI, read its raw RGB output, return the number of frames.
fn ffmpeg_cli(path: &Path, vf: Option<&str>, frame_bytes: usize) -> usize {
    ffmpeg_cli_window(path, None, vf, frame_bytes)
}

/// [`ffmpeg_cli`] on `window` (seconds) alone, seeking the input to its start.
fn ffmpeg_cli_window(
    path: &Path,
    window: Option<(f64, f64)>,
    vf: Option<&str>,
    frame_bytes: usize,
) -> usize {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin"]);
    if let Some((a, b)) = window {
        cmd.args(["-ss", &a.to_string(), "-to", &b.to_string()]);
    }
    cmd.arg("-i").arg(path);
    if let Some(vf) = vf {
        cmd.args(["-vf", vf]);
    }
    cmd.args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("ffmpeg on PATH");
    let mut out = child.stdout.take().expect("ffmpeg stdout was piped");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = out
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("reading ffmpeg's output for {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(
        child.wait().expect("waiting for ffmpeg").success(),
        "ffmpeg failed on {}",
        path.display()
    );
    total / frame_bytes
}

fn main() {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let _tmp;
    let path = match arg {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            _tmp = common::TempDir::new("bench");
            let p = _tmp.join("bench_640x360_30s_30fps.mp4");
            let t = Instant::now();
            common::make_video(&p, &common::Spec::new(640, 360, 30, 900));
            eprintln!("made {} in {:.2?}", p.display(), t.elapsed());
            p
        }
    };
    let info = probe(&path).expect("probe");
    println!(
        "video: {} ({}x{}, {} frames, {:.3} fps, {:.2} s, {}), best of {REPS}",
        path.display(),
        info.width,
        info.height,
        info.frames,
        info.fps,
        info.duration,
        info.codec
    );
    let frame_bytes = info.width as usize * info.height as usize * 3;
    let n_src = info.frames as f64;

    println!(
        "{:<44} {:>7} {:>9} {:>13} {:>14}",
        "run", "frames", "time_s", "out_frames/s", "src_frames/s"
    );
    let row = |name: &str, (t, n): (Duration, usize)| {
        let s = t.as_secs_f64();
        println!(
            "{name:<44} {n:>7} {s:>9.3} {:>13.1} {:>14.1}",
            n as f64 / s,
            n_src / s
        );
        s
    };

    for (label, fps, vf) in [
        ("fps=1", 1.0, Some("fps=1")),
        ("all frames", info.fps, None),
    ] {
        let eval = SamplingOptions {
            fps,
            max_frames: if vf.is_some() { 50 } else { 0 },
            ..Default::default()
        };
        let raw = SamplingOptions {
            max_pixels: usize::MAX,
            ..eval.clone()
        };
        let ours_eval = row(
            &format!("ours {label} (RGB + resize_for_model)"),
            best(|| {
                decode_video(&path, &eval)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .frames
                    .len()
            }),
        );
        let ours_raw = row(
            &format!("ours {label} (RGB only)"),
            best(|| {
                decode_video(&path, &raw)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .frames
                    .len()
            }),
        );
        let cli_name = match vf {
            Some(vf) => format!("ffmpeg CLI -vf {vf} rgb24"),
            None => "ffmpeg CLI rgb24".to_string(),
        };
        let cli = row(&cli_name, best(|| ffmpeg_cli(&path, vf, frame_bytes)));
        println!(
            "  {label}: speed vs CLI (CLI time / ours): RGB only {:.2}x, with resize {:.2}x",
            cli / ours_raw,
            cli / ours_eval
        );
    }
    window_rows(&path, info.duration, frame_bytes, &row);
}

/// The CLI decoding from the start and keeping `window` (output seeking), at fps=1.
fn ffmpeg_cli_output_seek(path: &Path, (a, b): (f64, f64), frame_bytes: usize) -> usize {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-ss", &a.to_string(), "-to", &b.to_string()])
        .args(["-vf", "fps=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg on PATH");
    assert!(out.status.success(), "ffmpeg failed on {}", path.display());
    out.stdout.len() / frame_bytes
}

/// The last fifth of the video at fps=1: seeking, from the start, and the CLI.
fn window_rows(
    path: &Path,
    duration: f64,
    frame_bytes: usize,
    row: &dyn Fn(&str, (Duration, usize)) -> f64,
) {
    let (a, b) = (duration * 0.8, duration);
    let range = TimeRange::new(a, b).expect("a valid window");
    let opts = SamplingOptions::default();
    let seek = decode_video_range(path, &opts, Some(range)).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "window {a:.2}-{b:.2} s: frames {:?}, {} decoded",
        seek.indices, seek.frames_decoded
    );
    let ours = row(
        "ours window, seeking (RGB + resize)",
        best(|| {
            decode_video_range(path, &opts, Some(range))
                .unwrap_or_else(|e| panic!("{e}"))
                .frames
                .len()
        }),
    );
    // From the start: the CLI's output seeking (`-ss`/`-to` after `-i`) decodes everything before
    // the window and drops it.
    let from_start = row(
        "ffmpeg CLI -i then -ss/-to (from the start)",
        best(|| ffmpeg_cli_output_seek(path, (a, b), frame_bytes)),
    );
    let cli = row(
        "ffmpeg CLI -ss/-to -vf fps=1 rgb24",
        best(|| ffmpeg_cli_window(path, Some((a, b)), Some("fps=1"), frame_bytes)),
    );
    println!(
        "  window: ours is {:.1}x the speed of decoding from the start, {:.2}x the seeking CLI's",
        from_start / ours,
        cli / ours
    );
}
