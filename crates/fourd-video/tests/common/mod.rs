//! Test-video generator: MPEG-4 Part 2 (FFmpeg's built-in `mpeg4` encoder) in whatever container
//! the file extension names (.mp4, .avi, .mkv, ...). Each frame carries its own index as a
//! 10-bit pattern of vertical stripes (bit b of the index -> stripe b bright or dark), which
//! survives lossy coding and resizing, so a test can tell which source frame came back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ffmpeg::{codec, encoder, format, Rational};
use ffmpeg_next as ffmpeg;
use image::RgbImage;

pub const BITS: usize = 10;

#[derive(Debug, Clone)]
pub struct Spec {
    pub width: u32,
    pub height: u32,
    /// Frame rate as a fraction `fps_num / fps_den`.
    pub fps_num: i32,
    pub fps_den: i32,
    pub frames: usize,
    pub max_b_frames: usize,
    /// mp4/mov only: index (moov) before the media data, so a truncated file still opens.
    pub faststart: bool,
}

impl Spec {
    pub fn new(width: u32, height: u32, fps: i32, frames: usize) -> Self {
        Spec {
            width,
            height,
            fps_num: fps,
            fps_den: 1,
            frames,
            max_b_frames: 0,
            faststart: false,
        }
    }
}

/// Write a test video to `path`.
pub fn make_video(path: &Path, spec: &Spec) {
    ffmpeg::init().unwrap();
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    let codec = encoder::find(codec::Id::MPEG4).expect("FFmpeg has the mpeg4 encoder");
    let mut octx = format::output(&path).expect("output context");
    let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
    let enc_tb = Rational(spec.fps_den, spec.fps_num);

    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .unwrap();
    enc.set_width(spec.width);
    enc.set_height(spec.height);
    enc.set_format(format::Pixel::YUV420P);
    enc.set_time_base(enc_tb);
    enc.set_frame_rate(Some(Rational(spec.fps_num, spec.fps_den)));
    enc.set_bit_rate(4_000_000);
    enc.set_qmin(2);
    enc.set_qmax(5);
    enc.set_gop(12);
    enc.set_max_b_frames(spec.max_b_frames);
    if global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut enc = enc.open_as(codec).expect("open mpeg4 encoder");
    {
        let mut ost = octx.add_stream(codec).unwrap();
        ost.set_parameters(&enc);
        ost.set_time_base(enc_tb);
        ost.set_avg_frame_rate(Rational(spec.fps_num, spec.fps_den));
        ost.set_rate(Rational(spec.fps_num, spec.fps_den));
    }
    if spec.faststart {
        let mut opts = ffmpeg::Dictionary::new();
        opts.set("movflags", "+faststart");
        octx.write_header_with(opts).expect("write header");
    } else {
        octx.write_header().expect("write header");
    }
    let ost_tb = octx.stream(0).unwrap().time_base();

    let write_packets = |enc: &mut encoder::Video, octx: &mut format::context::Output| {
        let mut pkt = ffmpeg::Packet::empty();
        while enc.receive_packet(&mut pkt).is_ok() {
            pkt.set_stream(0);
            pkt.rescale_ts(enc_tb, ost_tb);
            pkt.write_interleaved(octx).unwrap();
        }
    };
    for i in 0..spec.frames {
        let mut frame = ffmpeg::frame::Video::new(format::Pixel::YUV420P, spec.width, spec.height);
        fill_pattern(&mut frame, i);
        frame.set_pts(Some(i as i64));
        enc.send_frame(&frame).unwrap();
        write_packets(&mut enc, &mut octx);
    }
    enc.send_eof().unwrap();
    write_packets(&mut enc, &mut octx);
    octx.write_trailer().unwrap();
}

fn fill_pattern(frame: &mut ffmpeg::frame::Video, index: usize) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    let y = frame.data_mut(0);
    for row in 0..h {
        for col in 0..w {
            let bit = (col * BITS / w).min(BITS - 1);
            y[row * stride + col] = if (index >> bit) & 1 == 1 { 235 } else { 16 };
        }
    }
    for plane in 1..3 {
        let stride = frame.stride(plane);
        let ph = frame.plane_height(plane) as usize;
        let data = frame.data_mut(plane);
        for row in 0..ph {
            data[row * stride..row * stride + stride].fill(128);
        }
    }
}

/// Read the frame index back from a decoded (possibly resized) RGB frame.
pub fn read_index(img: &RgbImage) -> usize {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut index = 0;
    for bit in 0..BITS {
        // Average the middle half of stripe `bit`, over the middle half of the rows.
        let (x0, x1) = (
            (4 * bit + 1) * w / (4 * BITS),
            (4 * bit + 3) * w / (4 * BITS),
        );
        let (mut sum, mut n) = (0u64, 0u64);
        for y in h / 4..(3 * h / 4).max(h / 4 + 1) {
            for x in x0..x1.max(x0 + 1) {
                sum += img.get_pixel(x as u32, y as u32)[1] as u64;
                n += 1;
            }
        }
        if sum / n > 128 {
            index |= 1 << bit;
        }
    }
    index
}

/// `pts_time` of every video frame, from the `ffprobe` command line.
pub fn ffprobe_pts(path: &Path) -> Vec<Option<f64>> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_frames",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe not found: install the `ffmpeg` package (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .map(|l| l.parse::<f64>().ok())
        .collect()
}

/// A fresh temp directory for one test (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("fourd-video-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
