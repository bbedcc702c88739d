//! Model weights for training: every tensor the model asks for is recorded under its canonical
//! (transformers <= 4.51) name; language-model tensors become `Var`s the optimiser updates, the
//! vision tower stays frozen (the reference runs it under `no_grad`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use fourd_model::weights::CheckpointWeights;
use rand::{Rng, SeedableRng};

/// Where initial values come from.
pub enum WeightSource {
    /// A Hugging Face checkpoint folder.
    Checkpoint(CheckpointWeights),
    /// Fresh weights, as transformers initialises Qwen2.5-VL: normal(0, std) matrices, zero
    /// biases, unit norm scales. Each tensor gets its own stream seeded by (seed, name) so
    /// values do not depend on creation order.
    Random { seed: u64, std: f64 },
}

/// Every tensor of a model built through [`TrainableWeights::var_builder`].
#[derive(Default)]
struct Registry {
    /// Canonical name -> value (the `Var`'s tensor for trainable ones).
    tensors: BTreeMap<String, Tensor>,
    /// Canonical name -> variable, for trainable tensors only.
    vars: BTreeMap<String, Var>,
}

pub struct TrainableWeights {
    source: WeightSource,
    registry: Mutex<Registry>,
    trainable: fn(&str) -> bool,
}

/// The language model (embeddings, decoder, final norm, lm_head) trains; the vision tower,
/// including its patch merger, is frozen.
pub fn language_model_trains(name: &str) -> bool {
    !name.starts_with("visual.")
}

/// Everything trains (a model trained from scratch has no pretrained vision tower to keep).
pub fn everything_trains(_: &str) -> bool {
    true
}

impl TrainableWeights {
    pub fn new(source: WeightSource, trainable: fn(&str) -> bool) -> Arc<Self> {
        Arc::new(TrainableWeights {
            source,
            registry: Mutex::new(Registry::default()),
            trainable,
        })
    }

    pub fn var_builder(self: &Arc<Self>, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Shared(self.clone())), dtype, device.clone())
    }

    /// Trainable variables by canonical name (sorted, so optimiser state lines up across runs).
    pub fn vars(&self) -> Vec<(String, Var)> {
        let r = self.registry.lock().expect("registry lock");
        r.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Every tensor by canonical name, current values.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let r = self.registry.lock().expect("registry lock");
        r.tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn produce(
        &self,
        shape: &Shape,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = match &self.source {
            WeightSource::Checkpoint(w) => w
                .load(name, Some(shape), dtype, device)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?,
            WeightSource::Random { seed, std } => random_tensor(shape, name, *seed, *std)?
                .to_dtype(dtype)?
                .to_device(device)?,
        };
        Ok(t)
    }

    fn get(
        &self,
        shape: Shape,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut r = self.registry.lock().expect("registry lock");
        if let Some(t) = r.tensors.get(name) {
            // Asked twice (tied weights): hand out the same tensor so gradients accumulate.
            if t.shape() != &shape {
                candle_core::bail!(
                    "tensor `{name}` requested with shapes {:?} and {:?}",
                    t.shape(),
                    shape
                );
            }
            return Ok(t.clone());
        }
        let value = self.produce(&shape, name, dtype, device)?;
        let t = if (self.trainable)(name) {
            let var = Var::from_tensor(&value)?;
            let t = var.as_tensor().clone();
            r.vars.insert(name.to_string(), var);
            t
        } else {
            value
        };
        r.tensors.insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn contains(&self, name: &str) -> bool {
        match &self.source {
            WeightSource::Checkpoint(w) => w.contains(name),
            // Random init can make anything except an untied lm_head's "is it there?" probe,
            // which the config decides, not the file.
            WeightSource::Random { .. } => true,
        }
    }
}

struct Shared(Arc<TrainableWeights>);

impl SimpleBackend for Shared {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match &self.0.source {
            WeightSource::Checkpoint(w) => {
                let t = w
                    .load(name, None, dtype, dev)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                self.0.get(t.shape().clone(), name, dtype, dev)
            }
            WeightSource::Random { .. } => {
                candle_core::bail!("tensor `{name}`: a shape is needed to initialise it")
            }
        }
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// transformers' `_init_weights` for Qwen2.5-VL: normal(0, initializer_range) for linear and
/// embedding weights, zeros for biases, ones for RMSNorm / LayerNorm scales.
fn random_tensor(shape: &Shape, name: &str, seed: u64, std: f64) -> candle_core::Result<Tensor> {
    let n = shape.elem_count();
    if name.ends_with(".bias") {
        return Tensor::zeros(shape, DType::F32, &Device::Cpu);
    }
    let leaf = name.rsplit('.').nth(1).unwrap_or("");
    if leaf.contains("norm") || leaf == "ln_q" {
        return Tensor::ones(shape, DType::F32, &Device::Cpu);
    }
    // FNV-1a of the name mixed with the seed: a stable per-tensor stream.
    let mut h: u64 = 0xcbf29ce484222325 ^ seed;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(h);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            // Box-Muller; `1 - u` keeps the log finite.
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu)
}
