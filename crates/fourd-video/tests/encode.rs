//! `encode_video` round trip: encode, decode every frame, compare count, size and colours.

use fourd_video::{decode_video, encode_video, SamplingOptions};
use image::{Rgb, RgbImage};

fn frame(i: usize, w: u32, h: u32) -> RgbImage {
    // Left half a colour that changes with the frame, right half fixed blue.
    let left = [(30 * i) as u8, 200 - (20 * i) as u8, 60];
    RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgb(left)
        } else {
            Rgb([20, 40, 220])
        }
    })
}

fn all_frames() -> SamplingOptions {
    SamplingOptions::all_frames()
}

fn mean(img: &RgbImage, x0: u32, x1: u32) -> [f64; 3] {
    let mut s = [0.0; 3];
    let mut n = 0.0;
    for y in 0..img.height() {
        for x in x0..x1 {
            let p = img.get_pixel(x, y);
            for c in 0..3 {
                s[c] += p[c] as f64;
            }
            n += 1.0;
        }
    }
    s.map(|v| v / n)
}

#[test]
fn encode_decode_round_trip() {
    let dir = std::env::temp_dir().join(format!("fourd-video-encode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (w, h) in [(64u32, 48u32), (33, 21)] {
        let frames: Vec<RgbImage> = (0..8).map(|i| frame(i, w, h)).collect();
        let path = dir.join(format!("rt_{w}x{h}.mp4"));
        let codec = match encode_video(&path, &frames, 8) {
            Ok(c) => c,
            Err(e) if w % 2 == 1 && e.to_string().contains("even") => continue, // mpeg4 fallback
            Err(e) => panic!("{e}"),
        };
        let v = decode_video(&path, &all_frames()).unwrap();
        assert_eq!(v.frames.len(), 8, "{codec}");
        assert_eq!((v.width, v.height), (w, h));
        assert!((v.source_fps - 8.0).abs() < 1e-6);
        for (i, (got, want)) in v.frames.iter().zip(&frames).enumerate() {
            for (x0, x1) in [(2, w / 2 - 2), (w / 2 + 2, w - 2)] {
                let (a, b) = (mean(got, x0, x1), mean(want, x0, x1));
                for c in 0..3 {
                    assert!(
                        (a[c] - b[c]).abs() < 8.0,
                        "{codec} frame {i} cols {x0}..{x1}: {a:?} vs {b:?}"
                    );
                }
            }
        }
        // Same input, same pixels (not always the same bytes: see `encode_video`).
        let again = dir.join(format!("rt_{w}x{h}_again.mp4"));
        encode_video(&again, &frames, 8).unwrap();
        let v2 = decode_video(&again, &all_frames()).unwrap();
        assert_eq!(v2.frames.len(), 8, "{codec}");
        for (i, (a, b)) in v.frames.iter().zip(&v2.frames).enumerate() {
            for (x0, x1) in [(0, w / 2), (w / 2, w)] {
                let (p, q) = (mean(a, x0, x1), mean(b, x0, x1));
                for c in 0..3 {
                    assert!(
                        (p[c] - q[c]).abs() < 1.0,
                        "{codec} frame {i}: {p:?} vs {q:?}"
                    );
                }
            }
        }
    }
    let err = encode_video(&dir.join("none.mp4"), &[], 8).unwrap_err();
    assert!(err.to_string().contains("no frames"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
