//! SpatialVID's released depth: `depths/<group>/<clip>.zip`, one OpenEXR image per annotated
//! frame. The one reader and the one writer of that format (the data pipeline reads it, `fourd
//! synth --layout release` writes it). Sources are cited in `docs/spatialvid-release.md` §1.
//!
//! * **Archive**: a deflated zip whose members are `{k:05d}.exr`, `k` the annotated position (the
//!   `poses.npy` row), read in name order (SpatialVID `cvd_opt.py` `save_depth`, l.39-49;
//!   `utils/read_depth.py`).
//! * **Image**: one HALF channel `"Z"`, ZIP-compressed scan lines (the Python binding's default
//!   header), holding **inverse depth** (the optimised disparity), not depth.
//! * **Grid**: the camera tracker's, not the video's: the frame scaled to about 384·512 pixels,
//!   `h1 = int(h0·sqrt(384·512/(h0·w0)))` (and `w1` alike), then cropped top-left to multiples of
//!   8 (`camera_tracking.py` `image_stream`, l.76-81). A grid pixel `(u, v)` therefore covers the
//!   video pixels around `(u·w0/w1, v·h0/h1)`: the crop drops the right and bottom edge.
//! * **Values**: `depth = 1/Z` where `Z > 0`; `Z <= 0`, NaN and unreadable members are invalid
//!   (SpatialVID's current reader says negative values are invalid; its first one clipped them to
//!   1e2 instead, which would invent far surfaces). Invalid depth is NaN here.
//! * **Scale**: not metric; depth and `poses.npy` share one arbitrary scale per clip, so only
//!   scale-free quantities may be measured from them.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use exr::prelude::{
    f16, Blocks, Compression, Encoding, Image, LineOrder, ReadChannels, ReadLayers,
    ReadSpecificChannel, SpecificChannels, Vec2, WritableImage,
};

/// The pixel count the tracker scales frames to (`384 * 512`).
pub const TRACKING_PIXELS: f64 = 384.0 * 512.0;
/// The tracker crops its grid to multiples of this.
pub const TRACKING_MULTIPLE: usize = 8;
/// The channel holding inverse depth.
pub const CHANNEL: &str = "Z";

/// Errors reading or writing a depth archive; every one names the archive.
#[derive(Debug, thiserror::Error)]
pub enum DepthArchiveError {
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(path: &Path, msg: impl Into<String>) -> DepthArchiveError {
    DepthArchiveError::Invalid {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// `depths/<group>/<clip>.zip` under `root`: the one path rule for depth archives.
pub fn archive_path(root: &Path, group: &str, clip: &str) -> PathBuf {
    root.join("depths").join(group).join(format!("{clip}.zip"))
}

/// The tracker's grid for a video of `video` = (width, height).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackingGrid {
    pub video: (usize, usize),
    /// Size after scaling, before the crop.
    pub scaled: (usize, usize),
    /// Size of the depth images (scaled, cropped to multiples of 8).
    pub size: (usize, usize),
}

impl TrackingGrid {
    pub fn for_video(width: usize, height: usize) -> Self {
        let s = (TRACKING_PIXELS / (height as f64 * width as f64)).sqrt();
        // Python's int() truncates; so does `as`.
        let scaled = ((width as f64 * s) as usize, (height as f64 * s) as usize);
        let crop = |x: usize| x / TRACKING_MULTIPLE * TRACKING_MULTIPLE;
        TrackingGrid {
            video: (width, height),
            scaled,
            size: (crop(scaled.0), crop(scaled.1)),
        }
    }

    /// The grid pixel covering video pixel `(x, y)` (nearest: the one whose span holds the
    /// video pixel's centre), or `None` where the crop removed it. Integer arithmetic: pixel
    /// centres can fall exactly on a boundary (`(90 + 0.5) · 96 / 543 = 16`), where floating
    /// point could round either way.
    pub fn grid_pixel(&self, x: usize, y: usize) -> Option<(usize, usize)> {
        let u = (2 * x + 1) * self.scaled.0 / (2 * self.video.0);
        let v = (2 * y + 1) * self.scaled.1 / (2 * self.video.1);
        (u < self.size.0 && v < self.size.1).then_some((u, v))
    }

    /// The video pixel under grid pixel `(u, v)`'s centre: where a writer takes the grid
    /// pixel's value from a video-sized map (nearest), `((2u + 1) · w0) div (2 · w1)`.
    pub fn video_pixel(&self, u: usize, v: usize) -> (usize, usize) {
        let x = (2 * u + 1) * self.video.0 / (2 * self.scaled.0);
        let y = (2 * v + 1) * self.video.1 / (2 * self.scaled.1);
        (x.min(self.video.0 - 1), y.min(self.video.1 - 1))
    }
}

impl TrackingGrid {
    /// For each video pixel (row-major), the row-major index of its grid pixel
    /// ([`Self::grid_pixel`]) in an image of [`Self::size`], or `None` where the crop removed it.
    pub fn video_to_grid(&self) -> Vec<Option<usize>> {
        let (w0, h0) = self.video;
        (0..w0 * h0)
            .map(|i| {
                self.grid_pixel(i % w0, i / w0)
                    .map(|(u, v)| v * self.size.0 + u)
            })
            .collect()
    }

    /// For each grid pixel (row-major), the row-major index of its video pixel
    /// ([`Self::video_pixel`]).
    pub fn grid_to_video(&self) -> Vec<usize> {
        let (gw, gh) = self.size;
        (0..gw * gh)
            .map(|i| {
                let (x, y) = self.video_pixel(i % gw, i / gw);
                y * self.video.0 + x
            })
            .collect()
    }
}

/// One frame of inverse depth on the tracking grid, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct InverseDepth {
    pub width: usize,
    pub height: usize,
    pub z: Vec<f32>,
}

/// Depth from inverse depth: `1/Z` where `Z > 0`, NaN elsewhere.
pub fn depth_from_inverse(z: f32) -> f32 {
    if z > 0.0 {
        1.0 / z
    } else {
        f32::NAN
    }
}

/// Reads every frame of `path`, members in name order. A member that is not a readable image
/// with a `Z` channel is an error, not a gap: skipping it would shift every later frame.
pub fn read(path: &Path) -> Result<Vec<InverseDepth>, DepthArchiveError> {
    let bytes = std::fs::read(path).map_err(|source| DepthArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| invalid(path, format!("not a zip archive: {e}")))?;
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let member = zip
            .by_index(i)
            .map_err(|e| invalid(path, format!("member {i}: {e}")))?;
        let name = member
            .name()
            .map_err(|e| invalid(path, format!("member {i}: {e}")))?
            .into_owned();
        if name.to_ascii_lowercase().ends_with(".exr") {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(invalid(path, "no .exr member"));
    }
    let mut frames = Vec::with_capacity(names.len());
    for name in &names {
        let mut data = Vec::new();
        zip.by_name(name)
            .and_then(|mut f| f.read_to_end(&mut data).map_err(Into::into))
            .map_err(|e| invalid(path, format!("member {name}: {e}")))?;
        let frame = decode_exr(&data).map_err(|e| invalid(path, format!("member {name}: {e}")))?;
        if let Some(first) = frames.first() {
            let first: &InverseDepth = first;
            if (first.width, first.height) != (frame.width, frame.height) {
                return Err(invalid(
                    path,
                    format!(
                        "member {name} is {}x{}, the first is {}x{}",
                        frame.width, frame.height, first.width, first.height
                    ),
                ));
            }
        }
        frames.push(frame);
    }
    Ok(frames)
}

fn decode_exr(data: &[u8]) -> std::result::Result<InverseDepth, String> {
    let image = exr::prelude::read()
        .no_deep_data()
        .largest_resolution_level()
        .specific_channels()
        .required(CHANNEL)
        .collect_pixels(
            |size, _| (size.width(), vec![0f32; size.width() * size.height()]),
            |(w, z): &mut (usize, Vec<f32>), pos, (v,): (f32,)| z[pos.y() * *w + pos.x()] = v,
        )
        .first_valid_layer()
        .all_attributes()
        .from_buffered(Cursor::new(data))
        .map_err(|e| e.to_string())?;
    let size = image.layer_data.size;
    let (_, z) = image.layer_data.channel_data.pixels;
    Ok(InverseDepth {
        width: size.width(),
        height: size.height(),
        z,
    })
}

/// Writes `frames` as an archive at `path` (created with its parent folders), members
/// `{k:05d}.exr`, HALF channel `Z`, ZIP compression, zip entries deflated and dated 1980-01-01
/// so the bytes depend on the values only.
pub fn write(path: &Path, frames: &[InverseDepth]) -> Result<(), DepthArchiveError> {
    let io = |source| DepthArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for (k, frame) in frames.iter().enumerate() {
        if frame.z.len() != frame.width * frame.height || frame.width == 0 || frame.height == 0 {
            return Err(invalid(path, format!("frame {k}: bad size")));
        }
        let exr = encode_exr(frame).map_err(|e| invalid(path, format!("frame {k}: {e}")))?;
        zip.start_file(format!("{k:05}.exr"), options)
            .map_err(|e| invalid(path, e.to_string()))?;
        zip.write_all(&exr).map_err(io)?;
    }
    let bytes = zip
        .finish()
        .map_err(|e| invalid(path, e.to_string()))?
        .into_inner();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}

fn encode_exr(frame: &InverseDepth) -> std::result::Result<Vec<u8>, String> {
    let w = frame.width;
    let channels = SpecificChannels::build()
        .with_channel(CHANNEL)
        .with_pixel_fn(|pos: Vec2<usize>| (f16::from_f32(frame.z[pos.y() * w + pos.x()]),));
    let encoding = Encoding {
        compression: Compression::ZIP16,
        blocks: Blocks::ScanLines,
        line_order: LineOrder::Increasing,
    };
    let image = Image::from_encoded_channels((w, frame.height), encoding, channels);
    let mut out = Cursor::new(Vec::new());
    image
        .write()
        .non_parallel()
        .to_buffered(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// Depth at video resolution from one archive frame: each video pixel takes its grid pixel's
/// `1/Z` (nearest), NaN where the grid has none or `Z` is invalid. `map` is
/// [`TrackingGrid::video_to_grid`], computed once per clip.
pub fn depth_at_video_size(frame: &InverseDepth, map: &[Option<usize>]) -> Vec<f32> {
    map.iter()
        .map(|g| {
            g.and_then(|i| frame.z.get(i))
                .map_or(f32::NAN, |&z| depth_from_inverse(z))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_of_720p_is_the_trackers() {
        // docs/spatialvid-release.md §1: 1280x720 gives 584x328.
        let g = TrackingGrid::for_video(1280, 720);
        assert_eq!(g.size, (584, 328));
        assert_eq!(g.grid_pixel(1279, 719), None, "the crop drops the corner");
        assert_eq!(g.grid_pixel(0, 0), Some((0, 0)));
    }

    #[test]
    fn round_trip_and_invalid_values() {
        let dir = std::env::temp_dir().join(format!("fourd-depth-archive-{}", std::process::id()));
        let path = dir.join("g/c.zip");
        let frames: Vec<InverseDepth> = (0..3)
            .map(|k| InverseDepth {
                width: 16,
                height: 8,
                z: (0..128)
                    .map(|i| {
                        if i % 17 == 0 {
                            -0.01
                        } else {
                            0.25 + (i + k) as f32 / 256.0
                        }
                    })
                    .collect(),
            })
            .collect();
        write(&path, &frames).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in frames.iter().zip(&back) {
            for (x, y) in a.z.iter().zip(&b.z) {
                assert_eq!(f16::from_f32(*x).to_f32(), *y);
            }
        }
        assert!(depth_from_inverse(back[0].z[0]).is_nan());
        assert!(depth_from_inverse(0.0).is_nan());
        assert_eq!(depth_from_inverse(0.5), 2.0);
        assert_eq!(std::fs::read(&path).unwrap(), {
            write(&path, &frames).unwrap();
            std::fs::read(&path).unwrap()
        });
        std::fs::write(&path, b"not a zip").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("c.zip"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
