//! The backward passes of the fused-kernel wrappers against central finite differences (f64).

use candle_core::{DType, Device, Tensor, Var};
use fourd_model::grad_ops;

/// The largest absolute difference between two float32 tensors.
fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // Deterministic pseudo-random values without an RNG dependency.
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f64> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Max abs difference between the autograd gradient of `sum(f(vars) * probe)` and central
/// differences, for the variable `which`.
fn check(f: &dyn Fn(&[Tensor]) -> Tensor, inputs: &[Tensor], which: usize, probe_seed: u64) -> f64 {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&ts);
    let probe = randn(out.dims(), probe_seed);
    let loss = (out * &probe).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let analytic: Vec<f64> = grads
        .get(vars[which].as_tensor())
        .expect("gradient present")
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = inputs[which].flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-6;
    let mut worst = 0f64;
    for i in 0..base.len() {
        let eval = |delta: f64| -> f64 {
            let mut v = base.clone();
            v[i] += delta;
            let mut xs: Vec<Tensor> = inputs.to_vec();
            xs[which] = Tensor::from_vec(v, inputs[which].dims(), &Device::Cpu).unwrap();
            (f(&xs) * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps);
        worst = worst.max((numeric - analytic[i]).abs());
    }
    worst
}

#[test]
fn rope_backward_matches_finite_differences() {
    let x = randn(&[2, 3, 5, 8], 1);
    let cos = randn(&[2, 5, 4], 2);
    let sin = randn(&[2, 5, 4], 3);
    let f = |ts: &[Tensor]| grad_ops::rope(&ts[0], &cos, &sin).unwrap();
    assert!(check(&f, &[x], 0, 9) < 1e-7);
}

#[test]
fn rms_norm_backward_matches_finite_differences() {
    let x = randn(&[2, 3, 6], 4);
    let w = randn(&[6], 5);
    let f = |ts: &[Tensor]| grad_ops::rms_norm(&ts[0], &ts[1], 1e-6).unwrap();
    let dx = check(&f, &[x.clone(), w.clone()], 0, 10);
    let dw = check(&f, &[x, w], 1, 10);
    assert!(dx < 1e-7, "dx error {dx}");
    assert!(dw < 1e-7, "dw error {dw}");
}

#[test]
fn softmax_backward_matches_finite_differences() {
    let x = randn(&[2, 4, 7], 6);
    let f = |ts: &[Tensor]| grad_ops::softmax_last_dim(&ts[0]).unwrap();
    assert!(check(&f, &[x], 0, 11) < 1e-7);
}

#[test]
fn forward_values_equal_the_fused_kernels_and_inference_adds_no_graph() {
    let x = randn(&[1, 2, 3, 4], 7).to_dtype(DType::F32).unwrap();
    let cos = randn(&[3, 2], 8).to_dtype(DType::F32).unwrap();
    let sin = randn(&[3, 2], 9).to_dtype(DType::F32).unwrap();
    let plain = candle_nn::rotary_emb::rope(&x, &cos, &sin).unwrap();
    let ours = grad_ops::rope(&x, &cos, &sin).unwrap();
    assert!(!ours.track_op(), "inference must not build a graph");
    let var = Var::from_tensor(&x).unwrap();
    let tracked = grad_ops::rope(var.as_tensor(), &cos, &sin).unwrap();
    assert!(tracked.track_op());
    let d = max_abs(&tracked, &plain);
    assert_eq!(d, 0.0);
    let d = max_abs(&ours, &plain);
    assert_eq!(d, 0.0);
}

/// A frozen weight gets no gradient (none is formed) and the input's gradient is the plain
/// linear layer's, which also checks it against finite differences.
#[test]
fn linear_with_a_frozen_weight_passes_the_input_gradient_only() {
    let w = randn(&[5, 4], 11);
    let b = randn(&[5], 12);
    let (w32, b32) = (
        w.to_dtype(DType::F32).unwrap(),
        b.to_dtype(DType::F32).unwrap(),
    );
    let layer = candle_nn::Linear::new(w32.clone(), Some(b32));
    let f = |xs: &[Tensor]| -> Tensor {
        let lin = candle_nn::Linear::new(xs[1].clone(), Some(xs[2].clone()));
        grad_ops::linear(&xs[0], &lin).unwrap()
    };
    let x = randn(&[2, 3, 4], 13);
    let err = check(&f, &[x.clone(), w.clone(), b.clone()], 0, 14);
    assert!(err < 1e-6, "input gradient error {err}");
    let xv = Var::from_tensor(&x.to_dtype(DType::F32).unwrap()).unwrap();
    let frozen = grad_ops::linear(xv.as_tensor(), &layer).unwrap();
    let plain = candle_core::Module::forward(&layer, xv.as_tensor()).unwrap();
    let diff = max_abs(&frozen, &plain);
    assert_eq!(diff, 0.0, "same values");
    let g = frozen.sum_all().unwrap().backward().unwrap();
    assert!(
        g.get(&w32).is_none(),
        "no gradient is formed for the frozen weight"
    );
    let gp = plain.sum_all().unwrap().backward().unwrap();
    let dx = max_abs(
        g.get(xv.as_tensor()).unwrap(),
        gp.get(xv.as_tensor()).unwrap(),
    );
    assert!(dx < 1e-6, "input gradients differ by {dx}");
}

/// A trained weight and bias: values as candle's `Linear`, all three gradients against finite
/// differences.
#[test]
fn linear_backward_matches_finite_differences() {
    let x = randn(&[2, 3, 4], 22);
    let w = randn(&[5, 4], 23);
    let b = randn(&[5], 24);
    let f = |ts: &[Tensor]| -> Tensor {
        let lin = candle_nn::Linear::new(ts[1].clone(), Some(ts[2].clone()));
        grad_ops::linear(&ts[0], &lin).unwrap()
    };
    let inputs = [x, w, b];
    for which in 0..3 {
        let err = check(&f, &inputs, which, 25);
        assert!(err < 1e-7, "argument {which}: error {err}");
    }
    let lin = candle_nn::Linear::new(inputs[1].clone(), Some(inputs[2].clone()));
    let wv = Var::from_tensor(&inputs[1]).unwrap();
    let tracked = candle_nn::Linear::new(wv.as_tensor().clone(), Some(inputs[2].clone()));
    let ours = grad_ops::linear(&inputs[0], &tracked).unwrap();
    let plain = candle_core::Module::forward(&lin, &inputs[0]).unwrap();
    assert!(ours.track_op());
    let d = (ours - plain)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(d < 1e-12, "values differ by {d}");
}

/// A causal mask `[b, 1, s, t]` (`t - s` cached keys) with the first key of batch item 1 padded.
fn causal_mask(b: usize, s: usize, t: usize, dtype: DType) -> Tensor {
    let mut data = Vec::new();
    for bi in 0..b {
        for i in 0..s {
            for j in 0..t {
                let visible = j <= t - s + i && !(bi == 1 && j == 0);
                data.push(if visible { 0f64 } else { f32::MIN as f64 });
            }
        }
    }
    Tensor::from_vec(data, (b, 1, s, t), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// The same softmax from candle's own ops: scale, the mask broadcast over the heads folded into
/// the query length, then softmax.
fn composed_attention_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Tensor {
    let (b, n, q, t) = scores.dims4().unwrap();
    let s = mask.dim(2).unwrap();
    let z = (scores * scale)
        .unwrap()
        .reshape((b, n, q / s, s, t))
        .unwrap()
        .broadcast_add(&mask.unsqueeze(2).unwrap())
        .unwrap()
        .reshape((b, n, q, t))
        .unwrap();
    candle_nn::ops::softmax_last_dim(&z).unwrap()
}

#[test]
fn attention_softmax_backward_matches_finite_differences() {
    // Two KV heads with two query heads each folded into the query length (q = 2 * s).
    let scores = randn(&[2, 2, 6, 5], 13);
    let mask = causal_mask(2, 3, 5, DType::F64);
    let f = |ts: &[Tensor]| {
        fourd_model::attention_softmax::attention_softmax(&ts[0], Some(&mask), 0.7).unwrap()
    };
    assert!(check(&f, std::slice::from_ref(&scores), 0, 14) < 1e-7);
    let unmasked = |ts: &[Tensor]| {
        fourd_model::attention_softmax::attention_softmax(&ts[0], None, 0.7).unwrap()
    };
    assert!(check(&unmasked, &[scores], 0, 15) < 1e-7);
}

/// Float32 on the CPU: the fused kernel against candle's composed ops, masked scores exactly 0
/// (as `exp` gives them), and no graph at inference.
#[test]
fn attention_softmax_equals_the_composed_ops() {
    let scores = (randn(&[2, 2, 6, 5], 16) * 40.0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let mask = causal_mask(2, 3, 5, DType::F32);
    let ours =
        fourd_model::attention_softmax::attention_softmax(&scores, Some(&mask), 0.125).unwrap();
    assert!(!ours.track_op(), "inference must not build a graph");
    let reference = composed_attention_softmax(&scores, &mask, 0.125);
    let d = max_abs(&ours, &reference);
    assert!(d < 1e-6, "largest difference {d}");
    let probs: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
    let masked: Vec<f32> = (mask.unsqueeze(2).unwrap())
        .broadcast_as((2, 2, 2, 3, 5))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(probs.len(), masked.len());
    for (p, m) in probs.iter().zip(&masked) {
        if *m < 0.0 {
            assert_eq!(*p, 0.0);
        }
    }
    // Without a mask, over any leading shape.
    let flat = scores.reshape((4, 6, 5)).unwrap();
    let ours = fourd_model::attention_softmax::attention_softmax(&flat, None, 0.125).unwrap();
    let reference = candle_nn::ops::softmax_last_dim(&(&flat * 0.125).unwrap()).unwrap();
    assert!(max_abs(&ours, &reference) < 1e-6);
}

#[test]
fn swiglu_backward_matches_finite_differences() {
    // Large magnitudes reach both branches of the sigmoid and its saturated ends.
    let gate = (randn(&[3, 7], 17) * 6.0).unwrap();
    let up = randn(&[3, 7], 18);
    let f = |ts: &[Tensor]| fourd_model::swiglu::swiglu(&ts[0], &ts[1]).unwrap();
    let dg = check(&f, &[gate.clone(), up.clone()], 0, 19);
    let du = check(&f, &[gate, up], 1, 19);
    assert!(dg < 1e-7, "d gate error {dg}");
    assert!(du < 1e-7, "d up error {du}");
}

/// Float32 on the CPU: the fused kernel against candle's `silu(gate) * up`, no graph at inference.
#[test]
fn swiglu_equals_the_composed_ops() {
    let gate = (randn(&[4, 33], 20) * 30.0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let up = randn(&[4, 33], 21).to_dtype(DType::F32).unwrap();
    let ours = fourd_model::swiglu::swiglu(&gate, &up).unwrap();
    assert!(!ours.track_op(), "inference must not build a graph");
    let reference = (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap();
    let scale = reference
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let d = max_abs(&ours, &reference);
    assert!(
        d <= scale * 4e-7,
        "largest difference {d} (largest value {scale})"
    );
}
