//! Text generation as transformers' `GenerationMixin.generate` does it for a decoder-only model:
//! greedy search and beam search, with the min-length logits processor and the max-length and
//! eos stopping criteria. Token for token the same choices as transformers, given the same logits.
//!
//! Port of `generation/utils.py` (`_sample` without sampling, and the vectorised `_beam_search`
//! with its helpers) and `MinLengthLogitsProcessor` of transformers 5
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/generation/utils.py>).
//! Beam search keeps transformers' defaults (`length_penalty = 1.0`, `early_stopping = False`,
//! `num_return_sequences = 1`), its `-1e9` penalties in f32 and its early-stop heuristic, since
//! those decide which hypothesis wins.
//!
//! The model is behind [`Decoder`]: feed tokens, get the last position's logits, keep some rows.
//! Rows are sequences (greedy) or beams (beam search, `num_beams` consecutive rows per input);
//! rows whose result can no longer change are dropped from the model's batch.

/// A decoder-only model holding the state of a batch of rows.
pub trait Decoder {
    /// Feeds `len` new tokens to every row (`tokens` is rows × len, row-major) and returns the
    /// next-token logits of every row (rows × vocab, row-major).
    fn step(&mut self, tokens: &[u32], len: usize) -> candle_core::Result<Vec<f32>>;

    /// Keeps the rows `rows` of the state, in that order (a row may be repeated).
    fn select(&mut self, rows: &[u32]) -> candle_core::Result<()>;
}

/// The generation options transformers' `generate` takes, as far as captioning uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    /// Total length, prompt included.
    pub max_length: usize,
    /// Eos is forbidden while a sequence is shorter than this (prompt included).
    pub min_length: usize,
    /// 1: greedy search.
    pub num_beams: usize,
    pub eos: u32,
}

/// transformers' stand-in for "no score" and for barred candidates.
const NO_SCORE: f32 = -1.0e9;

/// Continues `prompt` for each of the `inputs` rows of `decoder`; returns each input's sequence,
/// the prompt included, up to and including eos (or to `max_length`).
pub fn generate<D: Decoder>(
    decoder: &mut D,
    inputs: usize,
    prompt: &[u32],
    search: &Search,
) -> candle_core::Result<Vec<Vec<u32>>> {
    if prompt.is_empty() || prompt.len() >= search.max_length {
        candle_core::bail!(
            "the prompt has {} tokens, max_length is {}",
            prompt.len(),
            search.max_length
        );
    }
    if inputs == 0 {
        return Ok(Vec::new());
    }
    if search.num_beams <= 1 {
        greedy(decoder, inputs, prompt, search)
    } else {
        beam_search(decoder, inputs, prompt, search)
    }
}

/// `_sample` with `do_sample=False`: the first highest logit at every step.
fn greedy<D: Decoder>(
    decoder: &mut D,
    inputs: usize,
    prompt: &[u32],
    search: &Search,
) -> candle_core::Result<Vec<Vec<u32>>> {
    let mut sequences = vec![prompt.to_vec(); inputs];
    // The inputs still being written, in the decoder's row order.
    let mut live: Vec<usize> = (0..inputs).collect();
    let mut tokens: Vec<u32> = sequences.concat();
    let mut len = prompt.len();
    loop {
        let logits = decoder.step(&tokens, tokens.len() / live.len())?;
        let vocab = logits.len() / live.len();
        let cur_len = len;
        let mut kept = Vec::with_capacity(live.len());
        tokens.clear();
        for (row, &input) in live.iter().enumerate() {
            let mut scores = logits[row * vocab..][..vocab].to_vec();
            forbid_early_eos(&mut scores, cur_len, search);
            let next = argmax(&scores);
            sequences[input].push(next as u32);
            if next as u32 != search.eos {
                kept.push(row);
                tokens.push(next as u32);
            }
        }
        len += 1;
        if len >= search.max_length || kept.is_empty() {
            return Ok(sequences);
        }
        if kept.len() < live.len() {
            let rows: Vec<u32> = kept.iter().map(|&row| row as u32).collect();
            decoder.select(&rows)?;
            live = kept.iter().map(|&row| live[row]).collect();
        }
    }
}

/// `MinLengthLogitsProcessor`: no eos while the sequence is shorter than `min_length`.
fn forbid_early_eos(scores: &mut [f32], cur_len: usize, search: &Search) {
    if cur_len < search.min_length {
        scores[search.eos as usize] = f32::NEG_INFINITY;
    }
}

/// The index of the first maximum (torch's `argmax`).
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// A sequence and its score.
#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<u32>,
    score: f32,
}

/// One input's beams: `_beam_search`'s per-batch-item tensors.
#[derive(Debug, Clone)]
struct Beams {
    /// `running_sequences` / `running_beam_scores`, best first.
    running: Vec<Hypothesis>,
    /// `sequences` / `beam_scores` / `is_sent_finished`, best first.
    finished: Vec<(Hypothesis, bool)>,
    /// `is_early_stop_heuristic_unsatisfied`: whether running beams can still beat a finished one.
    open: bool,
}

impl Beams {
    fn new(prompt: &[u32], num_beams: usize) -> Self {
        let hypothesis = |score| Hypothesis {
            tokens: prompt.to_vec(),
            score,
        };
        // Only the first beam starts live, so that the beams do not all pick the same tokens.
        let running = (0..num_beams)
            .map(|beam| hypothesis(if beam == 0 { 0.0 } else { NO_SCORE }))
            .collect();
        let finished = (0..num_beams)
            .map(|_| (hypothesis(NO_SCORE), false))
            .collect();
        Self {
            running,
            finished,
            open: true,
        }
    }

    /// One step from the logits of this input's beams (num_beams × vocab); returns, for each new
    /// running beam, the beam it continues.
    fn step(
        &mut self,
        logits: &[f32],
        cur_len: usize,
        prompt_len: usize,
        search: &Search,
    ) -> Vec<usize> {
        let beams = self.running.len();
        let vocab = logits.len() / beams;
        // b. Accumulated log-probabilities of every continuation of every beam.
        let mut scores = Vec::with_capacity(logits.len());
        for (beam, row) in logits.chunks_exact(vocab).enumerate() {
            let mut log_probs = log_softmax(row);
            forbid_early_eos(&mut log_probs, cur_len, search);
            let base = self.running[beam].score;
            scores.extend(log_probs.iter().map(|p| p + base));
        }
        // c. The top 2 × num_beams continuations (`_get_top_k_continuations`).
        let top = top_k(&scores, 2 * beams);
        let candidates: Vec<(usize, Hypothesis, bool)> = top
            .iter()
            .map(|&i| {
                let (beam, token) = (i / vocab, (i % vocab) as u32);
                let mut tokens = self.running[beam].tokens.clone();
                tokens.push(token);
                // d. The stopping criteria: eos, or max_length reached.
                let hits = token == search.eos || tokens.len() >= search.max_length;
                let hypothesis = Hypothesis {
                    tokens,
                    score: scores[i],
                };
                (beam, hypothesis, hits)
            })
            .collect();

        // e. The best unfinished continuations run on (`_get_running_beams_for_next_iteration`).
        let running_scores: Vec<f32> = candidates
            .iter()
            .map(|(_, h, hits)| h.score + if *hits { NO_SCORE } else { 0.0 })
            .collect();
        let next = top_k(&running_scores, beams);
        let parents = next.iter().map(|&k| candidates[k].0).collect();
        self.running = next
            .iter()
            .map(|&k| Hypothesis {
                tokens: candidates[k].1.tokens.clone(),
                score: running_scores[k],
            })
            .collect();

        // f. Finished continuations among the top num_beams join the finished ones when they
        // score higher (`_update_finished_beams`); the length penalty is 1.0.
        let length = (cur_len + 1 - prompt_len) as f32;
        let mut merged = std::mem::take(&mut self.finished);
        for (k, (_, hypothesis, hits)) in candidates.into_iter().enumerate() {
            let just_finished = hits && k < beams;
            let mut score = hypothesis.score / length;
            if !self.open {
                score += NO_SCORE;
            }
            if !just_finished {
                score += NO_SCORE;
            }
            merged.push((
                Hypothesis {
                    tokens: hypothesis.tokens,
                    score,
                },
                just_finished,
            ));
        }
        let merged_scores: Vec<f32> = merged.iter().map(|(h, _)| h.score).collect();
        self.finished = top_k(&merged_scores, beams)
            .into_iter()
            .map(|k| merged[k].clone())
            .collect();

        // g. `_check_early_stop_heuristic` (early_stopping = False): can the best running beam,
        // at the next length, still beat a finished one?
        let best_running = self.running[0].score / (cur_len + 1 - prompt_len) as f32;
        let worst = self
            .finished
            .iter()
            .map(|(h, _)| h.score)
            .fold(f32::INFINITY, f32::min);
        self.open &= self.finished.iter().any(|(_, finished)| {
            let bar = if *finished { worst } else { NO_SCORE };
            best_running > bar
        });
        parents
    }
}

/// The vectorised `_beam_search` of transformers, input by input.
fn beam_search<D: Decoder>(
    decoder: &mut D,
    inputs: usize,
    prompt: &[u32],
    search: &Search,
) -> candle_core::Result<Vec<Vec<u32>>> {
    let beams = search.num_beams;
    let mut states: Vec<Beams> = (0..inputs).map(|_| Beams::new(prompt, beams)).collect();
    // `_expand_inputs_for_generation`: every input's row, num_beams times.
    let rows: Vec<u32> = (0..inputs as u32)
        .flat_map(|input| std::iter::repeat_n(input, beams))
        .collect();
    decoder.select(&rows)?;
    let mut live: Vec<usize> = (0..inputs).collect();
    let mut tokens: Vec<u32> = prompt.repeat(inputs * beams);
    let mut cur_len = prompt.len();
    loop {
        let logits = decoder.step(&tokens, tokens.len() / (live.len() * beams))?;
        let per_input = logits.len() / live.len();
        let mut parents = Vec::with_capacity(live.len());
        for (i, &input) in live.iter().enumerate() {
            let chunk = &logits[i * per_input..][..per_input];
            parents.push(states[input].step(chunk, cur_len, prompt.len(), search));
        }
        cur_len += 1;
        if cur_len >= search.max_length {
            break;
        }
        // An input whose finished hypotheses can no longer be beaten is done: transformers runs
        // it on until the whole batch is, but every later candidate is barred from its results.
        let mut rows = Vec::new();
        let mut still = Vec::new();
        tokens.clear();
        for (i, &input) in live.iter().enumerate() {
            if !states[input].open {
                continue;
            }
            still.push(input);
            for (beam, &parent) in parents[i].iter().enumerate() {
                rows.push((i * beams + parent) as u32);
                let last = states[input].running[beam].tokens.last();
                tokens.push(*last.expect("a beam holds at least its prompt"));
            }
        }
        if still.is_empty() {
            break;
        }
        decoder.select(&rows)?;
        live = still;
    }
    Ok(states
        .into_iter()
        .map(|state| state.finished[0].0.tokens.clone())
        .collect())
}

/// `log_softmax` of one row, as torch computes it: `x - max - log(sum(exp(x - max)))`.
fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
    let log_sum = sum.ln();
    row.iter().map(|x| x - max - log_sum).collect()
}

/// Indices of the `k` largest values, largest first; ties keep the lower index first.
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder whose next-token logits depend only on the last token, from a fixed table.
    struct Table {
        logits: Vec<Vec<f32>>,
        last: Vec<u32>,
    }

    impl Decoder for Table {
        fn step(&mut self, tokens: &[u32], len: usize) -> candle_core::Result<Vec<f32>> {
            self.last = tokens.chunks(len).map(|row| row[len - 1]).collect();
            Ok(self
                .last
                .iter()
                .flat_map(|&t| self.logits[t as usize].clone())
                .collect())
        }

        fn select(&mut self, rows: &[u32]) -> candle_core::Result<()> {
            self.last = rows
                .iter()
                .map(|&r| self.last.get(r as usize).copied().unwrap_or(0))
                .collect();
            Ok(())
        }
    }

    /// Token 0 starts; 3 is eos. From 0, greedy picks 1 (then 1 -> eos) but 2 -> 2 -> ... is
    /// worth more in total over two steps.
    fn table() -> Table {
        let l = |v: [f32; 4]| v.to_vec();
        Table {
            logits: vec![
                l([0.0, 2.0, 1.9, -9.0]),
                l([0.0, 0.0, 0.0, 0.1]),
                l([0.0, 0.0, 0.0, 9.0]),
                l([0.0, 0.0, 0.0, 0.0]),
            ],
            last: Vec::new(),
        }
    }

    fn search(num_beams: usize, min_length: usize) -> Search {
        Search {
            max_length: 6,
            min_length,
            num_beams,
            eos: 3,
        }
    }

    #[test]
    fn greedy_takes_the_best_token_and_stops_at_eos() {
        let out = generate(&mut table(), 2, &[0], &search(1, 0)).unwrap();
        assert_eq!(out, [vec![0, 1, 3], vec![0, 1, 3]]);
    }

    #[test]
    fn min_length_forbids_eos_until_reached() {
        let out = generate(&mut table(), 1, &[0], &search(1, 4)).unwrap();
        assert_eq!(out, [vec![0, 1, 0, 1, 3]]);
    }

    #[test]
    fn beam_search_finds_the_better_sequence() {
        let out = generate(&mut table(), 1, &[0], &search(2, 0)).unwrap();
        assert_eq!(out, [vec![0, 2, 3]]);
    }

    #[test]
    fn a_prompt_at_max_length_is_an_error() {
        assert!(generate(&mut table(), 1, &[0; 6], &search(1, 0)).is_err());
    }

    #[test]
    fn top_k_orders_by_value_then_index() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0], 3), [1, 2, 3]);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }
}
