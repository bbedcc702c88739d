//! SpatialVID as released, read from a fixture written by SpatialVID's own libraries
//! (`tools/reference/make_spatialvid_release_fixture.py`: numpy, scipy, OpenEXR, zipfile,
//! pandas, ffmpeg). Every expected value below comes from the Python side's
//! `tests/fixtures/spatialvid_release.expected.json`, never typed here.

use std::path::{Path, PathBuf};

use fourd_data::ingest::{discover, ingest_clip, read_metadata, IngestOptions};
use fourd_world::depth_archive::{depth_from_inverse, read, TrackingGrid};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn root() -> PathBuf {
    fixtures().join("spatialvid_release")
}

fn expected() -> Value {
    let text =
        std::fs::read_to_string(fixtures().join("spatialvid_release.expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn clip_ids(e: &Value) -> Vec<String> {
    e["clip_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// File names: the clip list comes from `videos/`, `annotations/` and the depth archives'
/// `depths/<group>/<clip>.zip`; the metadata table from `data/train/SpatialVID_HQ_metadata.csv`,
/// keyed by `id`, with `fps` and `moveDist`.
#[test]
fn finds_the_released_files() {
    let e = expected();
    let clips = discover(&root()).unwrap();
    let mut ids: Vec<String> = clips.iter().map(|c| c.clip.clone()).collect();
    ids.sort();
    let mut want = clip_ids(&e);
    want.sort();
    assert_eq!(ids, want);
    for c in &clips {
        let paths = &e["clips"][&c.clip]["paths"];
        assert_eq!(c.video, root().join(paths["video"].as_str().unwrap()));
        assert_eq!(
            c.annotations,
            root().join(paths["annotation"].as_str().unwrap())
        );
        assert_eq!(
            c.depth_archive,
            root().join(paths["depth"].as_str().unwrap())
        );
        assert!(c.depth_archive.is_file());
    }
    assert_eq!(
        fourd_data::ingest::metadata_path(&root()).unwrap(),
        root().join(e["csv_path"].as_str().unwrap())
    );
    let meta = read_metadata(&root()).unwrap();
    assert_eq!(meta.len(), clips.len());
    for id in clip_ids(&e) {
        let row = &e["clips"][&id]["csv_row"];
        let m = meta[&id];
        assert_eq!(m.fps, Some(row["fps"].as_str().unwrap().parse().unwrap()));
        assert_eq!(
            m.move_dist,
            Some(row["moveDist"].as_str().unwrap().parse().unwrap())
        );
    }
}

/// Timing: annotated frame `k` is video frame `indexes.txt[k]` (SpatialVID extracts every
/// `int(0.2·fps)`-th frame), taken at `frame / fps` seconds.
#[test]
fn times_the_annotated_frames() {
    let e = expected();
    let out = std::env::temp_dir().join(format!("fourd-release-ingest-{}", std::process::id()));
    let meta = read_metadata(&root()).unwrap();
    for c in discover(&root()).unwrap() {
        let x = &e["clips"][&c.clip];
        let opts = IngestOptions { max_frames: 50 };
        let rec = ingest_clip(&c, meta[&c.clip], &opts, &out).unwrap();
        let indexes: Vec<usize> = x["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| usize_of(&p[1]))
            .collect();
        assert_eq!(rec.source_indices, indexes);
        assert_eq!(rec.fps, Some(x["fps"].as_f64().unwrap()));
        let seconds = f64s(&x["seconds"]);
        assert_eq!(rec.seconds().len(), seconds.len());
        for (got, want) in rec.seconds().iter().zip(&seconds) {
            assert!((got - want).abs() < 1e-12, "{}: {got} vs {want}", c.clip);
        }
        assert_eq!(rec.frames.len(), usize_of(&x["annotated_frames"]));
        assert_eq!(
            (rec.width as u64, rec.height as u64),
            (
                x["video_size"]["w"].as_u64().unwrap(),
                x["video_size"]["h"].as_u64().unwrap()
            )
        );
        assert_eq!(
            rec.depth_archive.as_deref(),
            Some(c.depth_archive.as_path())
        );
        // Without the table's fps the video stream's is used: the same rate.
        let rec2 = ingest_clip(&c, Default::default(), &opts, &out).unwrap();
        assert_eq!(rec2.fps, rec.fps);
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Depth: the tracker's grid size, inverse depth as written (float16), `1/Z` with `Z <= 0`
/// invalid, and the grid pixel to video pixel mapping.
#[test]
fn reads_inverse_depth_on_the_trackers_grid() {
    let e = expected();
    for id in clip_ids(&e) {
        let x = &e["clips"][&id];
        let (w0, h0) = (
            usize_of(&x["video_size"]["w"]),
            usize_of(&x["video_size"]["h"]),
        );
        let grid = TrackingGrid::for_video(w0, h0);
        assert_eq!(
            grid.scaled,
            (
                usize_of(&x["grid_precrop"]["w"]),
                usize_of(&x["grid_precrop"]["h"])
            )
        );
        assert_eq!(
            grid.size,
            (usize_of(&x["grid"]["w"]), usize_of(&x["grid"]["h"]))
        );
        let frames = read(&root().join(x["paths"]["depth"].as_str().unwrap())).unwrap();
        assert_eq!(frames.len(), x["depth_members"].as_array().unwrap().len());
        let invalid = f64s(&x["invalid_pixels_per_frame"]);
        for (f, want) in frames.iter().zip(&invalid) {
            assert_eq!((f.width, f.height), grid.size);
            let n =
                f.z.iter()
                    .filter(|z| depth_from_inverse(**z).is_nan())
                    .count();
            assert_eq!(n as f64, *want, "{id}: invalid pixels");
        }
        let scale = x["scale"].as_f64().unwrap();
        for s in x["depth_samples"].as_array().unwrap() {
            let (k, u, v) = (usize_of(&s["k"]), usize_of(&s["u"]), usize_of(&s["v"]));
            let z = frames[k].z[v * grid.size.0 + u];
            assert_eq!(z as f64, s["z"].as_f64().unwrap(), "{id} {s}");
            let depth = depth_from_inverse(z);
            match s["depth"].as_f64() {
                Some(d) => assert_eq!(depth as f64, d, "{id} {s}"),
                None => assert!(depth.is_nan(), "{id} {s}"),
            }
            let video = (usize_of(&s["video"]["x"]), usize_of(&s["video"]["y"]));
            assert_eq!(grid.video_pixel(u, v), video, "{id} {s}");
            assert!(grid.grid_pixel(video.0, video.1).is_some());
            if let Some(metres) = s["synth_depth_scaled"]
                .as_f64()
                .filter(|_| depth.is_finite())
            {
                // float16 keeps 11 significant bits.
                let rel = (depth as f64 - metres).abs() / metres;
                assert!(rel < 2e-3, "{id} {s}: {depth} vs {metres} (scale {scale})");
            }
        }
    }
}

/// Masks (`f_{i}_data/indices/indptr` + `shape`, `np.savez_compressed`, bool), poses and
/// intrinsics as SpatialVID writes them.
#[test]
fn reads_masks_poses_and_intrinsics() {
    let e = expected();
    for id in clip_ids(&e) {
        let x = &e["clips"][&id];
        let ann = root().join(x["paths"]["annotation"].as_str().unwrap());
        let masks = fourd_data::arrays::read_dyn_masks(&ann.join("dyn_masks.npz")).unwrap();
        let (n, h, w) = (masks.shape[0], masks.shape[1], masks.shape[2]);
        let shape: Vec<usize> = x["mask_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(usize_of)
            .collect();
        assert_eq!(vec![h, w], shape);
        let counts: Vec<usize> = masks
            .data
            .chunks_exact(h * w)
            .map(|m| m.iter().filter(|&&v| v != 0).count())
            .collect();
        let want: Vec<usize> = x["mask_pixel_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(usize_of)
            .collect();
        assert_eq!((n, counts), (want.len(), want));
        let poses =
            fourd_world::npy::read_poses_npy(&std::fs::read(ann.join("poses.npy")).unwrap())
                .unwrap();
        let row0 = f64s(&x["poses_row0"]);
        for (a, b) in poses[0].iter().zip(&row0) {
            assert_eq!(*a as f32, *b as f32);
        }
        let (shape, _, _) =
            fourd_world::npy::parse_npy(&std::fs::read(ann.join("intrinsics.npy")).unwrap())
                .unwrap();
        let want: Vec<usize> = x["intrinsics_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(usize_of)
            .collect();
        assert_eq!(shape, want);
    }
}
