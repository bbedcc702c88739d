//! The world of `fourd demo`: clips with one camera motion each, strong enough to see at 112 px,
//! from seven classes (a tiny model trained for minutes from scratch cannot be expected to
//! separate all 12 labels and their combinations; `fourd synth` without specs renders those).
//! Each clip is a scene spec (`crate::spec`): a random room, camera start, motion class and two
//! static objects; deterministic for a seed.

use serde_json::{json, Value};

/// The demo's camera motions and their magnitudes (degrees per frame for pans and tilts, metres
/// per frame for dollies), taken in turn.
pub const DEMO_MOTIONS: &[(&str, f64)] = &[
    ("Pan Left", 3.5),
    ("Pan Right", 3.5),
    ("Tilt Up", 2.5),
    ("Tilt Down", 2.5),
    ("Dolly In", 0.35),
    ("Dolly Out", 0.35),
    ("Stay", 0.0),
];

/// A linear congruential stream of uniforms in [0, 1): the demo world's only randomness.
struct Uniform(u64);

impl Uniform {
    fn new(seed: u64) -> Self {
        let mut u = Uniform(seed);
        u.step();
        u
    }
    fn step(&mut self) {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    fn next(&mut self) -> f64 {
        self.step();
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Scene specs (JSON) of `clips` square clips of `frames` frames and `size` pixels, ids
/// `demo_<i>`.
pub fn demo_specs(clips: usize, frames: usize, size: u32, seed: u64) -> Vec<Value> {
    let mut rng = Uniform::new(seed);
    (0..clips)
        .map(|i| demo_spec(i, frames, size, &mut rng))
        .collect()
}

fn demo_spec(i: usize, frames: usize, size: u32, rng: &mut Uniform) -> Value {
    let shapes = [
        json!({"type": "sphere", "radius": 0.45}),
        json!({"type": "box", "half_extents": [0.4, 0.4, 0.4]}),
        json!({"type": "cylinder", "radius": 0.3, "half_height": 0.7}),
    ];
    let textures = ["checker", "stripes", "noise"];
    let (label, magnitude) = DEMO_MOTIONS[i % DEMO_MOTIONS.len()];
    let motion = if label == "Stay" {
        json!("Stay")
    } else {
        json!([{"label": label, "magnitude": magnitude * (0.8 + 0.4 * rng.next())}])
    };
    let objects: Vec<Value> = (0..2)
        .map(|k| {
            let c1 = [rng.next(), rng.next(), rng.next()];
            json!({
                "name": format!("object{k}"),
                "shape": shapes[(rng.next() * 3.0) as usize % 3],
                "texture": {"type": textures[(rng.next() * 3.0) as usize % 3], "colors": [c1, [1.0, 1.0, 1.0]], "scale": 0.2},
                "position": [-2.0 + 4.0 * rng.next(), 0.9, 4.5 + 3.0 * rng.next()],
            })
        })
        .collect();
    json!({
        "id": format!("demo_{i:05}"),
        "frames": frames,
        "size": format!("{size}x{size}"),
        "fps": 1,
        "hfov_deg": 60,
        "room": {"half_width": 6, "depth": 12, "seed": (rng.next() * 1e6) as u64},
        "camera": {
            "start": {"eye": [-0.5 + rng.next(), 1.4 + 0.3 * rng.next(), 0.5 * rng.next()], "look_at": [-1.0 + 2.0 * rng.next(), 1.1, 6.0]},
            "segments": [{"from": 0, "to": frames - 1, "motion": motion}]
        },
        "objects": objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_cycle_through_the_motions_and_repeat_for_a_seed() {
        let a = demo_specs(8, 4, 32, 3);
        assert_eq!(a, demo_specs(8, 4, 32, 3));
        assert_ne!(a, demo_specs(8, 4, 32, 4));
        assert_eq!(a[6]["camera"]["segments"][0]["motion"], "Stay");
        assert_eq!(
            a[7]["camera"]["segments"][0]["motion"][0]["label"],
            "Pan Left"
        );
        for s in &a {
            crate::parse_scene_spec(&s.to_string()).unwrap();
        }
    }
}
