//! Generation with latent imagery ("thinking with 4D").
//!
//! Each sequence of a batch runs its own state machine: text tokens are sampled as usual; once
//! `<|latent_start|>` is sampled, the next `latent_size` positions are *latent steps* whose input
//! embedding is the sequence's own final-norm hidden state of the previous position (recorded in
//! the ids as `<|latent_pad|>`), then `<|latent_end|>` is forced and text resumes. Unlike the
//! reference loop, sequences never share latent state, token ids come from the tokenizer, and a
//! segment always has exactly `latent_size` steps (see docs/model.md).

use candle_core::Tensor;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::GenerationDefaults;
use crate::error::{ModelError, Result};
use crate::inputs::ModelInputs;
use crate::model::Qwen25VL;
use crate::mrope::RopeIndexParams;
use crate::text::{KvCache, LogitRows};

/// How the next token is chosen. Applied in transformers' order: repetition penalty,
/// temperature, top-k, top-p.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    pub greedy: bool,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            greedy: true,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
            seed: 0,
        }
    }
}

/// Sampling settings given explicitly (flags); `None` falls back to `generation_config.json`.
#[derive(Clone, Debug, Default)]
pub struct SamplingOverrides {
    pub greedy: Option<bool>,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub seed: Option<u64>,
}

impl Sampling {
    /// Explicit flags win over the checkpoint's defaults; asking for temperature, top-k or top-p
    /// implies sampling unless `greedy` is set.
    pub fn resolve(defaults: &GenerationDefaults, o: &SamplingOverrides) -> Self {
        let asks_sampling = o.temperature.is_some() || o.top_k.is_some() || o.top_p.is_some();
        let greedy = match o.greedy {
            Some(g) => g,
            None if asks_sampling => false,
            None => !defaults.do_sample.unwrap_or(false),
        };
        Sampling {
            greedy,
            temperature: o.temperature.or(defaults.temperature).unwrap_or(1.0),
            top_k: o.top_k.or(defaults.top_k).filter(|&k| k > 0),
            top_p: o.top_p.or(defaults.top_p).filter(|&p| p < 1.0),
            repetition_penalty: o
                .repetition_penalty
                .or(defaults.repetition_penalty)
                .filter(|&p| p != 1.0),
            seed: o.seed.unwrap_or(0),
        }
    }

    /// Checks the settings before any work: a temperature that is finite and at least 0, a
    /// top-p in (0, 1], a repetition penalty above 0. A value out of range is an
    /// error naming the flag, never a silent switch to greedy decoding.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, want: &str, got: String| {
            Err(ModelError::input(format!(
                "--{flag} must be {want} (got {got})"
            )))
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "temperature",
                "a finite number >= 0",
                self.temperature.to_string(),
            );
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad("top-p", "in (0, 1]", p.to_string());
            }
        }
        if let Some(r) = self.repetition_penalty {
            if !(r.is_finite() && r > 0.0) {
                return bad("repetition-penalty", "a finite number > 0", r.to_string());
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        if self.greedy {
            let mut s = "greedy".to_string();
            if let Some(p) = self.repetition_penalty {
                s += &format!(", repetition_penalty={p}");
            }
            return s;
        }
        format!(
            "sampling: temperature={}, top_k={}, top_p={}, repetition_penalty={}, seed={}",
            self.temperature,
            self.top_k.map_or("off".into(), |k| k.to_string()),
            self.top_p.map_or("off".into(), |p| p.to_string()),
            self.repetition_penalty
                .map_or("off".into(), |p| p.to_string()),
            self.seed
        )
    }
}

/// The special tokens and length of latent imagery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatentTokens {
    pub pad: u32,
    pub start: u32,
    pub end: u32,
    pub size: usize,
}

#[derive(Clone, Debug)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Tokens that end a sequence (EOS, `<|im_end|>`); the stop token is kept in the output.
    pub stop_ids: Vec<u32>,
    /// `None`: plain text generation (a checkpoint without latent tokens).
    pub latent: Option<LatentTokens>,
}

/// What kind of position a generated id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Text,
    LatentStart,
    /// A latent step: recorded as `<|latent_pad|>`, its input was a hidden state.
    LatentPad,
    /// The forced `<|latent_end|>`.
    LatentEnd,
}

/// One imagery segment of a generated sequence.
#[derive(Clone, Debug)]
pub struct LatentSegment {
    /// Index in `token_ids` of the first `<|latent_pad|>`.
    pub start: usize,
    /// Latent steps taken (`latent_size`, fewer only if the token limit cut it).
    pub len: usize,
    /// The hidden states fed as the pads' input embeddings, `[len, hidden]`.
    pub hidden: Tensor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

#[derive(Clone, Debug)]
pub struct SequenceOutput {
    /// Generated ids only (no prompt), stop token included.
    pub token_ids: Vec<u32>,
    pub kinds: Vec<TokenKind>,
    /// log p(token) under the model's unprocessed distribution for sampled tokens; `None` for
    /// latent pads and the forced latent end.
    pub logprobs: Vec<Option<f32>>,
    pub latent_segments: Vec<LatentSegment>,
    pub finish_reason: FinishReason,
}

enum Phase {
    Text,
    /// `steps` latent steps already recorded in the current segment.
    Latent {
        steps: usize,
    },
}

enum NextInput {
    Token(u32),
    Hidden(Tensor),
}

struct SeqState {
    phase: Phase,
    next: NextInput,
    position: i64,
    key_mask: Vec<u8>,
    history: Vec<u32>,
    out: SequenceOutput,
    segment_hidden: Vec<Tensor>,
    rng: StdRng,
    done: bool,
}

impl SeqState {
    fn push(&mut self, id: u32, kind: TokenKind, logprob: Option<f32>) {
        self.out.token_ids.push(id);
        self.out.kinds.push(kind);
        self.out.logprobs.push(logprob);
        self.history.push(id);
    }

    fn close_segment(&mut self) -> Result<()> {
        if self.segment_hidden.is_empty() {
            return Ok(());
        }
        let len = self.segment_hidden.len();
        let hidden = Tensor::cat(&self.segment_hidden, 0)?;
        let start = self.out.token_ids.len()
            - self
                .out
                .kinds
                .iter()
                .rev()
                .take_while(|k| **k == TokenKind::LatentPad)
                .count();
        self.out
            .latent_segments
            .push(LatentSegment { start, len, hidden });
        self.segment_hidden.clear();
        Ok(())
    }
}

/// Runs generation for a prepared batch. `on_token(row, id, kind)` is called as ids are produced
/// (for streaming to a terminal). The batch's rows all start together and run to their end: a
/// [`DecodeBatch`] that no sequence joins later.
pub fn generate(
    model: &Qwen25VL,
    inputs: &ModelInputs,
    params: &RopeIndexParams,
    cfg: &GenerationConfig,
    mut on_token: impl FnMut(usize, u32, TokenKind),
) -> Result<Vec<SequenceOutput>> {
    let b = inputs.batch_size();
    let mut batch = DecodeBatch::new(model);
    let mut outs: Vec<Option<SequenceOutput>> = vec![None; b];
    let requests = (0..b).map(|row| (row as SeqId, cfg.clone())).collect();
    for (id, out) in batch.admit(inputs, params, requests)? {
        outs[id as usize] = Some(out);
    }
    while !batch.is_empty() {
        for (id, out) in batch.step(|id, e| on_token(id as usize, e.token, e.kind))? {
            outs[id as usize] = Some(out);
        }
    }
    outs.into_iter()
        .map(|o| o.ok_or_else(|| ModelError::input("a sequence never finished")))
        .collect()
}

/// The caller's name for a sequence of a [`DecodeBatch`].
pub type SeqId = u64;

/// A sequence decoding in a [`DecodeBatch`]: its settings and its state.
struct Running {
    id: SeqId,
    cfg: GenerationConfig,
    /// Ids its text steps never pick (see [`DecodeBatch::admit`]).
    suppress: Vec<u32>,
    /// How many of the most likely alternatives each sampled token reports
    /// ([`DecodeBatch::set_top_logprobs`]).
    top_logprobs: usize,
    state: SeqState,
}

/// One token a [`DecodeBatch::step`] produced for a sequence.
#[derive(Clone, Copy, Debug)]
pub struct Emitted<'a> {
    pub token: u32,
    pub kind: TokenKind,
    /// Its log-probability under the model's distribution; `None` for latent steps.
    pub logprob: Option<f32>,
    /// The most likely ids and their log-probabilities, most likely first, when the sequence
    /// asked for them and the token was sampled; empty otherwise.
    pub top: &'a [(u32, f32)],
}

/// Sequences decoding together, one token each per [`DecodeBatch::step`]. New sequences join
/// between steps ([`DecodeBatch::admit`]: prefilled on their own, then merged into the running
/// cache, left-padded to a common length); finished or cancelled ones leave at once. Every
/// sequence keeps its own settings, sampling state and latent-imagery phase, so a sequence
/// decodes the same tokens whoever it shares the batch with (up to floating-point reassociation in
/// batched kernels).
///
/// Rows are kept in cache order: `rows[i]` is row `i` of the cache and of the pending `logits`
/// and `hidden` (the outputs of each row's last forward position, from which its next token is
/// chosen).
pub struct DecodeBatch<'m> {
    model: &'m Qwen25VL,
    cache: KvCache,
    rows: Vec<Running>,
    logits: Option<Tensor>,
    hidden: Option<Tensor>,
}

impl<'m> DecodeBatch<'m> {
    pub fn new(model: &'m Qwen25VL) -> Self {
        DecodeBatch {
            model,
            cache: model.new_cache(),
            rows: Vec::new(),
            logits: None,
            hidden: None,
        }
    }

    /// Sequences decoding now.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The ids of the sequences decoding now, in batch order.
    pub fn ids(&self) -> Vec<SeqId> {
        self.rows.iter().map(|r| r.id).collect()
    }

    /// Prefills the prompts of `inputs` (one row per request, in order) and adds them to the
    /// batch, each with its id and settings. Returns the sequences that are finished at once
    /// (`max_new_tokens == 0`). Row `r` of `inputs` samples with seed `seed + r`, as a batch of
    /// [`generate`] does.
    pub fn admit(
        &mut self,
        inputs: &ModelInputs,
        params: &RopeIndexParams,
        requests: Vec<(SeqId, GenerationConfig)>,
    ) -> Result<Vec<(SeqId, SequenceOutput)>> {
        if requests.len() != inputs.batch_size() {
            return Err(ModelError::input(format!(
                "{} requests for {} prompts",
                requests.len(),
                inputs.batch_size()
            )));
        }
        if requests
            .iter()
            .any(|(_, c)| c.latent.is_some_and(|l| l.size == 0))
        {
            return Err(ModelError::input("latent_size must be at least 1"));
        }
        let model = self.model;
        let mut cache = model.new_cache();
        let prefill = model.prefill(inputs, params, &mut cache, &LogitRows::Last)?;
        let mut logits = prefill.output.logits.narrow(1, 0, 1)?.squeeze(1)?;
        let mut hidden = last_hidden(&prefill.output.hidden)?;
        let mut finished = Vec::new();
        let mut joining = Vec::new();
        for (row, (id, cfg)) in requests.into_iter().enumerate() {
            let state = SeqState::new(inputs, row, prefill.positions.next_position[row], &cfg);
            if state.done {
                finished.push((id, state.out));
                continue;
            }
            // Ids that a text step never picks: an image or video placeholder has no pixels
            // to go with it, and the latent pad and end tokens are written by the imagery
            // engine only. Sampled (transformers does not stop it), such a token makes the
            // sequence unreadable when it is fed back (GRPO's training pass, a follow-up
            // turn). Log-probabilities stay those of the full distribution, as the training
            // pass computes them.
            let suppress = [model.config.image_token_id, model.config.video_token_id]
                .into_iter()
                .flatten()
                .chain(cfg.latent.iter().flat_map(|l| [l.pad, l.end]))
                .collect();
            joining.push((
                row,
                Running {
                    id,
                    cfg,
                    suppress,
                    top_logprobs: 0,
                    state,
                },
            ));
        }
        if joining.is_empty() {
            return Ok(finished);
        }
        if joining.len() < inputs.batch_size() {
            let keep = row_tensor(&joining.iter().map(|(r, _)| *r).collect::<Vec<_>>(), model)?;
            cache.select_rows(&keep)?;
            logits = logits.index_select(&keep, 0)?;
            hidden = hidden.index_select(&keep, 0)?;
        }
        let (pad_running, pad_joining) = self.cache.append_rows(cache)?;
        let pad = |mask: &mut Vec<u8>, n: usize| {
            mask.splice(0..0, std::iter::repeat_n(0, n));
        };
        for r in &mut self.rows {
            pad(&mut r.state.key_mask, pad_running);
        }
        for (_, r) in &mut joining {
            pad(&mut r.state.key_mask, pad_joining);
        }
        self.logits = Some(match self.logits.take() {
            Some(l) => Tensor::cat(&[&l, &logits], 0)?,
            None => logits,
        });
        self.hidden = Some(match self.hidden.take() {
            Some(h) => Tensor::cat(&[&h, &hidden], 0)?,
            None => hidden,
        });
        self.rows.extend(joining.into_iter().map(|(_, r)| r));
        Ok(finished)
    }

    /// Makes sequence `id` report, with each token it samples, the `k` most likely ids and
    /// their log-probabilities (OpenAI's `top_logprobs`); 0 stops it. Returns whether `id` is in
    /// the batch.
    pub fn set_top_logprobs(&mut self, id: SeqId, k: usize) -> bool {
        match self.rows.iter_mut().find(|r| r.id == id) {
            Some(r) => {
                r.top_logprobs = k;
                true
            }
            None => false,
        }
    }

    /// One token for every sequence: each chooses from its pending logits (or takes a latent
    /// step), `on_token(id, emitted)` hears of it, finished sequences leave, and the rest run one
    /// forward position. Returns the sequences that finished.
    pub fn step(
        &mut self,
        mut on_token: impl FnMut(SeqId, Emitted),
    ) -> Result<Vec<(SeqId, SequenceOutput)>> {
        let (Some(logits), Some(hidden)) = (&self.logits, &self.hidden) else {
            return Ok(Vec::new());
        };
        let logit_rows = logits.to_vec2::<f32>()?;
        for (slot, run) in self.rows.iter_mut().enumerate() {
            let h = hidden.get(slot)?.unsqueeze(0)?;
            let id = run.id;
            let top = top_logprobs(&logit_rows[slot], run.top_logprobs);
            let mut emit = |token, kind, logprob: Option<f32>| {
                let top: &[(u32, f32)] = if logprob.is_some() { &top } else { &[] };
                on_token(
                    id,
                    Emitted {
                        token,
                        kind,
                        logprob,
                        top,
                    },
                )
            };
            let st = &mut run.state;
            step_state(st, &logit_rows[slot], h, &run.cfg, &run.suppress, &mut emit)?;
            if st.out.token_ids.len() >= run.cfg.max_new_tokens && !st.done {
                st.done = true;
                st.out.finish_reason = FinishReason::Length;
            }
            if st.done {
                st.close_segment()?;
            }
        }
        let finished = self.remove(|r| r.state.done)?;
        if !self.rows.is_empty() {
            self.forward()?;
        }
        Ok(finished)
    }

    /// Takes sequence `id` out of the batch (a client that went away); its output so far, or
    /// `None` when it is not in the batch.
    pub fn cancel(&mut self, id: SeqId) -> Result<Option<SequenceOutput>> {
        Ok(self.remove(|r| r.id == id)?.pop().map(|(_, out)| out))
    }

    /// Removes the rows `leaving` picks from the batch, its cache and pending outputs.
    fn remove(
        &mut self,
        leaving: impl Fn(&Running) -> bool,
    ) -> Result<Vec<(SeqId, SequenceOutput)>> {
        if !self.rows.iter().any(&leaving) {
            return Ok(Vec::new());
        }
        // (row in the cache, sequence)
        type Rows = Vec<(usize, Running)>;
        let (gone, stay): (Rows, Rows) = std::mem::take(&mut self.rows)
            .into_iter()
            .enumerate()
            .partition(|(_, r)| leaving(r));
        if stay.is_empty() {
            self.cache.clear();
            self.logits = None;
            self.hidden = None;
        } else {
            let keep = row_tensor(
                &stay.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                self.model,
            )?;
            self.cache.select_rows(&keep)?;
            self.logits = self
                .logits
                .take()
                .map(|l| l.index_select(&keep, 0))
                .transpose()?;
            self.hidden = self
                .hidden
                .take()
                .map(|h| h.index_select(&keep, 0))
                .transpose()?;
        }
        self.rows = stay.into_iter().map(|(_, r)| r).collect();
        Ok(gone.into_iter().map(|(_, r)| (r.id, r.state.out)).collect())
    }

    /// One forward position for every row: token embeddings or fed-back hidden states in, the
    /// next pending logits and hidden states out.
    fn forward(&mut self) -> Result<()> {
        let model = self.model;
        let mut inputs = Vec::with_capacity(self.rows.len());
        for r in &mut self.rows {
            let st = &mut r.state;
            inputs.push(match &st.next {
                NextInput::Token(id) => model.text.embed(&Tensor::new(&[*id], &model.device)?)?,
                NextInput::Hidden(h) => h.to_dtype(model.dtype())?,
            });
            st.key_mask.push(1);
        }
        let embeds = Tensor::cat(&inputs, 0)?.unsqueeze(1)?;
        let positions: Vec<i64> = self.rows.iter().map(|r| r.state.position).collect();
        let key_mask: Vec<Vec<u8>> = self.rows.iter().map(|r| r.state.key_mask.clone()).collect();
        let out = model.step(&embeds, &positions, &key_mask, &mut self.cache)?;
        for r in &mut self.rows {
            r.state.position += 1;
        }
        self.logits = Some(out.logits.squeeze(1)?);
        self.hidden = Some(last_hidden(&out.hidden)?);
        Ok(())
    }
}

impl SeqState {
    /// The state of row `row` of a prefilled batch, whose next position is `position`.
    fn new(inputs: &ModelInputs, row: usize, position: i64, cfg: &GenerationConfig) -> Self {
        SeqState {
            phase: Phase::Text,
            next: NextInput::Token(0),
            position,
            key_mask: inputs.attention_mask[row].clone(),
            history: inputs.input_ids[row]
                .iter()
                .zip(&inputs.attention_mask[row])
                .filter(|(_, &m)| m != 0)
                .map(|(&t, _)| t)
                .collect(),
            out: SequenceOutput {
                token_ids: vec![],
                kinds: vec![],
                logprobs: vec![],
                latent_segments: vec![],
                finish_reason: FinishReason::Length,
            },
            segment_hidden: vec![],
            rng: StdRng::seed_from_u64(cfg.sampling.seed.wrapping_add(row as u64)),
            done: cfg.max_new_tokens == 0,
        }
    }
}

fn last_hidden(hidden: &Tensor) -> Result<Tensor> {
    let s = hidden.dim(1)?;
    Ok(hidden.narrow(1, s - 1, 1)?.squeeze(1)?)
}

fn row_tensor(rows: &[usize], model: &Qwen25VL) -> Result<Tensor> {
    let v: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    Ok(Tensor::new(v.as_slice(), &model.device)?)
}

/// Advances one sequence by the step whose logits and final hidden state (`[1, hidden]`) are given.
fn step_state(
    st: &mut SeqState,
    logits: &[f32],
    hidden: Tensor,
    cfg: &GenerationConfig,
    suppress: &[u32],
    on_token: &mut impl FnMut(u32, TokenKind, Option<f32>),
) -> Result<()> {
    match (&st.phase, cfg.latent) {
        (Phase::Latent { steps }, Some(lt)) => {
            let steps = *steps;
            if steps < lt.size {
                // A latent step: the position's input is this hidden state.
                st.segment_hidden.push(hidden.clone());
                st.push(lt.pad, TokenKind::LatentPad, None);
                on_token(lt.pad, TokenKind::LatentPad, None);
                st.next = NextInput::Hidden(hidden);
                st.phase = Phase::Latent { steps: steps + 1 };
            } else {
                st.close_segment()?;
                st.push(lt.end, TokenKind::LatentEnd, None);
                on_token(lt.end, TokenKind::LatentEnd, None);
                st.next = NextInput::Token(lt.end);
                st.phase = Phase::Text;
            }
        }
        _ => {
            let id = choose_excluding(logits, suppress, &st.history, &cfg.sampling, &mut st.rng);
            let lp = log_prob(logits, id);
            let kind = match cfg.latent {
                Some(lt) if id == lt.start => TokenKind::LatentStart,
                _ => TokenKind::Text,
            };
            st.push(id, kind, Some(lp));
            on_token(id, kind, Some(lp));
            if cfg.stop_ids.contains(&id) {
                st.done = true;
                st.out.finish_reason = FinishReason::Stop;
            }
            if kind == TokenKind::LatentStart {
                st.phase = Phase::Latent { steps: 0 };
            }
            st.next = NextInput::Token(id);
        }
    }
    Ok(())
}

/// The `k` most likely ids of a row of logits and their log-probabilities (of the unprocessed
/// distribution, as [`SequenceOutput::logprobs`]), most likely first; ties by lower id.
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 || logits.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(order.len());
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    order.select_nth_unstable_by(k - 1, by_logit);
    order.truncate(k);
    order.sort_by(by_logit);
    let lse = log_sum_exp(logits);
    order
        .into_iter()
        .map(|id| (id, logits[id as usize] - lse))
        .collect()
}

fn log_prob(logits: &[f32], id: u32) -> f32 {
    logits[id as usize] - log_sum_exp(logits)
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    logits
        .iter()
        .map(|&l| ((l - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32
        + max
}

/// Picks the next token id from one row of logits.
pub fn choose(logits: &[f32], history: &[u32], s: &Sampling, rng: &mut StdRng) -> u32 {
    choose_excluding(logits, &[], history, s, rng)
}

/// [`choose`] with the ids in `exclude` never picked (masked in the one working copy).
pub fn choose_excluding(
    logits: &[f32],
    exclude: &[u32],
    history: &[u32],
    s: &Sampling,
    rng: &mut StdRng,
) -> u32 {
    let mut l: Vec<f32> = logits.to_vec();
    for &t in exclude {
        if let Some(x) = l.get_mut(t as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
    if let Some(p) = s.repetition_penalty {
        let mut seen = std::collections::HashSet::new();
        for &t in history {
            if seen.insert(t) {
                if let Some(x) = l.get_mut(t as usize) {
                    *x = if *x < 0.0 {
                        *x * p as f32
                    } else {
                        *x / p as f32
                    };
                }
            }
        }
    }
    if s.greedy {
        return argmax(&l);
    }
    let t = s.temperature.max(1e-6) as f32;
    l.iter_mut().for_each(|x| *x /= t);
    let mut order: Vec<usize> = (0..l.len()).collect();
    order.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap_or(std::cmp::Ordering::Equal));
    if let Some(k) = s.top_k {
        order.truncate(k.max(1));
    }
    let max = l[order[0]];
    let mut probs: Vec<f64> = order.iter().map(|&i| ((l[i] - max) as f64).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(top_p) = s.top_p {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= top_p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        order.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let u: f64 = rng.random();
    let mut cum = 0.0;
    for (i, p) in probs.iter().enumerate() {
        cum += p;
        if u < cum {
            return order[i] as u32;
        }
    }
    order[probs.len() - 1] as u32
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_logprobs_are_the_most_likely_ids_in_order() {
        let logits = [0.5f32, 2.0, -1.0, 2.0, 1.0];
        let top = top_logprobs(&logits, 3);
        let ids: Vec<u32> = top.iter().map(|t| t.0).collect();
        assert_eq!(ids, vec![1, 3, 4]);
        for (id, lp) in &top {
            assert!((lp - log_prob(&logits, *id)).abs() < 1e-6);
        }
        let total: f32 = (0..5).map(|i| log_prob(&logits, i).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!(top_logprobs(&logits, 0).is_empty());
        assert_eq!(top_logprobs(&logits, 9).len(), 5);
    }
}
