//! The build without FFmpeg: every video file operation fails with [`VideoError::NoFfmpeg`]
//! naming the file (a missing file is still reported as missing).

use std::path::Path;

use image::RgbImage;

use crate::{SampledVideo, SamplingOptions, TimeRange, VideoError, VideoInfo};

fn unavailable(path: &Path) -> VideoError {
    if path.exists() {
        VideoError::NoFfmpeg {
            path: path.to_path_buf(),
        }
    } else {
        VideoError::NotFound {
            path: path.to_path_buf(),
        }
    }
}

pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    Err(unavailable(path))
}

pub fn decode_video(path: &Path, _opts: &SamplingOptions) -> Result<SampledVideo, VideoError> {
    Err(unavailable(path))
}

pub fn decode_video_range(
    path: &Path,
    _opts: &SamplingOptions,
    _range: Option<TimeRange>,
) -> Result<SampledVideo, VideoError> {
    Err(unavailable(path))
}

pub fn encode_video(
    path: &Path,
    _frames: &[RgbImage],
    _fps: u32,
) -> Result<&'static str, VideoError> {
    Err(VideoError::NoFfmpeg {
        path: path.to_path_buf(),
    })
}
