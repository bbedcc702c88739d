//! Latent-imagery generation against the Python reference loop (tools/reference/
//! make_latent_fixtures.py: stock transformers fed with `inputs_embeds`): generated ids exactly,
//! latent hidden states and log-probs to 1e-4, per sequence in a batch; plus the engine's own
//! guarantees (batch == singles, token limit inside a segment, first-step imagery).

mod common;

use candle_core::{DType, Device, IndexOp};
use common::{latent_fixtures, max_abs_diff, Case};
use fourd_model::generation::{
    generate, GenerationConfig, LatentTokens, Sampling, SequenceOutput, TokenKind,
};
use fourd_model::ModelBundle;

const TOL: f32 = 1e-4;

fn pipeline() -> ModelBundle {
    ModelBundle::load(&latent_fixtures().join("model"), DType::F32, &Device::Cpu).unwrap()
}

fn latent(pipe: &ModelBundle, size: usize) -> LatentTokens {
    let s = &pipe.tokenizer.special;
    LatentTokens {
        pad: s.latent_pad.unwrap(),
        start: s.latent_start.unwrap(),
        end: s.latent_end.unwrap(),
        size,
    }
}

fn run(pipe: &ModelBundle, case: &Case, max_new_tokens: usize, size: usize) -> Vec<SequenceOutput> {
    let prompts = case.prompts(&pipe.tokenizer);
    let inputs = pipe.processor.prepare(&pipe.tokenizer, &prompts).unwrap();
    let ids: Vec<Vec<i64>> = inputs
        .input_ids
        .iter()
        .map(|r| r.iter().map(|&t| t as i64).collect())
        .collect();
    assert_eq!(ids, case.ids2("input_ids"), "{}: input ids", case.name);
    let cfg = GenerationConfig {
        max_new_tokens,
        sampling: Sampling::default(),
        stop_ids: vec![],
        latent: Some(latent(pipe, size)),
    };
    generate(
        &pipe.model,
        &inputs,
        &pipe.rope_params(),
        &cfg,
        |_, _, _| {},
    )
    .unwrap()
}

/// Compares one generated row with the reference: ids, log-probs, segments and their hidden states.
fn check_row(case: &Case, row: usize, out: &SequenceOutput, hidden_key: &str, starts_key: &str) {
    let name = &case.name;
    let ids: Vec<i64> = out.token_ids.iter().map(|&t| t as i64).collect();
    assert_eq!(
        ids,
        case.ids2("generated")[row],
        "{name} row {row}: generated ids"
    );
    let ref_lp: Vec<f32> = case.t("logprobs").i(row).unwrap().to_vec1().unwrap();
    let mut lp_err = 0f32;
    for (i, (ours, r)) in out.logprobs.iter().zip(&ref_lp).enumerate() {
        match ours {
            None => assert!(
                r.is_nan(),
                "{name} row {row} step {i}: reference has a log-prob, we have none"
            ),
            Some(v) => lp_err = lp_err.max((v - r).abs()),
        }
    }
    let starts: Vec<i64> = case.t(starts_key).to_vec1().unwrap();
    let ours_starts: Vec<i64> = out.latent_segments.iter().map(|s| s.start as i64).collect();
    assert_eq!(ours_starts, starts, "{name} row {row}: segment starts");
    let ref_hidden = case.t(hidden_key);
    let mut h_err = 0f32;
    for (k, seg) in out.latent_segments.iter().enumerate() {
        h_err = h_err.max(max_abs_diff(&seg.hidden, &ref_hidden.i(k).unwrap()));
    }
    eprintln!("{name} row {row}: {} segments, log-prob max abs error {lp_err:.3e}, latent hidden max abs error {h_err:.3e}", starts.len());
    assert!(
        lp_err < TOL && h_err < TOL,
        "{name} row {row}: log-prob {lp_err}, hidden {h_err}"
    );
}

fn check_single(name: &str) {
    let pipe = pipeline();
    let case = Case::load_from(&latent_fixtures(), name);
    let size = case.meta["latent_size"].as_u64().unwrap() as usize;
    let t = case.meta["max_new_tokens"].as_u64().unwrap() as usize;
    let out = run(&pipe, &case, t, size);
    check_row(&case, 0, &out[0], "latent_hidden", "segment_starts");
    // Layout of each segment: start, `size` pads, forced end.
    for seg in &out[0].latent_segments {
        assert_eq!(seg.len, size);
        assert_eq!(out[0].kinds[seg.start - 1], TokenKind::LatentStart);
        assert!(out[0].kinds[seg.start..seg.start + size]
            .iter()
            .all(|k| *k == TokenKind::LatentPad));
        assert_eq!(out[0].kinds[seg.start + size], TokenKind::LatentEnd);
    }
}

#[test]
fn image_prompt_two_or_more_segments_latent_size_4() {
    check_single("image_l4");
}

#[test]
fn latent_size_1_overrides_the_config() {
    check_single("text_l1");
}

#[test]
fn latent_size_8() {
    check_single("text_l8");
}

#[test]
fn imagery_at_the_very_first_step() {
    let case = Case::load_from(&latent_fixtures(), "first_step");
    assert_eq!(
        case.ids2("generated")[0][0],
        pipeline().tokenizer.special.latent_start.unwrap() as i64
    );
    check_single("first_step");
}

#[test]
fn batch_rows_are_independent_and_match_the_reference() {
    let pipe = pipeline();
    let case = Case::load_from(&latent_fixtures(), "batch_two_l4");
    let size = case.meta["latent_size"].as_u64().unwrap() as usize;
    let t = case.meta["max_new_tokens"].as_u64().unwrap() as usize;
    let out = run(&pipe, &case, t, size);
    check_row(
        &case,
        0,
        &out[0],
        "latent_hidden_row0",
        "segment_starts_row0",
    );
    check_row(
        &case,
        1,
        &out[1],
        "latent_hidden_row1",
        "segment_starts_row1",
    );
    // The rows enter imagery at different steps, so a coupled (reference-fork) loop would differ.
    assert_ne!(
        out[0].latent_segments[0].start,
        out[1].latent_segments[0].start
    );

    // And each row alone gives the same as in the batch.
    let prompts = case.prompts(&pipe.tokenizer);
    for (i, p) in prompts.iter().enumerate() {
        let inputs = pipe
            .processor
            .prepare(&pipe.tokenizer, std::slice::from_ref(p))
            .unwrap();
        let cfg = GenerationConfig {
            max_new_tokens: t,
            sampling: Sampling::default(),
            stop_ids: vec![],
            latent: Some(latent(&pipe, size)),
        };
        let alone = generate(
            &pipe.model,
            &inputs,
            &pipe.rope_params(),
            &cfg,
            |_, _, _| {},
        )
        .unwrap()
        .remove(0);
        assert_eq!(alone.token_ids, out[i].token_ids, "row {i}");
        for (a, b) in alone.latent_segments.iter().zip(&out[i].latent_segments) {
            assert!(max_abs_diff(&a.hidden, &b.hidden) < 1e-5);
        }
    }
}

#[test]
fn token_limit_inside_a_segment_cuts_it() {
    let pipe = pipeline();
    let case = Case::load_from(&latent_fixtures(), "image_l4");
    let full = run(&pipe, &case, 40, 4).remove(0);
    let s = full.latent_segments[1].start;
    // Stop after two pads of the second segment.
    let cut = run(&pipe, &case, s + 2, 4).remove(0);
    assert_eq!(cut.token_ids, full.token_ids[..s + 2]);
    assert_eq!(cut.latent_segments.len(), 2);
    assert_eq!(cut.latent_segments[1].len, 2);
    let h = cut.latent_segments[1].hidden.clone();
    assert!(max_abs_diff(&h, &full.latent_segments[1].hidden.narrow(0, 0, 2).unwrap()) < 1e-6);
}

#[test]
fn sampling_with_latents_is_seeded() {
    let pipe = pipeline();
    let case = Case::load_from(&latent_fixtures(), "image_l4");
    let inputs = pipe
        .processor
        .prepare(&pipe.tokenizer, &case.prompts(&pipe.tokenizer))
        .unwrap();
    let go = |seed| {
        let sampling = Sampling {
            greedy: false,
            temperature: 1.0,
            top_k: Some(20),
            top_p: Some(0.9),
            repetition_penalty: None,
            seed,
        };
        let cfg = GenerationConfig {
            max_new_tokens: 30,
            sampling,
            stop_ids: vec![],
            latent: Some(latent(&pipe, 4)),
        };
        generate(
            &pipe.model,
            &inputs,
            &pipe.rope_params(),
            &cfg,
            |_, _, _| {},
        )
        .unwrap()
        .remove(0)
    };
    let (a, b) = (go(11), go(11));
    assert_eq!(a.token_ids, b.token_ids);
    for (x, y) in a.latent_segments.iter().zip(&b.latent_segments) {
        assert_eq!(max_abs_diff(&x.hidden, &y.hidden), 0.0);
    }
    // Every segment keeps its shape under sampling too.
    for seg in &a.latent_segments {
        assert!(seg.len == 4 || seg.start + seg.len == a.token_ids.len());
    }
}

/// Continuous batching: sequences that join a running batch between steps (left-padded to the
/// running cache, or padding it), and one that leaves early, decode exactly what each decodes
/// alone, imagery included.
#[test]
fn sequences_joining_and_leaving_a_running_batch_decode_as_alone() {
    use fourd_model::generation::DecodeBatch;
    let pipe = pipeline();
    let case = Case::load_from(&latent_fixtures(), "batch_two_l4");
    let size = case.meta["latent_size"].as_u64().unwrap() as usize;
    let t = case.meta["max_new_tokens"].as_u64().unwrap() as usize;
    let cfg = GenerationConfig {
        max_new_tokens: t,
        sampling: Sampling::default(),
        stop_ids: vec![],
        latent: Some(latent(&pipe, size)),
    };
    let prompts = case.prompts(&pipe.tokenizer);
    let inputs: Vec<_> = prompts
        .iter()
        .map(|p| {
            pipe.processor
                .prepare(&pipe.tokenizer, std::slice::from_ref(p))
                .unwrap()
        })
        .collect();
    let params = pipe.rope_params();
    let alone: Vec<SequenceOutput> = inputs
        .iter()
        .map(|i| {
            generate(&pipe.model, i, &params, &cfg, |_, _, _| {})
                .unwrap()
                .remove(0)
        })
        .collect();
    // Sequence 10 (prompt 0) starts alone; 11 (prompt 1) joins after one step, 12 (prompt 0
    // again) after seven, when the running cache is longer than its prompt; 13 (prompt 1)
    // joins after two steps and is cancelled after four more.
    let mut batch = DecodeBatch::new(&pipe.model);
    let mut done: std::collections::BTreeMap<u64, SequenceOutput> = Default::default();
    let mut streamed: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
    let join = |batch: &mut DecodeBatch, id: u64, prompt: usize| {
        assert!(batch
            .admit(&inputs[prompt], &params, vec![(id, cfg.clone())])
            .unwrap()
            .is_empty());
    };
    join(&mut batch, 10, 0);
    let mut step = 0;
    while !batch.is_empty() {
        match step {
            1 => join(&mut batch, 11, 1),
            2 => join(&mut batch, 13, 1),
            6 => {
                let cut = batch.cancel(13).unwrap().expect("13 is running");
                assert_eq!(cut.token_ids, alone[1].token_ids[..cut.token_ids.len()]);
                assert!(batch.cancel(13).unwrap().is_none());
            }
            7 => join(&mut batch, 12, 0),
            _ => {}
        }
        for (id, out) in batch
            .step(|id, e| streamed.entry(id).or_default().push(e.token))
            .unwrap()
        {
            done.insert(id, out);
        }
        step += 1;
    }
    assert_eq!(done.keys().copied().collect::<Vec<_>>(), vec![10, 11, 12]);
    for (id, prompt) in [(10, 0), (11, 1), (12, 0)] {
        let (got, want) = (&done[&id], &alone[prompt]);
        assert_eq!(got.token_ids, want.token_ids, "sequence {id}");
        assert_eq!(streamed[&id], want.token_ids, "sequence {id} as streamed");
        assert_eq!(got.latent_segments.len(), want.latent_segments.len());
        for (a, b) in got.latent_segments.iter().zip(&want.latent_segments) {
            assert_eq!(a.start, b.start);
            assert!(max_abs_diff(&a.hidden, &b.hidden) < 1e-5, "sequence {id}");
        }
    }
}
