//! Decoding and sampling against videos generated in the test (FFmpeg's `mpeg4` encoder), with
//! FFmpeg's own `ffprobe` as the timestamp oracle.

mod common;

use common::{ffprobe_pts, make_video, read_index, Spec, TempDir};
use fourd_video::{
    decode_video, decode_video_range, probe, resize_for_model, sample_indices, FrameCountSource,
    SamplingOptions, TimeRange, VideoError,
};
use image::RgbImage;

/// Kept frames carry the right pattern, indices follow the rule, timestamps equal ffprobe's.
fn check_against_ffprobe(path: &std::path::Path, video: &fourd_video::SampledVideo) {
    let pts = ffprobe_pts(path);
    assert_eq!(video.frames.len(), video.indices.len());
    assert_eq!(video.frames.len(), video.timestamps.len());
    for ((frame, &k), &t) in video
        .frames
        .iter()
        .zip(&video.indices)
        .zip(&video.timestamps)
    {
        assert_eq!(read_index(frame), k, "frame pattern at index {k}");
        let want = pts[k].expect("ffprobe gives a pts_time");
        assert!(
            (t - want).abs() < 1e-6,
            "frame {k}: ours {t} s, ffprobe {want} s"
        );
    }
}

#[test]
fn mp4_10fps_4_5s_keeps_one_frame_per_second() {
    let dir = TempDir::new("mp4-10fps");
    let path = dir.join("clip.mp4");
    make_video(&path, &Spec::new(160, 96, 10, 45));

    let info = probe(&path).unwrap();
    assert_eq!((info.frames, info.width, info.height), (45, 160, 96));
    assert_eq!(info.frame_count_source, FrameCountSource::Header);
    assert!((info.fps - 10.0).abs() < 1e-9, "fps {}", info.fps);
    assert!((info.duration - 4.5).abs() < 1e-9);
    assert_eq!(info.codec, "mpeg4");

    let v = decode_video(&path, &SamplingOptions::default()).unwrap();
    assert_eq!(v.indices, vec![0, 10, 20, 30]);
    assert_eq!((v.source_frames, v.width, v.height), (45, 160, 96));
    assert!((v.source_fps - 10.0).abs() < 1e-9 && (v.duration - 4.5).abs() < 1e-9);
    for f in &v.frames {
        assert_eq!(f.dimensions(), (160, 96), "small frames are not resized");
    }
    check_against_ffprobe(&path, &v);
    assert_eq!(v.timestamps, vec![0.0, 1.0, 2.0, 3.0]);
}

#[test]
fn b_frames_presentation_order_and_all_frames() {
    // B-frames make decode order differ from presentation order.
    let dir = TempDir::new("bframes");
    let path = dir.join("clip.mp4");
    let spec = Spec {
        max_b_frames: 2,
        ..Spec::new(160, 96, 25, 112)
    };
    make_video(&path, &spec);

    let v = decode_video(&path, &SamplingOptions::default()).unwrap();
    assert_eq!(v.indices, vec![0, 25, 50, 75]); // int(4.48) = 4 frames
    check_against_ffprobe(&path, &v);

    // fps = source fps: every frame, in presentation order (no cap).
    let all = SamplingOptions {
        fps: 25.0,
        max_frames: 0,
        ..Default::default()
    };
    let v = decode_video(&path, &all).unwrap();
    assert_eq!(v.indices, (0..112).collect::<Vec<_>>());
    check_against_ffprobe(&path, &v);
    assert!(
        v.timestamps.windows(2).all(|w| w[1] > w[0]),
        "timestamps increase"
    );
}

#[test]
fn avi_container() {
    let dir = TempDir::new("avi");
    let path = dir.join("clip.avi");
    make_video(&path, &Spec::new(160, 96, 25, 75));
    let info = probe(&path).unwrap();
    assert_eq!(
        (info.frames, info.frame_count_source),
        (75, FrameCountSource::Header)
    );
    let v = decode_video(&path, &SamplingOptions::default()).unwrap();
    assert_eq!(v.indices, vec![0, 25, 50]);
    for (f, &k) in v.frames.iter().zip(&v.indices) {
        assert_eq!(read_index(f), k);
    }
    let pts = ffprobe_pts(&path);
    for (&k, &t) in v.indices.iter().zip(&v.timestamps) {
        if let Some(want) = pts[k] {
            assert!(
                (t - want).abs() < 1e-6,
                "frame {k}: ours {t}, ffprobe {want}"
            );
        }
    }
}

#[test]
fn mkv_without_frame_count_counts_packets() {
    let dir = TempDir::new("mkv");
    let path = dir.join("clip.mkv");
    make_video(&path, &Spec::new(160, 96, 10, 45));
    let info = probe(&path).unwrap();
    assert_eq!(info.frame_count_source, FrameCountSource::CountedPackets);
    assert_eq!(info.frames, 45);
    assert!((info.fps - 10.0).abs() < 1e-6, "fps {}", info.fps);
    let v = decode_video(&path, &SamplingOptions::default()).unwrap();
    assert_eq!(v.indices, vec![0, 10, 20, 30]);
    check_against_ffprobe(&path, &v);
}

#[test]
fn long_video_is_capped_at_50_frames() {
    // 60 s at 2 fps -> 60 one-per-second frames -> 50 by linspace.
    let dir = TempDir::new("long");
    let path = dir.join("long.mp4");
    make_video(&path, &Spec::new(160, 32, 2, 120));
    let v = decode_video(&path, &SamplingOptions::default()).unwrap();
    assert_eq!(v.frames.len(), 50);
    assert_eq!(v.indices, sample_indices(120, 2.0, 1.0, 50));
    assert_eq!(v.indices[..6], [0, 2, 4, 6, 8, 12]);
    assert_eq!(*v.indices.last().unwrap(), 118);
    check_against_ffprobe(&path, &v);

    // Without the cap: all 60.
    let uncapped = SamplingOptions {
        max_frames: 0,
        ..Default::default()
    };
    let v = decode_video(&path, &uncapped).unwrap();
    assert_eq!(v.indices, (0..60).map(|i| 2 * i).collect::<Vec<_>>());
}

#[test]
fn large_frames_are_resized_for_the_model() {
    let dir = TempDir::new("hd");
    let path = dir.join("hd.mp4");
    make_video(&path, &Spec::new(1280, 720, 1, 3));
    let v = decode_video(&path, &SamplingOptions::default()).unwrap();
    assert_eq!((v.width, v.height), (1280, 720));
    assert_eq!(v.indices, vec![0, 1, 2]);
    for (f, &k) in v.frames.iter().zip(&v.indices) {
        assert_eq!(f.dimensions(), (588, 336));
        assert_eq!(read_index(f), k);
    }
}

#[test]
fn resize_rule() {
    let img = |w, h| {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        })
    };
    let cases = [
        ((1280, 720), (588, 336)),
        ((1920, 1080), (588, 336)),
        ((640, 480), (504, 364)),
        ((720, 1280), (336, 588)),
    ];
    for ((w, h), want) in cases {
        let out = resize_for_model(&img(w, h), 200_704, 28);
        assert_eq!(out.dimensions(), want, "{w}x{h}");
        assert!((out.width() * out.height()) as usize <= 200_704);
    }
    // At or under the budget: untouched, even when sides are not multiples of 28.
    for (w, h) in [(448, 448), (333, 201), (27, 5)] {
        let src = img(w, h);
        assert_eq!(resize_for_model(&src, 200_704, 28), src);
    }
}

#[test]
fn missing_file() {
    let path = std::path::Path::new("/nonexistent/dir/video.mp4");
    let err = decode_video(path, &SamplingOptions::default()).unwrap_err();
    assert!(matches!(err, VideoError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/dir/video.mp4"),
        "{err}"
    );
    assert!(matches!(probe(path), Err(VideoError::NotFound { .. })));
}

#[test]
fn text_file_named_mp4() {
    let dir = TempDir::new("text");
    let path = dir.join("notes.mp4");
    std::fs::write(&path, "this is not a video\njust some text\n").unwrap();
    let err = decode_video(&path, &SamplingOptions::default()).unwrap_err();
    assert!(matches!(err, VideoError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.mp4"), "{err}");

    let path = dir.join("noise.mp4");
    let noise: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, noise).unwrap();
    let err = decode_video(&path, &SamplingOptions::default()).unwrap_err();
    assert!(matches!(err, VideoError::Open { .. }), "{err:?}");

    let err = decode_video(&dir.0, &SamplingOptions::default()).unwrap_err();
    assert!(matches!(err, VideoError::Open { .. }), "directory: {err:?}");
}

#[test]
fn truncated_and_corrupt_mp4() {
    let dir = TempDir::new("corrupt");
    let good = dir.join("good.mp4");
    make_video(&good, &Spec::new(160, 96, 10, 45));
    let bytes = std::fs::read(&good).unwrap();

    // The mp4 muxer writes the index (moov) last: a truncated file has none.
    let cut = dir.join("truncated.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let err = decode_video(&cut, &SamplingOptions::default()).unwrap_err();
    assert!(matches!(err, VideoError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated.mp4"), "{err}");

    // Garbage over the middle of the media data: must not panic; frames or a Decode error.
    let mut broken = bytes.clone();
    let (a, b) = (broken.len() / 4, broken.len() / 2);
    for (i, x) in broken[a..b].iter_mut().enumerate() {
        *x = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    let bad = dir.join("garbage.mp4");
    std::fs::write(&bad, &broken).unwrap();
    match decode_video(&bad, &SamplingOptions::default()) {
        Ok(v) => assert!(!v.frames.is_empty()),
        Err(e) => assert!(matches!(e, VideoError::Decode { .. }), "{e:?}"),
    }
}

#[test]
fn truncated_faststart_mp4_clamps_the_tail() {
    // Index first, then the data cut short: the header promises 45 frames, fewer decode.
    let dir = TempDir::new("faststart");
    let good = dir.join("good.mp4");
    make_video(
        &good,
        &Spec {
            faststart: true,
            ..Spec::new(160, 96, 10, 45)
        },
    );
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 75 / 100]).unwrap();
    assert_eq!(probe(&cut).unwrap().frames, 45);
    let v = decode_video(&cut, &SamplingOptions::default()).unwrap();
    // Wanted 0, 10, 20, 30; those past the end become the last decodable frame, i.e.
    // min(int(i * step), n - 1) with the true count n (ffprobe's count of decoded frames).
    let real = ffprobe_pts(&cut).len();
    assert!(real > 1 && real < 31, "ffprobe decodes {real} frames");
    let mut expect: Vec<usize> = [0, 10, 20, 30]
        .iter()
        .map(|&i: &usize| i.min(real - 1))
        .collect();
    expect.dedup();
    assert_eq!(v.indices, expect);
    // The last frame comes from the cut packet, partly concealed from the one before.
    for (f, &k) in v.frames.iter().zip(&v.indices) {
        assert!(
            read_index(f) == k || (k == real - 1 && read_index(f) == k - 1),
            "frame {k}"
        );
    }
}

#[test]
fn zero_frame_video() {
    let dir = TempDir::new("empty");
    // mp4: the muxer drops the empty track, leaving a file with no streams.
    // avi: the stream is there, with no packets and no frame count.
    for name in ["empty.mp4", "empty.avi"] {
        let path = dir.join(name);
        make_video(&path, &Spec::new(160, 96, 10, 0));
        let err = decode_video(&path, &SamplingOptions::default()).unwrap_err();
        assert!(matches!(err, VideoError::Empty { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn audio_only_file_has_no_video_stream() {
    // A minimal PCM WAV: 0.1 s of silence, 8 kHz mono 16-bit.
    let dir = TempDir::new("wav");
    let path = dir.join("sound.mp4");
    let data = vec![0u8; 1600];
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(&path, wav).unwrap();
    let err = decode_video(&path, &SamplingOptions::default()).unwrap_err();
    assert!(matches!(err, VideoError::NoVideoStream { .. }), "{err:?}");
    assert!(err.to_string().contains("sound.mp4"), "{err}");
}

/// A time window is decoded from the key frame before it: the same frames (by their drawn index
/// and ffprobe's timestamps) as the rule gives on the window, and far fewer frames decoded than
/// decoding from the start would take.
#[test]
fn a_window_seeks_to_its_key_frame_and_keeps_its_frames() {
    let dir = TempDir::new("window");
    for (name, b_frames) in [("plain.mp4", 0), ("bframes.mp4", 2)] {
        let path = dir.join(name);
        let mut spec = Spec::new(64, 48, 10, 100);
        spec.max_b_frames = b_frames;
        make_video(&path, &spec);
        let range = TimeRange::new(5.0, 7.0).unwrap();
        let v = decode_video_range(&path, &SamplingOptions::default(), Some(range)).unwrap();
        // Frames 50..=70 are 2.1 s of video: two frames at 1 fps, as the rule gives on a video.
        assert_eq!(v.indices, vec![50, 60], "{name}");
        check_against_ffprobe(&path, &v);
        // The key frames are every 12 frames: decoding starts at frame 48, not 0.
        assert!(
            v.frames_decoded <= 61 - 48 + 2 * b_frames,
            "{name}: decoded {} frames",
            v.frames_decoded
        );
        // The whole video decodes from frame 0; the same frames at the same indices.
        let whole = decode_video(&path, &SamplingOptions::all_frames()).unwrap();
        assert_eq!(whole.frames_decoded, 100);
        for (frame, &k) in v.frames.iter().zip(&v.indices) {
            assert_eq!(frame, &whole.frames[k], "{name}: frame {k}");
        }
        // A window from the start does not seek; one past the end keeps the last frame.
        let from_start = TimeRange::new(0.0, 2.0).unwrap();
        let v = decode_video_range(&path, &SamplingOptions::default(), Some(from_start)).unwrap();
        assert_eq!(v.indices, vec![0, 10]);
        let past = TimeRange::new(20.0, 30.0).unwrap();
        let v = decode_video_range(&path, &SamplingOptions::default(), Some(past)).unwrap();
        assert_eq!(v.indices, vec![99]);
        assert_eq!(read_index(&v.frames[0]), 99);
    }
}
