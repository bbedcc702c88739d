//! `fourd data check FILE`: validates a DIFT or 4DRL JSONL file and reports its label
//! distribution. Checks what `check_output_image.py` checks (tag count = `image_output` length)
//! and what it does not (`preprocess.md` §11): that every path exists, the think/answer
//! structure, tags inside the think block and in one sentence, four distinct options, a correct
//! letter whose option text is the answer, non-empty `image_input`, unique ids. An empty file is
//! an error, not a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cot::validate;
use crate::error::{DataError, Result};
use crate::questions::{baselines, Baselines};
use fourd_records::letters::{index_of, LETTERS};
use fourd_records::PathRule;

/// Which schema a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    Dift,
    Rl,
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub file: PathBuf,
    pub format: Option<Format>,
    pub records: usize,
    /// `line N: problem`, at most `MAX_ERRORS` listed; `error_count` has them all.
    pub errors: Vec<String>,
    pub error_count: usize,
    /// Question type -> answer label -> count.
    pub labels: BTreeMap<String, BTreeMap<String, usize>>,
    pub letters: BTreeMap<String, usize>,
    pub images_checked: usize,
    pub baselines: Option<Baselines>,
}

const MAX_ERRORS: usize = 50;

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.error_count == 0
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {} record(s), format {}, {} image path(s) checked, {} error(s)\n",
            self.file.display(),
            self.records,
            match self.format {
                Some(Format::Dift) => "DIFT",
                Some(Format::Rl) => "4DRL",
                None => "unknown",
            },
            self.images_checked,
            self.error_count
        );
        for e in &self.errors {
            s.push_str(&format!("  error: {e}\n"));
        }
        if self.error_count > self.errors.len() {
            s.push_str(&format!(
                "  ... and {} more\n",
                self.error_count - self.errors.len()
            ));
        }
        s.push_str("answer letters: ");
        s.push_str(
            &self
                .letters
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        s.push('\n');
        for (kind, labels) in &self.labels {
            let total: usize = labels.values().sum();
            s.push_str(&format!("{kind} ({total}):\n"));
            let mut v: Vec<_> = labels.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (l, c) in v {
                s.push_str(&format!(
                    "  {:5.1}%  {c:5}  {l}\n",
                    100.0 * *c as f64 / total.max(1) as f64
                ));
            }
        }
        if let Some(b) = &self.baselines {
            s.push_str(&format!(
                "option-only baselines over {} questions (chance 25%):\n",
                b.questions
            ));
            for (k, v) in &b.accuracy {
                s.push_str(&format!("  {v:5.1}%  {k}\n"));
            }
        }
        s
    }
}

/// One line under check: where errors go and how its paths resolve.
struct LineCheck<'a> {
    report: &'a mut CheckReport,
    line: usize,
    paths: &'a PathRule,
}

/// What a valid line asks: its four options, the correct letter, the answer label and the
/// question kind.
struct Asked {
    options: Vec<String>,
    letter: char,
    label: String,
    kind: String,
}

impl LineCheck<'_> {
    fn error(&mut self, msg: String) {
        self.report.error_count += 1;
        if self.report.errors.len() < MAX_ERRORS {
            self.report
                .errors
                .push(format!("line {}: {msg}", self.line));
        }
    }

    /// The string list `key` of `v`, every path of which must resolve (by the rule training
    /// uses) to an existing file; returns how many paths it lists.
    fn paths(&mut self, v: &serde_json::Value, key: &str) -> usize {
        let Some(list) = v.get(key).and_then(|x| x.as_array()) else {
            self.error(format!("missing list field `{key}`"));
            return 0;
        };
        let Some(paths) = list
            .iter()
            .map(|p| p.as_str())
            .collect::<Option<Vec<&str>>>()
        else {
            self.error(format!("`{key}` holds a non-string"));
            return 0;
        };
        for p in &paths {
            self.report.images_checked += 1;
            let resolved = self.paths.resolve(p);
            if !resolved.is_file() {
                self.error(format!(
                    "`{key}` path {p:?} does not exist (looked for {})",
                    resolved.display()
                ));
            }
        }
        paths.len()
    }

    /// Options of a DIFT `text_input`: the last four lines `A. ..` to `D. ..` after a blank
    /// line (`fourd_records::prompt::question_text`).
    fn dift_options(&mut self, text: &str) -> Option<Vec<String>> {
        let Some((_, opts)) = text.rsplit_once("\n\n") else {
            self.error("text_input has no blank line before the options".into());
            return None;
        };
        let lines: Vec<&str> = opts.lines().collect();
        if lines.len() != 4 {
            self.error(format!(
                "text_input has {} option lines, expected 4",
                lines.len()
            ));
            return None;
        }
        let mut out = Vec::new();
        for (l, letter) in lines.iter().zip(LETTERS) {
            let Some(body) = l.strip_prefix(&format!("{letter}. ")) else {
                self.error(format!(
                    "option line {l:?} does not start with \"{letter}. \""
                ));
                return None;
            };
            out.push(body.trim().to_string());
        }
        Some(out)
    }

    fn dift(&mut self, v: &serde_json::Value) -> Option<Asked> {
        if self.paths(v, "image_input") == 0 {
            self.error("`image_input` is empty".into());
        }
        let n_out = self.paths(v, "image_output");
        let (Some(ti), Some(to)) = (
            v.get("text_input").and_then(|x| x.as_str()),
            v.get("text_output").and_then(|x| x.as_str()),
        ) else {
            self.error("missing string fields `text_input`/`text_output`".into());
            return None;
        };
        let options = self.dift_options(ti)?;
        let (letter, label) = match validate(to, n_out) {
            Ok((Some(letter), label)) => (letter, label),
            // A label answer: its letter is the option it names.
            Ok((None, label)) => match options.iter().position(|o| *o == label) {
                Some(i) => (LETTERS[i], label),
                None => {
                    self.error(format!(
                        "text_output: answer {label:?} is none of the options {options:?}"
                    ));
                    return None;
                }
            },
            Err(e) => {
                self.error(format!("text_output: {e}"));
                return None;
            }
        };
        let kind = v
            .get("id")
            .and_then(|x| x.as_str())
            .and_then(|id| id.rsplit_once('#'))
            .map(|(_, k)| k.split('-').next().unwrap_or("").to_string())
            .unwrap_or_else(|| "all".into());
        Some(Asked {
            options,
            letter,
            label,
            kind,
        })
    }

    fn rl(&mut self, v: &serde_json::Value) -> Option<Asked> {
        if self.paths(v, "frame_paths") == 0 {
            self.error("`frame_paths` is empty".into());
        }
        if v.get("Question")
            .and_then(|x| x.as_str())
            .is_none_or(|q| q.trim().is_empty())
        {
            self.error("missing or empty `Question`".into());
        }
        let mut options = Vec::new();
        for l in LETTERS {
            match v.get(l.to_string()).and_then(|x| x.as_str()) {
                Some(o) if !o.trim().is_empty() => options.push(o.to_string()),
                _ => self.error(format!("missing or empty option `{l}`")),
            }
        }
        if options.len() != 4 {
            return None;
        }
        let letter = match v
            .get("Correct")
            .and_then(|x| x.as_str())
            .and_then(|c| c.trim().chars().next())
        {
            Some(c) if LETTERS.contains(&c) => c,
            other => {
                self.error(format!("`Correct` {other:?} is not A-D"));
                return None;
            }
        };
        let kind = v
            .get("Type")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        if kind.is_empty() {
            self.error("missing `Type`".into());
        }
        let label = options[index_of(letter)?].clone();
        Some(Asked {
            options,
            letter,
            label,
            kind,
        })
    }

    /// Checks shared by both formats: four distinct options, the answer's option text.
    fn options(&mut self, a: &Asked) -> Option<usize> {
        let distinct: BTreeSet<&String> = a.options.iter().collect();
        if distinct.len() != 4 {
            self.error(format!(
                "options are not four distinct labels: {:?}",
                a.options
            ));
        }
        let idx = index_of(a.letter)?;
        if a.options[idx] != a.label {
            self.error(format!(
                "answer {}. {:?} but option {} is {:?}",
                a.letter, a.label, a.letter, a.options[idx]
            ));
        }
        Some(idx)
    }
}

/// Checks `file`. Image paths resolve exactly as training resolves them
/// (`fourd_records::paths`: the file's folder, or `data_root`), so a file that checks clean has
/// no image that training would miss.
pub fn check_file(file: &Path, data_root: Option<&Path>) -> Result<CheckReport> {
    let text = std::fs::read_to_string(file).map_err(|e| DataError::io(file, e))?;
    let paths = PathRule::for_file(file, data_root);
    let mut r = CheckReport {
        file: file.to_path_buf(),
        format: None,
        records: 0,
        errors: Vec::new(),
        error_count: 0,
        labels: BTreeMap::new(),
        letters: BTreeMap::new(),
        images_checked: 0,
        baselines: None,
    };
    let mut ids = BTreeSet::new();
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        r.records += 1;
        let mut c = LineCheck {
            report: &mut r,
            line: i + 1,
            paths: &paths,
        };
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                c.error(format!("not JSON: {e}"));
                continue;
            }
        };
        let fmt = if v.get("text_output").is_some() {
            Format::Dift
        } else {
            Format::Rl
        };
        match c.report.format {
            None => c.report.format = Some(fmt),
            Some(f) if f != fmt => c.error("mixes DIFT and 4DRL records".into()),
            _ => {}
        }
        if let Some(id) = v.get("id").and_then(|x| x.as_str()) {
            if !ids.insert(id.to_string()) {
                c.error(format!("duplicate id {id:?}"));
            }
        } else if fmt == Format::Dift {
            c.error("missing string field `id`".into());
        }
        let asked = match fmt {
            Format::Dift => c.dift(&v),
            Format::Rl => c.rl(&v),
        };
        let Some(a) = asked else { continue };
        let Some(idx) = c.options(&a) else { continue };
        *r.letters.entry(a.letter.to_string()).or_default() += 1;
        *r.labels
            .entry(a.kind)
            .or_default()
            .entry(a.label)
            .or_default() += 1;
        items.push((a.options, idx));
    }
    if r.records == 0 {
        LineCheck {
            report: &mut r,
            line: 0,
            paths: &paths,
        }
        .error("the file has no records".into());
    }
    r.baselines = (!items.is_empty()).then(|| baselines(&items));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, lines: &[serde_json::Value]) -> PathBuf {
        let p = dir.join(name);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn dift_records_are_checked_in_full() {
        let dir = std::env::temp_dir().join(format!("fourd-data-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("f.png");
        image::RgbImage::new(2, 2).save(&img).unwrap();
        let img = img.to_string_lossy().into_owned();
        // The reference's final record form (preprocess.md §10).
        let good = serde_json::json!({
            "id": "v1#direction-obj1",
            "text_input": "Which way?\n\nA. Moving Right\nB. Moving Left\nC. Moving Up\nD. Stationary",
            "text_output": "<think>\nI picture it from <output_image> to <output_image>. It shifts left.\n</think>\n<answer>\nB. Moving Left\n</answer>",
            "image_input": [img.clone(), img.clone()],
            "image_output": [img.clone(), "f.png"],
        });
        let r = check_file(
            &write(&dir, "good.jsonl", std::slice::from_ref(&good)),
            None,
        )
        .unwrap();
        assert!(r.ok(), "{}", r.render());
        assert_eq!(r.labels["direction"]["Moving Left"], 1);
        // A label answer counts as the option it names.
        let mut named = good.clone();
        named["text_output"] = "<think>\nI picture it from <output_image> to <output_image>. It shifts left.\n</think>\n<answer>\nMoving Left\n</answer>".into();
        let r = check_file(&write(&dir, "named.jsonl", &[named]), None).unwrap();
        assert!(r.ok(), "{}", r.render());
        assert_eq!(r.letters["B"], 1);
        let broken = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            v
        };
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                broken(&|v| {
                    v["text_output"] = "<think>a <output_image> b <output_image></think>\n<answer>B. Moving Right</answer>".into()
                }),
                "option B is",
            ),
            (
                broken(&|v| {
                    v["text_output"] = "<think>a <output_image> b <output_image></think>\n<answer>Moving Down</answer>".into()
                }),
                "none of the options",
            ),
            (
                broken(&|v| {
                    v["text_output"] = "<think>a <output_image>. b <output_image></think><answer>B. Moving Left</answer>".into()
                }),
                "one sentence",
            ),
            (
                broken(&|v| {
                    v["text_output"] = "<think>a <output_image> b</think><answer>B. Moving Left</answer> <output_image>".into()
                }),
                "nothing else",
            ),
            (
                broken(&|v| v["image_output"] = serde_json::json!(["/missing.png", img.clone()])),
                "does not exist",
            ),
            (
                broken(&|v| {
                    v["text_input"] = "Which way?\n\nA. x\nB. Moving Left\nC. x\nD. y".into()
                }),
                "four distinct",
            ),
            (
                broken(&|v| v["image_input"] = serde_json::json!([])),
                "empty",
            ),
        ];
        for (v, want) in cases {
            let r = check_file(&write(&dir, "bad.jsonl", &[v]), None).unwrap();
            assert!(
                !r.ok() && r.errors.iter().any(|e| e.contains(want)),
                "{want}: {}",
                r.render()
            );
        }
        let dup = check_file(&write(&dir, "dup.jsonl", &[good.clone(), good]), None).unwrap();
        assert!(dup.errors.iter().any(|e| e.contains("duplicate id")));
        let empty = check_file(&write(&dir, "empty.jsonl", &[]), None).unwrap();
        assert!(!empty.ok() && empty.errors[0].contains("no records"));
    }
}
