//! Option letters and the balanced assignment of answer letters.
//!
//! Questions are taken in blocks of four; each block gets a permutation of A-D for its answers,
//! so over `n` questions each letter is correct `n / 4` times, up to one (a model that always
//! answers one letter scores chance). The caller supplies the seeded shuffle, so each writer keeps
//! its own random stream and its files stay byte-identical for a seed.

/// The four option letters.
pub const LETTERS: [char; 4] = ['A', 'B', 'C', 'D'];

/// The letter of option `index` (0 is A).
pub fn letter(index: usize) -> char {
    LETTERS[index]
}

/// Which option `letter` names (A is 0), upper or lower case.
pub fn index_of(letter: char) -> Option<usize> {
    LETTERS
        .iter()
        .position(|&l| l == letter.to_ascii_uppercase())
}

/// Option letters of a question with `n` options (A-D when unknown).
pub fn letters_for(n_options: usize) -> Vec<char> {
    let n = if n_options == 0 { 4 } else { n_options.min(26) };
    (0..n).map(|i| (b'A' + i as u8) as char).collect()
}

/// Hands out the answer slot of each question in turn, balanced in blocks of four.
#[derive(Clone, Debug, Default)]
pub struct LetterBalancer {
    block: [usize; 4],
    next: usize,
}

impl LetterBalancer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The answer slot (0 for A) of the next question. At the start of each block, `shuffle`
    /// gets the block's index and `[0, 1, 2, 3]` to permute.
    pub fn next_slot(&mut self, shuffle: impl FnOnce(usize, &mut [usize; 4])) -> usize {
        let within = self.next % LETTERS.len();
        if within == 0 {
            self.block = [0, 1, 2, 3];
            shuffle(self.next / LETTERS.len(), &mut self.block);
        }
        self.next += 1;
        self.block[within]
    }
}

/// The four options in letter order: the answer at `slot`, the distractors filling the other
/// letters in the order given (an empty option where there are fewer than three).
pub fn options_with_answer_at(
    slot: usize,
    answer: &str,
    distractors: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut rest = distractors.into_iter();
    (0..LETTERS.len())
        .map(|i| {
            if i == slot {
                answer.to_string()
            } else {
                rest.next().unwrap_or_default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_of_four_uses_each_letter_once() {
        let mut b = LetterBalancer::new();
        let mut blocks = Vec::new();
        let slots: Vec<usize> = (0..10)
            .map(|_| {
                b.next_slot(|k, p| {
                    blocks.push(k);
                    p.rotate_left(k % 4);
                })
            })
            .collect();
        assert_eq!(blocks, vec![0, 1, 2]);
        assert_eq!(slots, vec![0, 1, 2, 3, 1, 2, 3, 0, 2, 3]);
    }

    #[test]
    fn the_answer_takes_its_slot_and_distractors_fill_the_rest() {
        let o = options_with_answer_at(2, "yes", ["a".into(), "b".into(), "c".into()]);
        assert_eq!(o, vec!["a", "b", "yes", "c"]);
        assert_eq!(index_of('c'), Some(2));
        assert_eq!(index_of('E'), None);
        assert_eq!(letters_for(0), vec!['A', 'B', 'C', 'D']);
        assert_eq!(letters_for(2), vec!['A', 'B']);
    }
}
