//! Option-only rules stay at chance on 2,000 questions whose answer labels are far from
//! uniform (a label prior much like real SpatialVID data: Stay and Dolly In common, diagonal
//! directions and compound labels rare).

use fourd_data::export::build_questions;
use fourd_data::questions::{Candidate, QuestionKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn pick<'a>(rng: &mut ChaCha8Rng, weighted: &[(&'a str, f64)]) -> &'a str {
    let total: f64 = weighted.iter().map(|w| w.1).sum();
    let mut x = rng.random_range(0.0..total);
    for (l, w) in weighted {
        if x < *w {
            return l;
        }
        x -= w;
    }
    weighted[weighted.len() - 1].0
}

#[test]
fn option_only_baselines_are_within_five_points_of_chance() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let camera = [
        ("Stay", 30.0),
        ("Dolly In", 20.0),
        ("Dolly Out", 4.0),
        ("Pan Left", 8.0),
        ("Pan Right", 8.0),
        ("Tilt Up", 3.0),
        ("Tilt Down", 3.0),
        ("Truck Left", 3.0),
        ("Truck Right", 3.0),
        ("Dolly In and Pan Right", 6.0),
        ("Dolly In and Pan Left", 6.0),
        ("Dolly In, Pan Left and Tilt Up", 2.0),
        ("Pedestal Up", 1.0),
        ("Roll Clockwise", 1.0),
        ("Dolly Out and Tilt Down", 2.0),
    ];
    let direction = [
        ("Moving Left", 20.0),
        ("Moving Right", 20.0),
        ("Moving Toward Camera", 12.0),
        ("Moving Away from Camera", 10.0),
        ("Stationary", 15.0),
        ("Moving Up", 4.0),
        ("Moving Down", 5.0),
        ("Moving Left-Up", 3.0),
        ("Moving Right-Up", 3.0),
        ("Moving Left-Down", 4.0),
        ("Moving Right-Down", 4.0),
    ];
    let speed = [
        ("Maintaining a Constant Speed", 35.0),
        ("Speeding Up", 20.0),
        ("Slowing Down", 20.0),
        ("Moving at Varying Speeds", 15.0),
        ("First Speeding Up, Then Slowing Down", 6.0),
        ("First Slowing Down, Then Speeding Up", 4.0),
    ];
    let distance = [
        ("Maintaining Roughly the Same Distance", 60.0),
        ("Getting Closer to Camera", 18.0),
        ("Getting Farther from Camera", 16.0),
        ("First Getting Closer, Then Farther from Camera", 4.0),
        ("First Getting Farther, Then Closer to Camera", 2.0),
    ];
    let mut cands = Vec::new();
    // More candidates than questions: balancing drops the excess of common labels.
    for i in 0..6000 {
        let (kind, table): (QuestionKind, &[(&str, f64)]) = match i % 5 {
            0 => (QuestionKind::Camera, &camera),
            1 => (QuestionKind::Direction, &direction),
            2 => (QuestionKind::BoxDirection, &direction),
            3 => (QuestionKind::Speed, &speed),
            _ => (QuestionKind::Distance, &distance),
        };
        cands.push(Candidate {
            id: format!("g/c{i:05}#{}", kind.as_str()),
            clip_key: format!("g/c{i:05}"),
            kind,
            question: "q".into(),
            answer: pick(&mut rng, table).to_string(),
            think: "t".into(),
            image_input: vec![],
            image_output: vec![],
            rewrite: None,
        });
    }
    let (questions, stats) = build_questions(cands, 3, true);
    assert!(questions.len() >= 2000, "{} questions", questions.len());
    let b = stats.baselines.unwrap();
    println!("{} questions: {:?}", b.questions, b.accuracy);
    for (rule, acc) in &b.accuracy {
        assert!((acc - 25.0).abs() <= 5.0, "{rule}: {acc:.1}%");
    }
    // Stay is a distractor, compound labels are correct answers, letters are balanced.
    assert!(questions
        .iter()
        .any(|q| q.candidate.answer != "Stay" && q.options.iter().any(|o| o == "Stay")));
    assert!(questions
        .iter()
        .any(|q| q.candidate.answer.contains(" and ")));
    let per_letter = stats.letters.values().copied().collect::<Vec<_>>();
    assert!(
        per_letter.iter().max().unwrap() - per_letter.iter().min().unwrap() <= 1,
        "{per_letter:?}"
    );
}
