//! SegmentClient against loopback servers speaking the segmentation protocol of docs/api.md.

use std::time::Duration;

use base64::Engine as _;
use fourd_api::testing::{
    brightness_mask, segment_reply_body, MockResponse, MockSegmentServer, Step,
};
use fourd_api::{ApiError, SegmentClient, SegmentConfig};
use image::{GrayImage, Luma, Rgb, RgbImage};
use serde_json::json;

fn config(base_url: String) -> SegmentConfig {
    SegmentConfig {
        base_url,
        api_key: None,
        timeout: Duration::from_secs(5),
        max_retries: 2,
        backoff: Duration::from_millis(10),
    }
}

/// A bright square moving right over a dark background.
fn frames(n: u32, w: u32, h: u32) -> Vec<RgbImage> {
    (0..n)
        .map(|t| {
            RgbImage::from_fn(w, h, |x, y| {
                if x >= 2 + t && x < 6 + t && (2..5).contains(&y) {
                    Rgb([240, 230, 220])
                } else {
                    Rgb([10, 20, (x * 3) as u8])
                }
            })
        })
        .collect()
}

#[test]
fn masks_round_trip() {
    let server = MockSegmentServer::brightness_threshold(128).unwrap();
    let mut cfg = config(server.base_url());
    cfg.api_key = Some("seg-key".into());
    let client = SegmentClient::new(cfg).unwrap();
    assert_eq!(client.endpoint(), format!("{}/segment", server.base_url()));

    let frames = frames(5, 16, 9);
    let masks = client.segment(&frames, "the bright square").unwrap();
    assert_eq!(masks.len(), 5);
    for (t, (mask, frame)) in masks.iter().zip(&frames).enumerate() {
        assert_eq!(mask.dimensions(), frame.dimensions());
        assert_eq!(mask, &brightness_mask(frame, 128), "frame {t}");
        assert_eq!(
            mask.pixels().filter(|p| p.0[0] == 255).count(),
            12,
            "frame {t}"
        );
        assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
        assert_eq!(mask.get_pixel(2 + t as u32, 2).0[0], 255);
    }
    assert_eq!(server.request_count(), 1);

    // The request as documented: prompt, frames with index and PNG.
    let req = server.last_request().unwrap();
    assert_eq!(req.path, "/segment");
    assert_eq!(req.header("authorization"), Some("Bearer seg-key"));
    let body = req.json().unwrap();
    assert_eq!(body["prompt"], "the bright square");
    let sent = body["frames"].as_array().unwrap();
    assert_eq!(sent.len(), 5);
    for (i, f) in sent.iter().enumerate() {
        assert_eq!(f["index"], i);
        let png = base64::engine::general_purpose::STANDARD
            .decode(f["png_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            image::load_from_memory(&png).unwrap().into_rgb8(),
            frames[i]
        );
    }
}

#[test]
fn masks_come_back_in_frame_order_and_binarised() {
    // The server lists masks in reverse order and uses 0/1 values.
    let server = MockSegmentServer::start(|seen, _| {
        let masks: Vec<GrayImage> = seen
            .frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                GrayImage::from_fn(f.width(), f.height(), |x, _| {
                    Luma([u8::from(x == i as u32)])
                })
            })
            .collect();
        let mut body = segment_reply_body(&masks);
        body["masks"].as_array_mut().unwrap().reverse();
        Step::Raw(MockResponse::json(200, &body))
    })
    .unwrap();
    let client = SegmentClient::new(config(server.base_url())).unwrap();
    let masks = client.segment(&frames(3, 6, 4), "x").unwrap();
    for (i, m) in masks.iter().enumerate() {
        for (x, _, p) in m.enumerate_pixels() {
            assert_eq!(
                p.0[0],
                if x == i as u32 { 255 } else { 0 },
                "mask {i} at x={x}"
            );
        }
    }
}

#[test]
fn wrong_mask_count_is_an_error_without_retry() {
    let server = MockSegmentServer::with_masks(|_, frames| {
        frames
            .iter()
            .skip(1)
            .map(|f| GrayImage::new(f.width(), f.height()))
            .collect()
    })
    .unwrap();
    let client = SegmentClient::new(config(server.base_url())).unwrap();
    let err = client.segment(&frames(4, 8, 8), "x").unwrap_err();
    match &err {
        ApiError::MalformedReply {
            field,
            problem,
            url,
        } => {
            assert_eq!(field, "masks");
            assert!(problem.contains("3 entries for 4 frames"), "{problem}");
            assert!(url.ends_with("/segment"));
        }
        other => panic!("expected MalformedReply, got {other:?}"),
    }
    assert_eq!(server.request_count(), 1);
}

#[test]
fn wrong_mask_size_is_an_error() {
    let server = MockSegmentServer::with_masks(|_, frames| {
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i == 2 {
                    GrayImage::new(f.width() / 2, f.height())
                } else {
                    GrayImage::new(f.width(), f.height())
                }
            })
            .collect()
    })
    .unwrap();
    let client = SegmentClient::new(config(server.base_url())).unwrap();
    let err = client
        .segment(&frames(3, 10, 6), "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`masks[2]` is 5x6, but frame 2 is 10x6"),
        "{err}"
    );
    assert_eq!(server.request_count(), 1);
}

#[test]
fn wrong_or_repeated_indices_are_errors() {
    let server = MockSegmentServer::start(|seen, n| {
        let masks: Vec<GrayImage> = seen
            .frames
            .iter()
            .map(|f| GrayImage::new(f.width(), f.height()))
            .collect();
        let mut body = segment_reply_body(&masks);
        body["masks"][1]["index"] = if n == 0 { json!(7) } else { json!(0) };
        Step::Raw(MockResponse::json(200, &body))
    })
    .unwrap();
    let client = SegmentClient::new(config(server.base_url())).unwrap();
    let err = client
        .segment(&frames(2, 4, 4), "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`masks[1].index` is 7, but frames are numbered 0..2"),
        "{err}"
    );
    let err = client
        .segment(&frames(2, 4, 4), "x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`masks[1].index` repeats index 0"), "{err}");
}

#[test]
fn missing_masks_and_malformed_json_are_errors_without_retry() {
    let server =
        MockSegmentServer::scripted(vec![Step::MissingField, Step::MalformedJson], |_, _| {
            Vec::new()
        })
        .unwrap();
    let client = SegmentClient::new(config(server.base_url())).unwrap();
    let err = client
        .segment(&frames(1, 4, 4), "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`masks` is missing") && err.contains("mock reply without masks"),
        "{err}"
    );
    let err = client.segment(&frames(1, 4, 4), "x").unwrap_err();
    assert!(matches!(err, ApiError::MalformedJson { .. }), "{err:?}");
    assert_eq!(server.request_count(), 2);
}

#[test]
fn overload_and_timeout_are_retried() {
    let server = MockSegmentServer::scripted(
        vec![Step::Status(503), Step::Hang(Duration::from_secs(2))],
        |_, frames| frames.iter().map(|f| brightness_mask(f, 128)).collect(),
    )
    .unwrap();
    let mut cfg = config(server.base_url());
    cfg.timeout = Duration::from_millis(400);
    let client = SegmentClient::new(cfg).unwrap();
    let frames = frames(2, 12, 8);
    let masks = client.segment(&frames, "x").unwrap();
    assert_eq!(masks[1], brightness_mask(&frames[1], 128));
    assert_eq!(server.request_count(), 3, "503, timeout, success");
}

#[test]
fn persistent_overload_exhausts_retries() {
    let server = MockSegmentServer::start(|_, _| Step::RateLimited {
        retry_after_secs: Some(0),
    })
    .unwrap();
    let client = SegmentClient::new(config(server.base_url())).unwrap();
    let err = client.segment(&frames(1, 4, 4), "x").unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Status {
                status: 429,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 3);
}

#[test]
fn no_frames_no_request() {
    let server = MockSegmentServer::brightness_threshold(0).unwrap();
    let client = SegmentClient::new(config(server.base_url())).unwrap();
    assert!(client.segment(&[], "x").unwrap().is_empty());
    assert_eq!(server.request_count(), 0);
}
