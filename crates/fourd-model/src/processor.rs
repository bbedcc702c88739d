//! Images and video frames to patches, exactly as `Qwen2VLImageProcessor` does: `smart_resize`,
//! bicubic resampling (PIL's fixed-point algorithm, which torchvision's uint8 antialias path also
//! follows), rescale, CLIP normalisation, padding an odd frame count with the last frame, and the
//! Conv3d patch flattening order.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::config::PreprocessorConfig;
use crate::error::{ModelError, Result};

/// Images larger than this many pixels are refused before decoding (a guard against decompression
/// bombs and mistakes, not a model limit: the model side is bounded by `max_pixels`).
pub const DEFAULT_DECODE_PIXEL_CAP: u64 = 16384 * 16384;

/// `smart_resize` of transformers: sides become multiples of `factor`, the area lands within
/// `[min_pixels, max_pixels]`, and the aspect ratio is kept as well as possible. Rounds halves to
/// even, like Python's `round`.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    if height == 0 || width == 0 {
        return Err(ModelError::input(format!(
            "image of size {width}x{height} has no pixels"
        )));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > 200.0 {
        return Err(ModelError::input(format!(
            "image of size {width}x{height}: aspect ratio {ratio:.1} exceeds 200"
        )));
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as usize, w_bar as usize))
}

/// Patches of one image or one video, ready for the vision tower.
#[derive(Clone, Debug)]
pub struct VisualPatches {
    /// `[grid_t * grid_h * grid_w, C * temporal * patch * patch]`, row-major.
    pub data: Vec<f32>,
    /// `(grid_t, grid_h, grid_w)` in patches.
    pub grid_thw: [usize; 3],
    pub patch_dim: usize,
}

impl VisualPatches {
    /// Tokens this item occupies in the LLM sequence.
    pub fn llm_tokens(&self, merge_size: usize) -> usize {
        self.grid_thw.iter().product::<usize>() / (merge_size * merge_size)
    }
}

/// Decodes an image file to RGB, refusing absurdly large images with a clear error.
pub fn load_image(path: &Path, pixel_cap: u64) -> Result<RgbImage> {
    let img_err = |msg: String| ModelError::Image {
        path: path.to_path_buf(),
        msg,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| ModelError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| ModelError::io(path, e))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| img_err(e.to_string()))?;
    let pixels = w as u64 * h as u64;
    if pixels > pixel_cap {
        return Err(img_err(format!(
            "{w}x{h} = {pixels} pixels is over the cap of {pixel_cap} pixels"
        )));
    }
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| ModelError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| ModelError::io(path, e))?;
    reader.no_limits();
    let img = reader.decode().map_err(|e| img_err(e.to_string()))?;
    Ok(img.to_rgb8())
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp"];

/// The image files of a frames folder, in name order.
pub fn list_frames(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut frames = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| ModelError::io(dir, e))?.path();
        let is_image = p
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            .unwrap_or(false);
        if p.is_file() && is_image {
            frames.push(p);
        }
    }
    if frames.is_empty() {
        return Err(ModelError::input(format!(
            "frames folder {} holds no image files ({})",
            dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    frames.sort();
    Ok(frames)
}

pub struct ImageProcessor {
    pub config: PreprocessorConfig,
    pub pixel_cap: u64,
}

impl ImageProcessor {
    pub fn new(config: PreprocessorConfig) -> Self {
        ImageProcessor {
            config,
            pixel_cap: DEFAULT_DECODE_PIXEL_CAP,
        }
    }

    /// One image: a single frame, duplicated to fill the temporal patch.
    pub fn preprocess_image(&self, image: &RgbImage) -> Result<VisualPatches> {
        self.preprocess_frames(std::slice::from_ref(image))
    }

    /// One video (or image when `frames.len() == 1`). The target size is computed once from the
    /// first frame, as transformers does.
    pub fn preprocess_frames(&self, frames: &[RgbImage]) -> Result<VisualPatches> {
        let c = &self.config;
        let first = frames
            .first()
            .ok_or_else(|| ModelError::input("a video needs at least one frame"))?;
        let (h0, w0) = (first.height() as usize, first.width() as usize);
        let factor = c.factor();
        let (th, tw) = if c.do_resize {
            smart_resize(h0, w0, factor, c.min_pixels, c.max_pixels)?
        } else {
            if h0 % factor != 0 || w0 % factor != 0 {
                return Err(ModelError::input(format!(
                    "image of size {w0}x{h0}: with do_resize off, sides must be multiples of {factor}"
                )));
            }
            (h0, w0)
        };
        // Each frame to normalised channel-first f32.
        let plane = th * tw;
        let mut planes: Vec<Vec<f32>> = Vec::with_capacity(frames.len() + 1);
        for frame in frames {
            let resized = if frame.height() as usize == th && frame.width() as usize == tw {
                std::borrow::Cow::Borrowed(frame)
            } else {
                std::borrow::Cow::Owned(resize_bicubic(frame, tw, th))
            };
            let mut chw = vec![0f32; 3 * plane];
            for (i, px) in resized.pixels().enumerate() {
                for ch in 0..3 {
                    let mut v = px.0[ch] as f32;
                    if c.do_rescale {
                        v = (v as f64 * c.rescale_factor) as f32;
                    }
                    if c.do_normalize {
                        v = (v - c.image_mean[ch]) / c.image_std[ch];
                    }
                    chw[ch * plane + i] = v;
                }
            }
            planes.push(chw);
        }
        let tp = c.temporal_patch_size;
        while !planes.len().is_multiple_of(tp) {
            let last = planes.last().cloned().expect("at least one frame");
            planes.push(last);
        }
        let (p, m) = (c.patch_size, c.merge_size);
        let (gt, gh, gw) = (planes.len() / tp, th / p, tw / p);
        let patch_dim = 3 * tp * p * p;
        let mut data = Vec::with_capacity(gt * gh * gw * patch_dim);
        // Rows: (t, block row, block col, row in block, col in block); columns: (C, tp, py, px).
        for t in 0..gt {
            for bh in 0..gh / m {
                for bw in 0..gw / m {
                    for mh in 0..m {
                        for mw in 0..m {
                            let (py0, px0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                            for ch in 0..3 {
                                for k in 0..tp {
                                    let fr = &planes[t * tp + k][ch * plane..(ch + 1) * plane];
                                    for py in 0..p {
                                        let row = (py0 + py) * tw + px0;
                                        data.extend_from_slice(&fr[row..row + p]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(VisualPatches {
            data,
            grid_thw: [gt, gh, gw],
            patch_dim,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Bicubic resampling, PIL's `ImagingResample` for 8-bit images: separable, support widened when
// downscaling (antialias), fixed-point coefficients with 22 fractional bits, horizontal pass first,
// intermediate rounded to u8.

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output index: first input index and integer weights.
fn resample_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let mut out = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let mut w: Vec<f64> = (xmin..xmax)
            .map(|x| bicubic_filter((x as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            w.iter_mut().for_each(|v| *v /= total);
        }
        let wi = w
            .iter()
            .map(|&v| {
                let s = v * (1u32 << PRECISION_BITS) as f64;
                (if v < 0.0 { s - 0.5 } else { s + 0.5 }) as i32
            })
            .collect();
        out.push((xmin, wi));
    }
    out
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Bicubic resize of an RGB image, bit-compatible with PIL's `Image.resize(..., BICUBIC)`.
pub fn resize_bicubic(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let round = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass: in_h rows of out_w pixels.
    let horiz: Vec<u8> = if in_w == out_w {
        src.clone()
    } else {
        let coeffs = resample_coeffs(in_w, out_w);
        let mut buf = vec![0u8; in_h * out_w * 3];
        for y in 0..in_h {
            for (x, (xmin, k)) in coeffs.iter().enumerate() {
                for ch in 0..3 {
                    let mut acc = round;
                    for (i, &kw) in k.iter().enumerate() {
                        acc += src[(y * in_w + xmin + i) * 3 + ch] as i64 * kw as i64;
                    }
                    buf[(y * out_w + x) * 3 + ch] = clip8(acc);
                }
            }
        }
        buf
    };
    let vert: Vec<u8> = if in_h == out_h {
        horiz
    } else {
        let coeffs = resample_coeffs(in_h, out_h);
        let mut buf = vec![0u8; out_h * out_w * 3];
        for (y, (ymin, k)) in coeffs.iter().enumerate() {
            for x in 0..out_w {
                for ch in 0..3 {
                    let mut acc = round;
                    for (i, &kw) in k.iter().enumerate() {
                        acc += horiz[((ymin + i) * out_w + x) * 3 + ch] as i64 * kw as i64;
                    }
                    buf[(y * out_w + x) * 3 + ch] = clip8(acc);
                }
            }
        }
        buf
    };
    RgbImage::from_raw(out_w as u32, out_h as u32, vert).expect("buffer sized to the image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_even_like_python() {
        // 42 / 28 = 1.5 rounds to 2, 70 / 28 = 2.5 rounds to 2 (not 3).
        assert_eq!(smart_resize(42, 56, 28, 0, 1 << 30).unwrap(), (56, 56));
        assert_eq!(smart_resize(70, 56, 28, 0, 1 << 30).unwrap(), (56, 56));
    }

    #[test]
    fn extreme_aspect_ratio_is_an_error() {
        let e = smart_resize(28, 28 * 201, 28, 0, usize::MAX).unwrap_err();
        assert!(e.to_string().contains("aspect ratio"), "{e}");
    }

    #[test]
    fn identity_resize_keeps_pixels() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 70, 9]));
        assert_eq!(resize_bicubic(&img, 5, 3), img);
    }
}
