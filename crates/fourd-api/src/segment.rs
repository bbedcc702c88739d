//! Client of the segmentation protocol (`docs/api.md`): frames + a text prompt -> one mask per
//! frame.
//!
//! ```text
//! POST {base_url}/segment
//! {"prompt": "the red car", "frames": [{"index": 0, "png_base64": "..."}, ...]}
//! -> 200 {"masks": [{"index": 0, "width": 640, "height": 360, "png_base64": "..."}, ...]}
//! ```
//! Mask PNGs are 8-bit grayscale (other PNG colour types are converted to luma); any non-zero
//! pixel is foreground. The client returns 0/255 masks in frame order.

use std::io::Cursor;
use std::time::Duration;

use base64::Engine as _;
use image::{GrayImage, ImageFormat, RgbImage};
use serde_json::{json, Value};

use crate::chat::{endpoint, kind};
use crate::error::{snippet, ApiError};
use crate::http::Poster;

/// Settings of a [`SegmentClient`].
#[derive(Clone)]
pub struct SegmentConfig {
    /// Everything before `/segment`, e.g. `http://127.0.0.1:8001`.
    pub base_url: String,
    /// Bearer key sent as `Authorization: Bearer ...`; `None` sends none (no environment lookup).
    pub api_key: Option<String>,
    /// Limit for one attempt; a video's worth of frames takes a while, so be generous.
    pub timeout: Duration,
    /// Retries after the first attempt on timeouts, connection errors, 429 and 5xx.
    pub max_retries: u32,
    /// Wait before the first retry, doubled for each further one (a `Retry-After` header wins).
    pub backoff: Duration,
}

impl SegmentConfig {
    /// `base_url` with the defaults: no key, 600 s timeout, 2 retries, 2 s initial backoff.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeout: Duration::from_secs(600),
            max_retries: 2,
            backoff: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for SegmentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// Blocking client of a segmentation service. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct SegmentClient {
    url: String,
    poster: Poster,
}

impl std::fmt::Debug for SegmentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SegmentClient {
    pub fn new(cfg: SegmentConfig) -> Result<Self, ApiError> {
        let url = endpoint(&cfg.base_url, "/segment")?;
        let poster = Poster::new(cfg.timeout, cfg.max_retries, cfg.backoff, cfg.api_key)?;
        Ok(Self { url, poster })
    }

    /// The full URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.url
    }

    /// Segments the object described by `prompt` in every frame (frames of one video, in order,
    /// so that a video predictor can track it). Returns one 0/255 mask per frame, the size of its
    /// frame, in frame order. No frames: no request, no masks.
    pub fn segment(&self, frames: &[RgbImage], prompt: &str) -> Result<Vec<GrayImage>, ApiError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let body = encode_request(&self.url, frames, prompt)?;
        let reply = self.poster.post_json(&self.url, &body)?;
        let sizes: Vec<(u32, u32)> = frames.iter().map(|f| f.dimensions()).collect();
        decode_reply(&self.url, &reply, &sizes)
    }
}

pub(crate) fn encode_png_rgb(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

pub(crate) fn encode_png_gray(img: &GrayImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

fn encode_request(url: &str, frames: &[RgbImage], prompt: &str) -> Result<Vec<u8>, ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut items = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let png = encode_png_rgb(frame).map_err(|e| ApiError::InvalidInput {
            url: url.to_string(),
            problem: format!(
                "cannot encode frame {i} ({}x{}) as PNG: {e}",
                frame.width(),
                frame.height()
            ),
        })?;
        items.push(json!({ "index": i, "png_base64": b64.encode(png) }));
    }
    serde_json::to_vec(&json!({ "prompt": prompt, "frames": items })).map_err(|e| {
        ApiError::InvalidInput {
            url: url.to_string(),
            problem: format!("cannot serialise request: {e}"),
        }
    })
}

/// Checks the reply against the request (`sizes[i]` is frame `i`'s width and height) and decodes
/// the masks into frame order.
fn decode_reply(url: &str, body: &[u8], sizes: &[(u32, u32)]) -> Result<Vec<GrayImage>, ApiError> {
    let malformed = |field: String, problem: String| ApiError::MalformedReply {
        url: url.to_string(),
        field,
        problem,
    };
    let v: Value = serde_json::from_slice(body).map_err(|cause| ApiError::MalformedJson {
        url: url.to_string(),
        cause,
        snippet: snippet(body, 200),
    })?;
    let Some(masks) = v.get("masks") else {
        let why = match v.get("error").or_else(|| v.get("detail")) {
            Some(err) => format!("is missing; the reply carries an error: {err}"),
            None => format!("is missing (reply: {})", snippet(body, 200)),
        };
        return Err(malformed("masks".into(), why));
    };
    let masks = masks.as_array().ok_or_else(|| {
        malformed(
            "masks".into(),
            format!("is not an array but {}", kind(masks)),
        )
    })?;
    if masks.len() != sizes.len() {
        return Err(malformed(
            "masks".into(),
            format!(
                "has {} entries for {} frames sent",
                masks.len(),
                sizes.len()
            ),
        ));
    }
    let mut out: Vec<Option<GrayImage>> = vec![None; sizes.len()];
    for (pos, m) in masks.iter().enumerate() {
        let field = |name: &str| format!("masks[{pos}].{name}");
        let uint = |name: &str| -> Result<u64, ApiError> {
            let f = m
                .get(name)
                .ok_or_else(|| malformed(field(name), "is missing".into()))?;
            f.as_u64().ok_or_else(|| {
                malformed(
                    field(name),
                    format!("is {} instead of a non-negative integer", kind(f)),
                )
            })
        };
        let index = uint("index")?;
        let Some(slot) = usize::try_from(index).ok().filter(|&i| i < sizes.len()) else {
            return Err(malformed(
                field("index"),
                format!("is {index}, but frames are numbered 0..{}", sizes.len()),
            ));
        };
        if out[slot].is_some() {
            return Err(malformed(field("index"), format!("repeats index {index}")));
        }
        let (fw, fh) = sizes[slot];
        let (w, h) = (uint("width")?, uint("height")?);
        if (w, h) != (u64::from(fw), u64::from(fh)) {
            return Err(malformed(
                format!("masks[{pos}]"),
                format!("is {w}x{h}, but frame {index} is {fw}x{fh}"),
            ));
        }
        let data = m
            .get("png_base64")
            .ok_or_else(|| malformed(field("png_base64"), "is missing".into()))?;
        let data = data.as_str().ok_or_else(|| {
            malformed(
                field("png_base64"),
                format!("is {} instead of a string", kind(data)),
            )
        })?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| malformed(field("png_base64"), format!("is not valid base64: {e}")))?;
        let img = image::load_from_memory_with_format(&png, ImageFormat::Png)
            .map_err(|e| malformed(field("png_base64"), format!("is not a readable PNG: {e}")))?;
        if img.width() != fw || img.height() != fh {
            return Err(malformed(
                field("png_base64"),
                format!(
                    "decodes to {}x{}, but frame {index} is {fw}x{fh}",
                    img.width(),
                    img.height()
                ),
            ));
        }
        let mut mask = img.into_luma8();
        for p in mask.pixels_mut() {
            p.0[0] = if p.0[0] > 0 { 255 } else { 0 };
        }
        out[slot] = Some(mask);
    }
    // Count and uniqueness checked above, so every slot is filled.
    out.into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.ok_or_else(|| malformed("masks".into(), format!("has no mask for frame {i}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_json(index: usize, mask: &GrayImage) -> Value {
        let png = encode_png_gray(mask).unwrap();
        json!({
            "index": index,
            "width": mask.width(),
            "height": mask.height(),
            "png_base64": base64::engine::general_purpose::STANDARD.encode(png),
        })
    }

    #[test]
    fn decode_orders_and_binarises() {
        let a = GrayImage::from_fn(4, 3, |x, _| image::Luma([if x == 0 { 1 } else { 0 }]));
        let b = GrayImage::from_pixel(4, 3, image::Luma([200]));
        let body =
            serde_json::to_vec(&json!({"masks": [mask_json(1, &b), mask_json(0, &a)]})).unwrap();
        let masks = decode_reply("u", &body, &[(4, 3), (4, 3)]).unwrap();
        assert_eq!(masks[0].get_pixel(0, 0).0[0], 255);
        assert_eq!(masks[0].get_pixel(1, 0).0[0], 0);
        assert!(masks[1].pixels().all(|p| p.0[0] == 255));
    }

    #[test]
    fn decode_rejects_inconsistent_replies() {
        let m = GrayImage::new(4, 3);
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"masks": [mask_json(0, &m)]}),
                "`masks` has 1 entries for 2 frames",
            ),
            (
                json!({"masks": [mask_json(0, &m), mask_json(0, &m)]}),
                "`masks[1].index` repeats index 0",
            ),
            (
                json!({"masks": [mask_json(0, &m), mask_json(5, &m)]}),
                "`masks[1].index` is 5",
            ),
            (
                json!({"masks": [mask_json(0, &m), mask_json(1, &GrayImage::new(3, 3))]}),
                "`masks[1]` is 3x3, but frame 1 is 4x3",
            ),
            (
                json!({"masks": [mask_json(0, &m), {"index": 1, "width": 4, "height": 3}]}),
                "`masks[1].png_base64` is missing",
            ),
            (
                json!({"masks": [mask_json(0, &m), {"index": 1, "width": 4, "height": 3, "png_base64": "!!"}]}),
                "not valid base64",
            ),
            (
                json!({"masks": [mask_json(0, &m), {"index": "1", "width": 4, "height": 3, "png_base64": ""}]}),
                "`masks[1].index` is a string",
            ),
            (
                json!({"detail": "CUDA out of memory"}),
                "CUDA out of memory",
            ),
            (json!({"masks": 3}), "`masks` is not an array"),
        ];
        for (v, want) in cases {
            let body = serde_json::to_vec(&v).unwrap();
            let e = decode_reply("http://s/segment", &body, &[(4, 3), (4, 3)])
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
        // Declared size right, PNG size wrong.
        let mut bad = mask_json(1, &GrayImage::new(2, 2));
        bad["width"] = json!(4);
        bad["height"] = json!(3);
        let body = serde_json::to_vec(&json!({"masks": [mask_json(0, &m), bad]})).unwrap();
        let e = decode_reply("u", &body, &[(4, 3), (4, 3)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("decodes to 2x2"), "{e}");
    }
}
