//! Video decoding and frame sampling for 4DThinker evaluation.
//!
//! The reference evaluation (`dsr_eval.py`, see `eval.md` §4.2–4.3 and §5.1) turns a video into a
//! list of frames in three steps, and this crate does the same three, in memory:
//!
//! 1. **Which frames** ([`sample_indices`]): decord's rule. With the stream's average frame rate
//!    `f_v` and frame count `n`, `duration = n / f_v`, `kept = max(1, int(duration × fps))`,
//!    `step = f_v / fps`, and the indices are `min(int(i × step), n − 1)` for `i in 0..kept`,
//!    sorted and de-duplicated: one frame per second from frame 0 at the default `fps = 1`.
//! 2. **At most 50** (`MAX_INFERENCE_FRAMES`): a longer list is cut to `max_frames` entries at
//!    `numpy.linspace(0, len − 1, max_frames).astype(int)`.
//! 3. **Frame size** ([`resize_for_model`]): `task.py`'s `resize_video_frame`: frames above
//!    200,704 px are scaled to fit, each side floored to a multiple of 28, Lanczos.
//!
//! Decoding uses FFmpeg's libraries through `ffmpeg-next`: the file is read once, front to back,
//! every frame is decoded (a video decoder has to), and only the kept frames are converted to RGB
//! with swscale.
//!
//! A question about part of a video (STI-Bench's `time_start`..`time_end`) is answered from that
//! part alone ([`TimeRange`], [`sample_indices_in`]): the same rule applied to the frames inside
//! the range, counted from its first frame. Decoding then seeks to the key frame before the range
//! instead of decoding from the start ([`decode_video_range`]); the reference tools have no
//! equivalent (STI-Bench's scripts cut the range out with their own frame sampler).
//!
//! Where this differs from the Python path, on purpose:
//! * Frames are not written to JPEG and read back (the reference saves `frame_%04d.jpg` with PIL
//!   and reloads them), so there is no JPEG round-trip loss.
//! * When the container does not store a frame count (Matroska, MPEG-TS, some AVIs), decord
//!   estimates it as `avg_fps × container duration`. We count the stream's packets instead in a
//!   demux-only pass (no decoding, cheap), which is exact for ordinary codecs. See [`probe`].
//! * If the file holds fewer decodable frames than the header says (truncated or damaged file),
//!   wanted indices past the end are clamped to the last frame actually decoded, i.e. the rule is
//!   applied with the true count for the tail; a warning is logged. The reference would have
//!   fallen back from decord to OpenCV, which silently drops unreadable frames.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use image::RgbImage;

// File I/O needs FFmpeg's libraries (the default `ffmpeg` feature). A build without them (a GPU
// node without FFmpeg's development packages, say) still samples and resizes frames, and reads
// clips given as frame images; opening a video file then fails with `VideoError::NoFfmpeg`.
#[cfg(feature = "ffmpeg")]
mod ffmpeg_io;
#[cfg(feature = "ffmpeg")]
pub use ffmpeg_io::{decode_video, decode_video_range, encode_video, probe};
#[cfg(not(feature = "ffmpeg"))]
mod no_ffmpeg;
#[cfg(not(feature = "ffmpeg"))]
pub use no_ffmpeg::{decode_video, decode_video_range, encode_video, probe};

/// `256 × 28 × 28`: the reference's `VIDEO_MAX_PIXELS` / `MAX_PIXELS`.
pub const DEFAULT_MAX_PIXELS: usize = 256 * 28 * 28;
/// The reference's `MAX_INFERENCE_FRAMES`.
pub const DEFAULT_MAX_FRAMES: usize = 50;
/// Side multiple used by `resize_video_frame`.
pub const DEFAULT_FACTOR: usize = 28;

/// Errors from probing or decoding a video. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("video file not found: {}", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot open {} as a video (not a video file, or corrupt/truncated): {msg}", path.display())]
    Open { path: PathBuf, msg: String },
    #[error("no video stream in {}", path.display())]
    NoVideoStream { path: PathBuf },
    #[error("failed to decode video {}: {msg}", path.display())]
    Decode { path: PathBuf, msg: String },
    #[error("no frames in video {} (empty video, or no decodable frame)", path.display())]
    Empty { path: PathBuf },
    #[error("failed to encode video {}: {msg}", path.display())]
    Encode { path: PathBuf, msg: String },
    #[error("cannot read or write the video {}: this fourd was built without FFmpeg (the `ffmpeg` feature); rebuild with it, or give clips as frame images", path.display())]
    NoFfmpeg { path: PathBuf },
}

impl VideoError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            VideoError::NotFound { path }
            | VideoError::Open { path, .. }
            | VideoError::NoVideoStream { path }
            | VideoError::Decode { path, .. }
            | VideoError::Empty { path }
            | VideoError::Encode { path, .. }
            | VideoError::NoFfmpeg { path } => path,
        }
    }
}

/// How frames are picked and sized. `Default` is the reference evaluation's setting.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// Frames per second to keep (reference: `VIDEO_FPS = 1`). A value `<= 0`, NaN or infinite
    /// keeps every frame (before the `max_frames` cap).
    pub fps: f64,
    /// Cap on the number of frames (reference: 50). `0` means no cap.
    pub max_frames: usize,
    /// Pixel budget per frame for [`resize_for_model`] (reference: 200,704).
    pub max_pixels: usize,
    /// Side multiple for [`resize_for_model`] (reference: 28).
    pub factor: usize,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions {
            fps: 1.0,
            max_frames: DEFAULT_MAX_FRAMES,
            max_pixels: DEFAULT_MAX_PIXELS,
            factor: DEFAULT_FACTOR,
        }
    }
}

impl SamplingOptions {
    /// Every frame, no cap (the model-size resize still applies).
    pub fn all_frames() -> Self {
        SamplingOptions {
            fps: 0.0,
            max_frames: 0,
            ..Default::default()
        }
    }
}

/// Where [`VideoInfo::frames`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCountSource {
    /// The container's frame count (`nb_frames`), what decord uses.
    Header,
    /// The container has none: the video stream's packets were counted (demux only).
    CountedPackets,
}

/// Stream facts, as used by the sampling rule.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Average frame rate `f_v` (`avg_frame_rate`; falls back to `r_frame_rate`, then to
    /// frames / stream duration, then to 30 like the reference's OpenCV path).
    pub fps: f64,
    /// Frame count `n`.
    pub frames: usize,
    pub frame_count_source: FrameCountSource,
    /// `n / f_v` in seconds (decord's definition, used by the sampling rule).
    pub duration: f64,
    /// The container's own duration in seconds, when it reports one.
    pub container_duration: Option<f64>,
    pub width: u32,
    pub height: u32,
    /// FFmpeg's codec name, e.g. `h264`.
    pub codec: String,
    /// Index of the video stream in the container.
    pub stream_index: usize,
}

/// Frames chosen from a video, in presentation order, already resized for the model.
#[derive(Debug, Clone)]
pub struct SampledVideo {
    /// RGB frames after [`resize_for_model`].
    pub frames: Vec<RgbImage>,
    /// Presentation time of each kept frame in seconds: the frame's (best-effort) pts × the
    /// stream time base, not shifted by the stream's start time (the same number `ffprobe
    /// -show_frames` prints as `pts_time`).
    pub timestamps: Vec<f64>,
    /// Source frame index (presentation order, from 0) of each kept frame.
    pub indices: Vec<usize>,
    /// Frames the decoder produced to get these: fewer than the last index + 1 when decoding
    /// started at a key frame inside the video ([`decode_video_range`]).
    pub frames_decoded: usize,
    /// Average frame rate of the source (`f_v`).
    pub source_fps: f64,
    /// Frame count of the source used for sampling (`n`).
    pub source_frames: usize,
    /// `n / f_v` in seconds.
    pub duration: f64,
    /// Source frame size, before resizing.
    pub width: u32,
    pub height: u32,
}

/// Frame indices the reference evaluation keeps, capped at `max_frames`.
///
/// decord path of `extract_frames_from_video`: `duration = n / f_v`,
/// `kept = max(1, int(duration × fps))`, `step = f_v / fps`, indices
/// `sorted(set(min(int(i × step), n − 1) for i in range(kept)))`. Then, if more than
/// `max_frames` remain, the ones at `numpy.linspace(0, len − 1, max_frames).astype(int)` are kept.
///
/// `n_frames == 0` gives an empty list. `fps` that is not finite or `<= 0` keeps every frame;
/// a `source_fps` that is not finite or `<= 0` is treated as 30 (the reference's OpenCV
/// fallback). `max_frames == 0` means no cap.
pub fn sample_indices(n_frames: usize, source_fps: f64, fps: f64, max_frames: usize) -> Vec<usize> {
    if n_frames == 0 {
        return Vec::new();
    }
    let f_v = if source_fps.is_finite() && source_fps > 0.0 {
        source_fps
    } else {
        30.0
    };
    let indices: Vec<usize> = if !(fps.is_finite() && fps > 0.0) {
        (0..n_frames).collect()
    } else {
        let duration = n_frames as f64 / f_v;
        let kept = ((duration * fps) as usize).max(1); // Python int(): truncation (value >= 0)
        let step = f_v / fps;
        let set: BTreeSet<usize> = (0..kept)
            .map(|i| ((i as f64 * step) as usize).min(n_frames - 1))
            .collect();
        set.into_iter().collect()
    };
    if max_frames == 0 || indices.len() <= max_frames {
        return indices;
    }
    linspace_trunc(indices.len() - 1, max_frames)
        .into_iter()
        .map(|p| indices[p])
        .collect()
}

/// A stretch of a video, in seconds from its first frame: a question's time window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeRange {
    pub start: f64,
    pub end: f64,
}

/// Frames whose start time is this close to a range's edge count as on it (the edges are given in
/// seconds with a few decimals; `k / fps` rarely equals them exactly in floating point).
const EDGE_TOLERANCE_FRAMES: f64 = 1e-6;

impl TimeRange {
    /// A range with `0 <= start <= end`, both finite; the error says what is wrong.
    pub fn new(start: f64, end: f64) -> Result<TimeRange, String> {
        if !(start.is_finite() && end.is_finite()) {
            return Err(format!("time range {start}..{end} is not finite"));
        }
        if start < 0.0 || end < start {
            return Err(format!(
                "time range {start}..{end}: expected 0 <= start <= end"
            ));
        }
        Ok(TimeRange { start, end })
    }

    /// The source frames the range covers: those whose start time `k / f_v` lies in
    /// `[start, end]`, clamped to the video. A range shorter than one frame gives the frame
    /// showing `start`. `source_fps` that is not finite or `<= 0` is treated as 30, as in
    /// [`sample_indices`]; `n_frames` must be > 0.
    pub fn frames(&self, n_frames: usize, source_fps: f64) -> std::ops::RangeInclusive<usize> {
        let f_v = if source_fps.is_finite() && source_fps > 0.0 {
            source_fps
        } else {
            30.0
        };
        let last_frame = n_frames.saturating_sub(1);
        let at = |t: f64| t * f_v;
        let first =
            ((at(self.start) - EDGE_TOLERANCE_FRAMES).ceil().max(0.0) as usize).min(last_frame);
        let last =
            ((at(self.end) + EDGE_TOLERANCE_FRAMES).floor().max(0.0) as usize).min(last_frame);
        if last < first {
            let showing = (at(self.start).floor().max(0.0) as usize).min(last_frame);
            return showing..=showing;
        }
        first..=last
    }
}

/// [`sample_indices`] over the frames of `range` (the whole video when `None`): the rule applied
/// to the range's frames as if they were a video of their own, then shifted back to source
/// indices.
pub fn sample_indices_in(
    n_frames: usize,
    source_fps: f64,
    range: Option<TimeRange>,
    fps: f64,
    max_frames: usize,
) -> Vec<usize> {
    let Some(range) = range.filter(|_| n_frames > 0) else {
        return sample_indices(n_frames, source_fps, fps, max_frames);
    };
    let frames = range.frames(n_frames, source_fps);
    let first = *frames.start();
    sample_indices(frames.count(), source_fps, fps, max_frames)
        .into_iter()
        .map(|i| first + i)
        .collect()
}

/// `numpy.linspace(0, stop, num).astype(int)`: `i × (stop / (num − 1))`, truncated, with the last
/// element exactly `stop` (numpy's endpoint rule). `num == 1` gives `[0]`.
fn linspace_trunc(stop: usize, num: usize) -> Vec<usize> {
    match num {
        0 => Vec::new(),
        1 => vec![0],
        _ => {
            let step = stop as f64 / (num - 1) as f64;
            let mut out: Vec<usize> = (0..num).map(|i| (i as f64 * step) as usize).collect();
            out[num - 1] = stop;
            out
        }
    }
}

/// Target size of `task.py`'s `resize_video_frame`, or `None` when the frame is left as it is.
///
/// If `w × h > max_pixels`, scale by `sqrt(max_pixels / (w × h))` and floor each side to a
/// multiple of `factor` (at least `factor`).
pub fn model_frame_size(
    width: u32,
    height: u32,
    max_pixels: usize,
    factor: usize,
) -> Option<(u32, u32)> {
    let (w, h) = (width as usize, height as usize);
    if w * h <= max_pixels || factor == 0 {
        return None;
    }
    let scale = (max_pixels as f64 / (w * h) as f64).sqrt();
    let side = |s: usize| -> u32 {
        let scaled = (s as f64 * scale).floor() as usize;
        ((scaled / factor * factor).max(factor)) as u32
    };
    Some((side(w), side(h)))
}

/// `task.py`'s `resize_video_frame`: frames above `max_pixels` are scaled by
/// `sqrt(max_pixels / (w × h))`, each side floored to a multiple of `factor` (minimum `factor`),
/// and resampled; smaller frames are returned unchanged (their sides need not be multiples of
/// `factor`).
///
/// The reference resamples with PIL's `LANCZOS`; this uses the `image` crate's `Lanczos3`
/// (the same 3-lobe windowed sinc, widened by the scale factor when shrinking), so results
/// agree with PIL to within rounding, not bit for bit.
pub fn resize_for_model(img: &RgbImage, max_pixels: usize, factor: usize) -> RgbImage {
    match model_frame_size(img.width(), img.height(), max_pixels, factor) {
        None => img.clone(),
        Some((w, h)) => image::imageops::resize(img, w, h, image::imageops::FilterType::Lanczos3),
    }
}

#[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
fn resize_owned(img: RgbImage, max_pixels: usize, factor: usize) -> RgbImage {
    match model_frame_size(img.width(), img.height(), max_pixels, factor) {
        None => img,
        Some((w, h)) => image::imageops::resize(&img, w, h, image::imageops::FilterType::Lanczos3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second_from_zero() {
        // 4.5 s at 10 fps: int(4.5) = 4 frames, step 10.
        assert_eq!(sample_indices(45, 10.0, 1.0, 50), vec![0, 10, 20, 30]);
        // 25 fps, 100 frames.
        assert_eq!(sample_indices(100, 25.0, 1.0, 50), vec![0, 25, 50, 75]);
    }

    #[test]
    fn short_video_keeps_one_frame() {
        assert_eq!(sample_indices(5, 10.0, 1.0, 50), vec![0]);
        assert_eq!(sample_indices(1, 30.0, 1.0, 50), vec![0]);
        assert!(sample_indices(0, 30.0, 1.0, 50).is_empty());
    }

    #[test]
    fn fractional_step_truncates_and_clamps() {
        // 29.97 fps, 300 frames: duration 10.01 s -> 10 frames, step 29.97.
        let idx = sample_indices(300, 29.97, 1.0, 50);
        assert_eq!(idx, vec![0, 29, 59, 89, 119, 149, 179, 209, 239, 269]);
        // fps above the source rate: indices repeat and are de-duplicated; min(.., n - 1) clamps.
        assert_eq!(sample_indices(4, 2.0, 5.0, 50), vec![0, 1, 2, 3]);
        // 3 frames at 1 fps sampled at 2 fps: kept 6, step 0.5 -> 0,0,1,1,2,2.
        assert_eq!(sample_indices(3, 1.0, 2.0, 50), vec![0, 1, 2]);
    }

    #[test]
    fn all_frames_at_source_rate_or_nonpositive_fps() {
        assert_eq!(
            sample_indices(30, 30.0, 30.0, 0),
            (0..30).collect::<Vec<_>>()
        );
        assert_eq!(sample_indices(7, 30.0, 0.0, 0), (0..7).collect::<Vec<_>>());
        assert_eq!(
            sample_indices(7, 30.0, f64::INFINITY, 0),
            (0..7).collect::<Vec<_>>()
        );
    }

    #[test]
    fn cap_uses_numpy_linspace_truncation() {
        // 60 s at 2 fps, sampled at 1 fps -> 60 frames (0, 2, ..., 118), capped to 50.
        let idx = sample_indices(120, 2.0, 1.0, 50);
        assert_eq!(idx.len(), 50);
        // np.linspace(0, 59, 50).astype(int)
        let expect_pos: Vec<usize> = vec![
            0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 24, 25, 26, 27,
            28, 30, 31, 32, 33, 34, 36, 37, 38, 39, 40, 42, 43, 44, 45, 46, 48, 49, 50, 51, 52, 54,
            55, 56, 57, 59,
        ];
        assert_eq!(idx, expect_pos.iter().map(|p| p * 2).collect::<Vec<_>>());
        assert_eq!(linspace_trunc(9, 1), vec![0]);
        assert_eq!(linspace_trunc(3, 4), vec![0, 1, 2, 3]);
        // np.linspace(0, 99, 3).astype(int) == [0, 49, 99]
        assert_eq!(linspace_trunc(99, 3), vec![0, 49, 99]);
    }

    #[test]
    fn a_time_range_is_sampled_as_a_video_of_its_own() {
        let r = |a, b| TimeRange::new(a, b).unwrap();
        // 8 s at 4 fps: 5 s..7 s is frames 20..=28, sampled at 1 fps from frame 20.
        assert_eq!(r(5.0, 7.0).frames(32, 4.0), 20..=28);
        assert_eq!(
            sample_indices_in(32, 4.0, Some(r(5.0, 7.0)), 1.0, 50),
            vec![20, 24]
        );
        // Edges given with decimals that k / fps misses by rounding still include the frame.
        assert_eq!(r(0.1 + 0.2, 0.9).frames(100, 10.0), 3..=9);
        // Past the end: clamped; shorter than a frame: the frame showing the start.
        assert_eq!(r(6.0, 60.0).frames(32, 4.0), 24..=31);
        assert_eq!(r(5.1, 5.2).frames(32, 4.0), 20..=20);
        assert_eq!(r(100.0, 200.0).frames(32, 4.0), 31..=31);
        // No range: the whole video, as sample_indices.
        assert_eq!(
            sample_indices_in(45, 10.0, None, 1.0, 50),
            vec![0, 10, 20, 30]
        );
        assert!(TimeRange::new(2.0, 1.0).is_err());
        assert!(TimeRange::new(-1.0, 1.0).is_err());
        assert!(TimeRange::new(0.0, f64::NAN).is_err());
    }

    #[test]
    fn model_size_rule() {
        assert_eq!(
            model_frame_size(1280, 720, DEFAULT_MAX_PIXELS, 28),
            Some((588, 336))
        );
        assert_eq!(
            model_frame_size(1920, 1080, DEFAULT_MAX_PIXELS, 28),
            Some((588, 336))
        );
        assert_eq!(
            model_frame_size(640, 480, DEFAULT_MAX_PIXELS, 28),
            Some((504, 364))
        );
        assert_eq!(model_frame_size(448, 448, DEFAULT_MAX_PIXELS, 28), None); // exactly 200,704
        assert_eq!(model_frame_size(320, 240, DEFAULT_MAX_PIXELS, 28), None);
        // Very thin frames keep at least one factor per side.
        let (w, h) = model_frame_size(100_000, 10, DEFAULT_MAX_PIXELS, 28).unwrap();
        assert_eq!((w % 28, h), (0, 28));
        assert!((w as usize) <= 44_800);
    }
}
