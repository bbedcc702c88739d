//! Reading and writing video files with FFmpeg's libraries (`ffmpeg-next`): the `ffmpeg` feature.

use std::path::Path;
use std::sync::Once;

use ffmpeg::format::Pixel;
use ffmpeg::media::Type as MediaType;
use ffmpeg::software::scaling::{context::Context as Scaler, flag::Flags as ScaleFlags};
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use crate::{
    resize_owned, sample_indices_in, FrameCountSource, SampledVideo, SamplingOptions, TimeRange,
    VideoError, VideoInfo,
};

static INIT: Once = Once::new();

/// Initialise FFmpeg once per process and silence its own logging: every failure reaches the
/// caller as a `VideoError` naming the file, so FFmpeg printing it too would only add noise.
fn init() {
    INIT.call_once(|| {
        if let Err(e) = ffmpeg::init() {
            tracing::warn!("ffmpeg init failed: {e}");
        }
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

fn rational_f64(r: Rational) -> Option<f64> {
    if r.numerator() > 0 && r.denominator() > 0 {
        Some(r.numerator() as f64 / r.denominator() as f64)
    } else {
        None
    }
}

fn open_input(path: &Path) -> Result<ffmpeg::format::context::Input, VideoError> {
    init();
    if !path.exists() {
        return Err(VideoError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        return Err(VideoError::Open {
            path: path.to_path_buf(),
            msg: "is a directory".into(),
        });
    }
    ffmpeg::format::input(&path).map_err(|e| VideoError::Open {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Count the packets of stream `index` without decoding them.
fn count_packets(path: &Path, index: usize) -> Result<usize, VideoError> {
    let mut ictx = open_input(path)?;
    let mut packet = ffmpeg::Packet::empty();
    let mut count = 0usize;
    let mut bad = 0usize;
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {
                bad = 0;
                if packet.stream() == index {
                    count += 1;
                }
            }
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) if bad < 1000 => bad += 1,
            Err(e) => {
                tracing::warn!(
                    "{}: demuxing stopped early while counting frames: {e}",
                    path.display()
                );
                break;
            }
        }
    }
    Ok(count)
}

fn info_from_input(
    path: &Path,
    ictx: &ffmpeg::format::context::Input,
) -> Result<VideoInfo, VideoError> {
    if ictx.nb_streams() == 0 {
        // E.g. an mp4 written with zero frames: the muxer leaves the empty track out.
        return Err(VideoError::Empty {
            path: path.to_path_buf(),
        });
    }
    let stream =
        ictx.streams()
            .best(MediaType::Video)
            .ok_or_else(|| VideoError::NoVideoStream {
                path: path.to_path_buf(),
            })?;
    let index = stream.index();
    let params = stream.parameters();
    let (width, height) = unsafe {
        let p = params.as_ptr();
        ((*p).width.max(0) as u32, (*p).height.max(0) as u32)
    };
    let codec = params.id().name().to_string();
    let tb = stream.time_base();
    let stream_duration = if stream.duration() > 0 {
        rational_f64(tb).map(|t| stream.duration() as f64 * t)
    } else {
        None
    };
    let container_duration = if ictx.duration() > 0 {
        Some(ictx.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE))
    } else {
        stream_duration
    };
    let header_frames = stream.frames();
    let (frames, frame_count_source) = if header_frames > 0 {
        (header_frames as usize, FrameCountSource::Header)
    } else {
        (
            count_packets(path, index)?,
            FrameCountSource::CountedPackets,
        )
    };
    let fps = rational_f64(stream.avg_frame_rate())
        .or_else(|| rational_f64(stream.rate()))
        .or_else(|| match (frames, stream_duration.or(container_duration)) {
            (n, Some(d)) if n > 0 && d > 0.0 => Some(n as f64 / d),
            _ => None,
        })
        .unwrap_or(30.0);
    Ok(VideoInfo {
        fps,
        frames,
        frame_count_source,
        duration: frames as f64 / fps,
        container_duration,
        width,
        height,
        codec,
        stream_index: index,
    })
}

/// Stream facts of the best video stream in `path`: average fps, frame count (the container's,
/// or counted from packets when it has none), `n / fps` duration, size and codec.
pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    let ictx = open_input(path)?;
    info_from_input(path, &ictx)
}

/// Copy an RGB24 ffmpeg frame (rows padded to `stride`) into an `RgbImage`.
fn frame_to_rgb(frame: &VideoFrame) -> RgbImage {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut buf = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        buf.extend_from_slice(&data[row * stride..row * stride + w * 3]);
    }
    RgbImage::from_raw(w as u32, h as u32, buf).expect("buffer size matches")
}

struct Converter {
    scaler: Option<Scaler>,
    key: (Pixel, u32, u32),
    rgb: VideoFrame,
}

impl Converter {
    fn new() -> Self {
        Converter {
            scaler: None,
            key: (Pixel::None, 0, 0),
            rgb: VideoFrame::empty(),
        }
    }

    fn convert(&mut self, frame: &VideoFrame) -> Result<RgbImage, ffmpeg::Error> {
        let key = (frame.format(), frame.width(), frame.height());
        if self.key != key {
            self.scaler = None;
        }
        let scaler = match &mut self.scaler {
            Some(s) => s,
            None => {
                // Same size, colour conversion only; bicubic chroma upsampling like ffmpeg's CLI
                // and decord (both go through swscale with its default flags).
                self.key = key;
                self.scaler.insert(Scaler::get(
                    key.0,
                    key.1,
                    key.2,
                    Pixel::RGB24,
                    key.1,
                    key.2,
                    ScaleFlags::BICUBIC,
                )?)
            }
        };
        scaler.run(frame, &mut self.rgb)?;
        Ok(frame_to_rgb(&self.rgb))
    }
}

/// Decode `path` and return the frames the reference evaluation would use: indices from
/// [`sample_indices`] (with the stream's average fps and frame count, see [`probe`]), then
/// [`resize_for_model`].
///
/// The file is demuxed and decoded once, sequentially; decoding stops after the last wanted
/// frame. Only kept frames are converted to RGB (swscale) and resized. Frame index `k` is the
/// `k`-th frame the decoder outputs, i.e. presentation order, as in decord. A corrupt packet is
/// skipped (and counted); the call fails only if no frame at all can be decoded.
pub fn decode_video(path: &Path, opts: &SamplingOptions) -> Result<SampledVideo, VideoError> {
    decode_video_range(path, opts, None)
}

/// [`decode_video`] for the frames of `range` alone ([`sample_indices_in`]). When the range
/// starts after the first frame, the demuxer seeks to the key frame at or before it, so only
/// that group of pictures and the range are decoded; frame indices then come from the frames'
/// timestamps (`(pts × time base − stream start) × f_v`, rounded). A file that cannot seek, or
/// whose stream has no time base, is decoded from the start instead (with a warning).
pub fn decode_video_range(
    path: &Path,
    opts: &SamplingOptions,
    range: Option<TimeRange>,
) -> Result<SampledVideo, VideoError> {
    let mut ictx = open_input(path)?;
    let info = info_from_input(path, &ictx)?;
    let wanted = sample_indices_in(info.frames, info.fps, range, opts.fps, opts.max_frames);
    if wanted.is_empty() {
        return Err(VideoError::Empty {
            path: path.to_path_buf(),
        });
    }
    let (decoder, time_base) = open_decoder(path, &ictx, &info)?;
    let indexing = match (wanted[0], time_base) {
        (0, _) => FrameIndexing::Counted,
        (first, Some(tb)) => match seek_before(path, &mut ictx, &info, tb, first) {
            Some(indexing) => indexing,
            None => {
                // A failed seek may leave the demuxer anywhere: start over.
                ictx = open_input(path)?;
                FrameIndexing::Counted
            }
        },
        (_, None) => {
            tracing::warn!(
                "{}: the stream has no time base, so it is decoded from the start",
                path.display()
            );
            FrameIndexing::Counted
        }
    };
    let sink = FrameSink {
        path,
        opts,
        time_base,
        fps: info.fps,
        converter: Converter::new(),
        out: SampledVideo {
            frames: Vec::with_capacity(wanted.len()),
            timestamps: Vec::with_capacity(wanted.len()),
            indices: Vec::with_capacity(wanted.len()),
            frames_decoded: 0,
            source_fps: info.fps,
            source_frames: info.frames,
            duration: info.duration,
            width: info.width,
            height: info.height,
        },
    };
    let mut pass = DecodePass::new(decoder, wanted, sink, indexing);
    let done = pass.run(&mut ictx, info.stream_index)?;
    pass.finish(done, info.frames)
}

/// How a decoded frame's index in the video is known.
#[derive(Clone, Copy, Debug)]
enum FrameIndexing {
    /// Decoding started at the first frame: the `k`-th frame out is frame `k`.
    Counted,
    /// Decoding started at a key frame inside the video: from the frame's timestamp.
    FromTimestamp {
        /// Seconds per timestamp tick.
        time_base: f64,
        /// The stream's start time in seconds (frame 0's timestamp).
        start: f64,
        fps: f64,
    },
}

impl FrameIndexing {
    /// The index of `frame`, the `n`-th out of the decoder, following `previous` (the last
    /// frame's index, if any).
    fn index_of(&self, frame: &VideoFrame, n: usize, previous: Option<usize>) -> usize {
        match *self {
            FrameIndexing::Counted => n,
            FrameIndexing::FromTimestamp {
                time_base,
                start,
                fps,
            } => match frame.timestamp().or(frame.pts()) {
                Some(t) => ((t as f64 * time_base - start) * fps).round().max(0.0) as usize,
                // A frame without a timestamp follows the one before it.
                None => previous.map_or(0, |p| p + 1),
            },
        }
    }
}

/// Seeks `ictx` to the key frame at or before frame `first`; returns how decoded frames are then
/// indexed, or `None` (with a warning) when the seek fails.
fn seek_before(
    path: &Path,
    ictx: &mut ffmpeg::format::context::Input,
    info: &VideoInfo,
    time_base: f64,
    first: usize,
) -> Option<FrameIndexing> {
    let stream = ictx
        .stream(info.stream_index)
        .expect("stream index from probe");
    let start = match stream.start_time() {
        t if t == ffmpeg::ffi::AV_NOPTS_VALUE => 0.0,
        t => t as f64 * time_base,
    };
    let seconds = start + first as f64 / info.fps;
    let target = (seconds * f64::from(ffmpeg::ffi::AV_TIME_BASE)).floor() as i64;
    // `..target`: the latest key frame at or before the target (avformat's max_ts is inclusive).
    match ictx.seek(target, ..target) {
        Ok(()) => Some(FrameIndexing::FromTimestamp {
            time_base,
            start,
            fps: info.fps,
        }),
        Err(e) => {
            tracing::warn!(
                "{}: cannot seek to {seconds:.3} s ({e}), so it is decoded from the start",
                path.display()
            );
            None
        }
    }
}

fn decode_err(path: &Path, msg: String) -> VideoError {
    VideoError::Decode {
        path: path.to_path_buf(),
        msg,
    }
}

/// Opens a decoder for the stream `info` describes; returns it with the stream's time base in
/// seconds (`None` when the stream has no usable one).
fn open_decoder(
    path: &Path,
    ictx: &ffmpeg::format::context::Input,
    info: &VideoInfo,
) -> Result<(ffmpeg::decoder::Video, Option<f64>), VideoError> {
    let stream = ictx
        .stream(info.stream_index)
        .expect("stream index from probe");
    let time_base = stream.time_base();
    let tb = rational_f64(time_base);
    let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| decode_err(path, format!("bad codec parameters: {e}")))?;
    unsafe {
        let raw = ctx.as_mut_ptr();
        (*raw).pkt_timebase = time_base.into();
        // 0 = as many threads as cores; thread_type keeps FFmpeg's default (frame | slice).
        (*raw).thread_count = 0;
    }
    let decoder = ctx.decoder().video().map_err(|e| {
        decode_err(
            path,
            format!("cannot open a decoder for codec '{}': {e}", info.codec),
        )
    })?;
    Ok((decoder, tb))
}

/// Where kept frames go: converted to RGB, resized for the model and stamped with their time.
struct FrameSink<'a> {
    path: &'a Path,
    opts: &'a SamplingOptions,
    /// Seconds per timestamp tick; without it a frame's time is `k / fps`.
    time_base: Option<f64>,
    fps: f64,
    converter: Converter,
    out: SampledVideo,
}

impl FrameSink<'_> {
    /// Appends `frame`, the `k`-th decoded frame, to the output.
    fn keep(&mut self, frame: &VideoFrame, k: usize) -> Result<(), VideoError> {
        let rgb = self.converter.convert(frame).map_err(|e| {
            decode_err(
                self.path,
                format!("colour conversion of frame {k} failed: {e}"),
            )
        })?;
        self.out
            .frames
            .push(resize_owned(rgb, self.opts.max_pixels, self.opts.factor));
        self.out.timestamps.push(self.timestamp(frame, k));
        self.out.indices.push(k);
        Ok(())
    }

    /// Presentation time in seconds: the frame's best-effort timestamp, else `k / fps`.
    fn timestamp(&self, f: &VideoFrame, k: usize) -> f64 {
        match (f.timestamp().or(f.pts()), self.time_base) {
            (Some(t), Some(tb)) => t as f64 * tb,
            _ => k as f64 / self.fps,
        }
    }
}

/// One sequential demux-and-decode pass that keeps the `wanted` frames (ascending indices in
/// decoder output order) and tallies the errors it skips.
struct DecodePass<'a> {
    decoder: ffmpeg::decoder::Video,
    wanted: Vec<usize>,
    sink: FrameSink<'a>,
    /// Position in `wanted` of the next frame to keep.
    next_wanted: usize,
    /// Frames output by the decoder so far.
    decoded: usize,
    indexing: FrameIndexing,
    /// Index of the most recent decoded frame.
    last_index: Option<usize>,
    decode_errors: usize,
    first_error: Option<String>,
    cur: VideoFrame,
    /// Most recent decoded frame, for the tail clamp.
    last: VideoFrame,
    /// Whether `last` is already in the output.
    last_kept: bool,
}

impl<'a> DecodePass<'a> {
    fn new(
        decoder: ffmpeg::decoder::Video,
        wanted: Vec<usize>,
        sink: FrameSink<'a>,
        indexing: FrameIndexing,
    ) -> Self {
        DecodePass {
            decoder,
            wanted,
            sink,
            next_wanted: 0,
            decoded: 0,
            indexing,
            last_index: None,
            decode_errors: 0,
            first_error: None,
            cur: VideoFrame::empty(),
            last: VideoFrame::empty(),
            last_kept: false,
        }
    }

    /// Counts a skipped error; the first one is kept for the messages.
    fn record_error(&mut self, e: impl std::fmt::Display) {
        self.decode_errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    /// Feeds the packets of stream `index` to the decoder until every wanted frame is in, then
    /// flushes the decoder if they are not. Returns whether every wanted frame was kept.
    fn run(
        &mut self,
        ictx: &mut ffmpeg::format::context::Input,
        index: usize,
    ) -> Result<bool, VideoError> {
        let mut packet = ffmpeg::Packet::empty();
        let mut bad_reads = 0usize;
        let mut done = false;
        loop {
            match packet.read(ictx) {
                Ok(()) => {
                    bad_reads = 0;
                    if packet.stream() != index {
                        continue;
                    }
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        self.record_error(e);
                    }
                    if self.drain()? {
                        done = true;
                        break;
                    }
                }
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::InvalidData) if bad_reads < 1000 => {
                    bad_reads += 1;
                    self.record_error("invalid data while demuxing");
                }
                Err(e) => {
                    tracing::warn!("{}: demuxing stopped early: {e}", self.sink.path.display());
                    self.first_error.get_or_insert_with(|| e.to_string());
                    break;
                }
            }
        }
        if !done {
            // Flush frames still buffered in the decoder (reordering, frame threads).
            if self.decoder.send_eof().is_ok() {
                done = self.drain()?;
            }
        }
        Ok(done)
    }

    /// Takes every frame the decoder has ready, keeping the wanted ones; returns `Ok(true)` once
    /// every wanted frame is in.
    fn drain(&mut self) -> Result<bool, VideoError> {
        loop {
            match self.decoder.receive_frame(&mut self.cur) {
                Ok(()) => {
                    let k = self
                        .indexing
                        .index_of(&self.cur, self.decoded, self.last_index);
                    self.decoded += 1;
                    self.last_index = Some(k);
                    self.last_kept = false;
                    // Counted, every wanted index comes up exactly; from timestamps, one the
                    // stream skips over takes the next frame shown (kept once).
                    while self.next_wanted < self.wanted.len() && self.wanted[self.next_wanted] <= k
                    {
                        self.next_wanted += 1;
                        if !self.last_kept {
                            self.sink.keep(&self.cur, k)?;
                            self.last_kept = true;
                        }
                    }
                    std::mem::swap(&mut self.cur, &mut self.last);
                    if self.next_wanted == self.wanted.len() {
                        return Ok(true);
                    }
                }
                Err(ffmpeg::Error::Eof) => return Ok(false),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::ffi::EAGAIN => {
                    return Ok(false)
                }
                Err(e) => {
                    self.record_error(e);
                    return Ok(false);
                }
            }
        }
    }

    /// Fails when no frame could be decoded. Otherwise, if the pass ended before every wanted
    /// frame was kept (`!done`), clamps the rest to the last frame; then reports the skipped
    /// errors and returns the frames.
    fn finish(mut self, done: bool, header_frames: usize) -> Result<SampledVideo, VideoError> {
        let path = self.sink.path;
        if self.decoded == 0 {
            return Err(match self.first_error {
                Some(msg) => decode_err(
                    path,
                    format!(
                        "no frame could be decoded ({} errors; first: {msg})",
                        self.decode_errors
                    ),
                ),
                None => VideoError::Empty {
                    path: path.to_path_buf(),
                },
            });
        }
        if !done {
            self.clamp_tail(header_frames)?;
        }
        self.sink.out.frames_decoded = self.decoded;
        if self.decode_errors > 0 {
            tracing::warn!(
                "{}: {} decode error(s) skipped (first: {})",
                path.display(),
                self.decode_errors,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        Ok(self.sink.out)
    }

    /// Fewer frames than the header promised: applies `min(index, n - 1)` with the true count,
    /// i.e. the wanted frames past the end become the last decoded frame (once).
    fn clamp_tail(&mut self, header_frames: usize) -> Result<(), VideoError> {
        let missing = self.wanted.len() - self.next_wanted;
        tracing::warn!(
            "{}: header says {} frames but only {} decoded; {} wanted frame(s) past the end clamped to the last frame",
            self.sink.path.display(),
            header_frames,
            self.decoded,
            missing
        );
        if !self.last_kept {
            let k = self.last_index.unwrap_or(self.decoded - 1);
            self.sink.keep(&self.last, k)?;
        }
        Ok(())
    }
}

/// Writes `frames` (all the same size) as a video at `fps` frames per second, in the container
/// that the file extension names (`.mp4`, `.mkv`, ...).
///
/// Codec: H.264 with `libx264` (`preset veryfast`, `crf 18`, no B-frames, one thread) when
/// FFmpeg has it, otherwise FFmpeg's built-in MPEG-4 Part 2 (`mpeg4`, `qscale 2`). Pixel format
/// yuv420p, or yuv444p for odd sizes with libx264 (the mpeg4 fallback needs even sizes). The
/// codec and the muxer run with FFmpeg's `bitexact` flags and one thread, so the same frames
/// almost always give the same bytes with the same FFmpeg build, but not always: libx264 0.164
/// (Debian 12, on an AVX-512 CPU) has been seen to encode a repeated clip inside one process a
/// little differently (decoded frames 0.55 apart in mean absolute value, from frame 4 on),
/// depending on what the process did before; the cause was not found (Valgrind, which cannot
/// run AVX-512 code, reports no uninitialised reads). What is guaranteed is the pixels within
/// the codec's loss, and that is what the tests pin. Returns the encoder's name.
pub fn encode_video(
    path: &Path,
    frames: &[RgbImage],
    fps: u32,
) -> Result<&'static str, VideoError> {
    use ffmpeg::{codec, encoder, format};
    init();
    let err = |msg: String| VideoError::Encode {
        path: path.to_path_buf(),
        msg,
    };
    if frames.is_empty() {
        return Err(err("no frames to encode".into()));
    }
    if fps == 0 {
        return Err(err("fps must be at least 1".into()));
    }
    let (w, h) = frames[0].dimensions();
    if w == 0 || h == 0 {
        return Err(err(format!("invalid frame size {w}x{h}")));
    }
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.dimensions() != (w, h))
    {
        return Err(err(format!(
            "frame {i} is {}x{}, frame 0 is {w}x{h}: all frames must have the same size",
            f.width(),
            f.height()
        )));
    }
    let even = w % 2 == 0 && h % 2 == 0;
    let (codec, name, pix) = match encoder::find_by_name("libx264") {
        Some(c) => (
            c,
            "libx264",
            if even { Pixel::YUV420P } else { Pixel::YUV444P },
        ),
        None => {
            if !even {
                return Err(err(format!(
                    "size {w}x{h}: the mpeg4 encoder (libx264 is not available) needs even sides"
                )));
            }
            let c = encoder::find(codec::Id::MPEG4)
                .ok_or_else(|| err("FFmpeg has neither libx264 nor mpeg4 encoders".into()))?;
            (c, "mpeg4", Pixel::YUV420P)
        }
    };
    let mut octx = format::output(&path).map_err(|e| err(format!("cannot create output: {e}")))?;
    let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
    let tb = Rational(1, fps as i32);
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| err(e.to_string()))?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(pix);
    enc.set_time_base(tb);
    enc.set_frame_rate(Some(Rational(fps as i32, 1)));
    enc.set_max_b_frames(0);
    enc.set_gop(fps.max(1) * 2);
    let mut flags = codec::Flags::BITEXACT;
    if global_header {
        flags |= codec::Flags::GLOBAL_HEADER;
    }
    enc.set_flags(flags);
    unsafe {
        (*enc.as_mut_ptr()).thread_count = 1;
    }
    let mut opts = ffmpeg::Dictionary::new();
    if name == "libx264" {
        opts.set("preset", "veryfast");
        opts.set("crf", "18");
        opts.set("threads", "1");
    } else {
        enc.set_bit_rate(4_000_000);
        enc.set_qmin(2);
        enc.set_qmax(4);
    }
    let mut enc = enc
        .open_as_with(codec, opts)
        .map_err(|e| err(format!("cannot open the {name} encoder: {e}")))?;
    {
        let mut ost = octx
            .add_stream(codec)
            .map_err(|e| err(format!("cannot add a stream: {e}")))?;
        ost.set_parameters(&enc);
        ost.set_time_base(tb);
        ost.set_avg_frame_rate(Rational(fps as i32, 1));
        ost.set_rate(Rational(fps as i32, 1));
    }
    let mut mux_opts = ffmpeg::Dictionary::new();
    mux_opts.set("fflags", "+bitexact");
    octx.write_header_with(mux_opts)
        .map_err(|e| err(format!("cannot write the header: {e}")))?;
    let ost_tb = octx.stream(0).expect("stream 0 was added").time_base();

    let mut scaler = Scaler::get(
        Pixel::RGB24,
        w,
        h,
        pix,
        w,
        h,
        ScaleFlags::BICUBIC
            | ScaleFlags::BITEXACT
            | ScaleFlags::FULL_CHR_H_INT
            | ScaleFlags::ACCURATE_RND,
    )
    .map_err(|e| err(format!("colour conversion setup failed: {e}")))?;
    let mut rgb = VideoFrame::new(Pixel::RGB24, w, h);
    let mut yuv = VideoFrame::empty();
    let write_packets = |enc: &mut ffmpeg::encoder::Video,
                         octx: &mut format::context::Output|
     -> Result<(), VideoError> {
        let mut pkt = ffmpeg::Packet::empty();
        while enc.receive_packet(&mut pkt).is_ok() {
            pkt.set_stream(0);
            pkt.rescale_ts(tb, ost_tb);
            pkt.write_interleaved(octx)
                .map_err(|e| err(format!("cannot write a packet: {e}")))?;
        }
        Ok(())
    };
    for (i, img) in frames.iter().enumerate() {
        let stride = rgb.stride(0);
        let row = w as usize * 3;
        let data = rgb.data_mut(0);
        for (y, src) in img.as_raw().chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(src);
        }
        scaler
            .run(&rgb, &mut yuv)
            .map_err(|e| err(format!("colour conversion of frame {i} failed: {e}")))?;
        yuv.set_pts(Some(i as i64));
        enc.send_frame(&yuv)
            .map_err(|e| err(format!("encoding frame {i} failed: {e}")))?;
        write_packets(&mut enc, &mut octx)?;
    }
    enc.send_eof()
        .map_err(|e| err(format!("flushing the encoder failed: {e}")))?;
    write_packets(&mut enc, &mut octx)?;
    octx.write_trailer()
        .map_err(|e| err(format!("cannot write the trailer: {e}")))?;
    Ok(name)
}
