//! Labels computed from synthetic clips agree with their `truth.json`.

mod common;

use fourd_data::{run_pipeline, PipelineConfig};

fn measure(clips: usize, frames: usize, size: u32, seed: u64) -> fourd_data::RunSummary {
    let root = common::tmp(&format!("agree-in-{clips}-{size}"));
    let out = common::tmp(&format!("agree-out-{clips}-{size}"));
    common::synth(&root, clips, frames, size, seed);
    let mut cfg = PipelineConfig::new(&root, &out);
    cfg.seed = seed;
    let s = run_pipeline(&cfg).unwrap();
    let a = s.agreement.as_ref().unwrap();
    println!("{}", a.render());
    for e in &a.examples {
        println!("  {e}");
    }
    println!("{}", serde_json::to_string_pretty(&s.export).unwrap());
    s
}

/// The thresholds on a modest number of small clips.
#[test]
fn synthetic_labels_meet_the_thresholds() {
    let s = measure(24, 16, 96, 3);
    let a = s.agreement.unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    let used = a.camera_steps["used"].percent().unwrap();
    let exact = a.camera_steps["exact"].percent().unwrap();
    assert!(used >= 98.0 && exact >= 98.0, "camera {used} / {exact}");
    assert!(
        a.objects_measured * 10 >= a.objects_in_truth * 6,
        "measured {} of {}",
        a.objects_measured,
        a.objects_in_truth
    );
    assert!(
        a.direction.percent().unwrap() >= 95.0,
        "direction {:?}",
        a.direction
    );
    assert!(a.speed.percent().unwrap() >= 90.0, "speed {:?}", a.speed);
    // Objects that turn back toward/away give the compound distance labels, so distance
    // questions survive the 1/4 answer balance, and the five-label distance agrees with truth.
    assert!(
        a.distance_full.percent().unwrap() >= 85.0,
        "distance {:?}",
        a.distance_full
    );
    let distance_answers = s.export.answers.get("distance");
    for compound in [
        fourd_world::DISTANCE_CLOSER_THEN_FARTHER,
        fourd_world::DISTANCE_FARTHER_THEN_CLOSER,
    ] {
        assert!(
            distance_answers.is_some_and(|m| m.get(compound).copied().unwrap_or(0) > 0),
            "{compound}: {distance_answers:?}"
        );
    }
}

/// The figures for the report: `cargo test -p fourd-data --release --test agreement -- --ignored --nocapture`.
#[test]
#[ignore]
fn agreement_on_100_clips() {
    let t0 = std::time::Instant::now();
    let s = measure(100, 16, 128, 1);
    println!("{:.1} s for 100 clips", t0.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string_pretty(&s.stages).unwrap());
}
