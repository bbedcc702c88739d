//! SpatialVID as downloaded: `fourd data run` on a fixture written by SpatialVID's own libraries
//! (tests/fixtures/spatialvid_release, see tools/reference/make_spatialvid_release_fixture.py),
//! through `data check` to a DIFT step, as a user types it; the degradation without depth; and
//! `fourd synth --layout release`, whose clips give the same questions as our own layout.

mod common;
use common::{copy_tree, fixture_model, fourd_in, jsonl as records, ok, tmp};
use std::collections::BTreeMap;
use std::path::Path;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/spatialvid_release")
}

fn expected() -> serde_json::Value {
    let p = fixture().with_extension("expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn released_spatialvid_runs_from_ingest_to_a_dift_step() {
    let cwd = tmp("svid-release");
    // As SpatialVID's archives unpack: `SpatialVID/<kind>/group_XXXX/...`, here under a
    // download folder, with a macOS `._` companion that is not a clip.
    copy_tree(&fixture(), &cwd.join("download/SpatialVID"));
    let group = cwd.join("download/SpatialVID/videos/group_0000");
    std::fs::write(group.join("._junk.mp4"), b"resource fork").unwrap();
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    let out = run(
        "data run",
        &["data", "run", "--input", "download", "--out", "data"],
    );
    assert!(!out.contains("without usable depth"), "{out}");
    assert!(out.contains("3 clips: 3 processed"), "{out}");
    let dift = records(&cwd.join("data/dift.jsonl"));
    let e = expected();
    let cameras: Vec<&serde_json::Value> = dift
        .iter()
        .filter(|r| r["id"].as_str().unwrap().contains("#camera-"))
        .collect();
    // One camera question per instructions.json segment, each with landmark imagery, which
    // needs depth: here it comes from the EXR archives.
    let segments: usize = e["clip_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            e["clips"][id.as_str().unwrap()]["instructions"]
                .as_object()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(cameras.len(), segments);
    for r in &cameras {
        let images = r["image_output"].as_array().unwrap();
        assert!(!images.is_empty(), "{r}");
        for i in images {
            // Paths are relative to the JSONL file's folder.
            assert!(cwd.join("data").join(i.as_str().unwrap()).is_file(), "{i}");
        }
        // Times are the annotated frames' video times: every 2nd frame of a 10 fps video.
        let id = r["id"].as_str().unwrap();
        let clip = id.split('#').next().unwrap().split('/').nth(1).unwrap();
        let (a, b) = id
            .rsplit_once("camera-")
            .unwrap()
            .1
            .split_once('-')
            .unwrap();
        let seconds = e["clips"][clip]["seconds"].as_array().unwrap();
        let t = |k: &str| {
            let s = seconds[k.parse::<usize>().unwrap()].as_f64().unwrap();
            format!(
                "{}s",
                format!("{s:.2}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
            )
        };
        let q = r["text_input"].as_str().unwrap();
        assert!(q.contains(&t(a)) && q.contains(&t(b)), "{q} ({a}->{b})");
    }
    let check = run("data check", &["data", "check", "data/dift.jsonl"]);
    assert!(check.contains(" 0 error(s)"), "{check}");
    let model = fixture_model();
    let train = run(
        "train dift",
        &[
            "train",
            "dift",
            "--model",
            model.to_str().unwrap(),
            "--data",
            "data/dift.jsonl",
            "--out",
            "run",
            "--max-steps",
            "1",
            "--no-progress",
        ],
    );
    assert!(
        train.contains(&format!(
            "trained on 1 example(s) from {} record(s)",
            dift.len()
        )),
        "{train}"
    );
}

#[test]
fn without_depth_archives_camera_questions_lose_their_imagery() {
    let cwd = tmp("svid-nodepth");
    copy_tree(&fixture(), &cwd.join("SpatialVID"));
    std::fs::remove_dir_all(cwd.join("SpatialVID/depths")).unwrap();
    let o = fourd_in(
        &cwd,
        &["data", "run", "--input", "SpatialVID", "--out", "data"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("3 clip(s) without usable depth"), "{out}");
    // The camera questions remain, for 4DRL (which needs no imagery).
    let rl = records(&cwd.join("data/4drl.jsonl"));
    let cameras = rl
        .iter()
        .filter(|r| r["id"].as_str().unwrap_or_default().contains("#camera-"))
        .count();
    assert!(cameras > 0, "{out}");
    let dift = cwd.join("data/dift.jsonl");
    let with_imagery = if dift.is_file() {
        records(&dift)
            .iter()
            .filter(|r| r["id"].as_str().unwrap().contains("#camera-"))
            .count()
    } else {
        0
    };
    assert_eq!(with_imagery, 0);
}

/// DIFT records by id: answer and number of imagery frames.
fn by_id(path: &Path) -> BTreeMap<String, (String, usize)> {
    records(path)
        .into_iter()
        .map(|r| {
            let answer = r["text_output"]
                .as_str()
                .unwrap()
                .rsplit("<answer>")
                .next()
                .unwrap()
                .trim()
                .to_string();
            (
                r["id"].as_str().unwrap().to_string(),
                (answer, r["image_output"].as_array().unwrap().len()),
            )
        })
        .collect()
}

#[test]
fn synth_release_layout_gives_the_same_questions() {
    let cwd = tmp("svid-layouts");
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    let common = [
        "--clips", "4", "--frames", "8", "--size", "96x64", "--fps", "10", "--seed", "5",
    ];
    let synth = |out: &str, layout: &str| {
        let mut a = vec!["synth", "--out", out, "--layout", layout];
        a.extend(common);
        run("synth", &a);
    };
    synth("ours", "synth");
    synth("release", "release");
    // The released files, and none of ours.
    let ann = cwd.join("release/annotations/group_0000/clip_000000");
    assert!(cwd
        .join("release/depths/group_0000/clip_000000.zip")
        .is_file());
    assert!(cwd
        .join("release/data/train/SpatialVID_HQ_metadata.csv")
        .is_file());
    assert!(!ann.join("depth.npy").exists() && !ann.join("instance_ids.npy").exists());
    let idx = std::fs::read_to_string(ann.join("indexes.txt")).unwrap();
    assert!(idx.starts_with("# total 8 indexes\n0 0\n1 2\n"), "{idx}");
    // Another layout into the same folder is another data set.
    assert!(!fourd_in(
        &cwd,
        &[
            "synth", "--out", "release", "--layout", "synth", "--clips", "4", "--frames", "8",
            "--size", "96x64", "--fps", "10", "--seed", "5"
        ]
    )
    .status
    .success());
    for (input, out) in [("ours", "d-ours"), ("release", "d-release")] {
        run(
            "data run",
            &[
                "data",
                "run",
                "--input",
                input,
                "--out",
                out,
                "--segmenter",
                "dyn-masks",
            ],
        );
    }
    let (a, b) = (
        by_id(&cwd.join("d-ours/dift.jsonl")),
        by_id(&cwd.join("d-release/dift.jsonl")),
    );
    assert!(!a.is_empty());
    assert_eq!(a, b);
}
