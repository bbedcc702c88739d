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
use crate::export::LETTERS;
use crate::questions::{baselines, Baselines};

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

fn resolve(p: &str, base: &Path) -> Option<PathBuf> {
    let direct = PathBuf::from(p);
    if direct.is_file() {
        return Some(direct);
    }
    let rel = base.join(p);
    rel.is_file().then_some(rel)
}

/// Options of a DIFT `text_input`: the last four lines `A. ..` to `D. ..` after a blank line.
fn dift_options(text: &str) -> std::result::Result<(String, Vec<String>), String> {
    let (question, opts) = text
        .rsplit_once("\n\n")
        .ok_or("text_input has no blank line before the options")?;
    let lines: Vec<&str> = opts.lines().collect();
    if lines.len() != 4 {
        return Err(format!(
            "text_input has {} option lines, expected 4",
            lines.len()
        ));
    }
    let mut out = Vec::new();
    for (l, letter) in lines.iter().zip(LETTERS) {
        let body = l
            .strip_prefix(&format!("{letter}. "))
            .ok_or_else(|| format!("option line {l:?} does not start with \"{letter}. \""))?;
        out.push(body.trim().to_string());
    }
    Ok((question.trim().to_string(), out))
}

/// Checks `file`.
pub fn check_file(file: &Path) -> Result<CheckReport> {
    let text = std::fs::read_to_string(file).map_err(|e| DataError::io(file, e))?;
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
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
    let err = |r: &mut CheckReport, line: usize, msg: String| {
        r.error_count += 1;
        if r.errors.len() < MAX_ERRORS {
            r.errors.push(format!("line {line}: {msg}"));
        }
    };
    let mut ids = BTreeSet::new();
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        r.records += 1;
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                err(&mut r, ln, format!("not JSON: {e}"));
                continue;
            }
        };
        let fmt = if v.get("text_output").is_some() {
            Format::Dift
        } else {
            Format::Rl
        };
        match r.format {
            None => r.format = Some(fmt),
            Some(f) if f != fmt => err(&mut r, ln, "mixes DIFT and 4DRL records".into()),
            _ => {}
        }
        if let Some(id) = v.get("id").and_then(|x| x.as_str()) {
            if !ids.insert(id.to_string()) {
                err(&mut r, ln, format!("duplicate id {id:?}"));
            }
        } else if fmt == Format::Dift {
            err(&mut r, ln, "missing string field `id`".into());
        }
        let str_list = |key: &str| -> std::result::Result<Vec<String>, String> {
            v.get(key)
                .and_then(|x| x.as_array())
                .ok_or_else(|| format!("missing list field `{key}`"))?
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`{key}` holds a non-string"))
                })
                .collect()
        };
        let check_paths = |r: &mut CheckReport, key: &str, ln: usize| -> usize {
            match str_list(key) {
                Ok(paths) => {
                    for p in &paths {
                        r.images_checked += 1;
                        if resolve(p, &base).is_none() {
                            err(r, ln, format!("`{key}` path {p:?} does not exist"));
                        }
                    }
                    paths.len()
                }
                Err(e) => {
                    err(r, ln, e);
                    0
                }
            }
        };
        let (options, letter, label, kind) = match fmt {
            Format::Dift => {
                if check_paths(&mut r, "image_input", ln) == 0 {
                    err(&mut r, ln, "`image_input` is empty".into());
                }
                let n_out = check_paths(&mut r, "image_output", ln);
                let (Some(ti), Some(to)) = (
                    v.get("text_input").and_then(|x| x.as_str()),
                    v.get("text_output").and_then(|x| x.as_str()),
                ) else {
                    err(
                        &mut r,
                        ln,
                        "missing string fields `text_input`/`text_output`".into(),
                    );
                    continue;
                };
                let options = match dift_options(ti) {
                    Ok((_, o)) => o,
                    Err(e) => {
                        err(&mut r, ln, e);
                        continue;
                    }
                };
                let (letter, label) = match validate(to, n_out) {
                    Ok((Some(letter), label)) => (letter, label),
                    // A label answer: its letter is the option it names.
                    Ok((None, label)) => match options.iter().position(|o| *o == label) {
                        Some(i) => (LETTERS[i], label),
                        None => {
                            err(&mut r, ln, format!("text_output: answer {label:?} is none of the options {options:?}"));
                            continue;
                        }
                    },
                    Err(e) => {
                        err(&mut r, ln, format!("text_output: {e}"));
                        continue;
                    }
                };
                let kind = v
                    .get("id")
                    .and_then(|x| x.as_str())
                    .and_then(|id| id.rsplit_once('#'))
                    .map(|(_, k)| k.split('-').next().unwrap_or("").to_string())
                    .unwrap_or_else(|| "all".into());
                (options, letter, label, kind)
            }
            Format::Rl => {
                if check_paths(&mut r, "frame_paths", ln) == 0 {
                    err(&mut r, ln, "`frame_paths` is empty".into());
                }
                if v.get("Question")
                    .and_then(|x| x.as_str())
                    .is_none_or(|q| q.trim().is_empty())
                {
                    err(&mut r, ln, "missing or empty `Question`".into());
                }
                let mut options = Vec::new();
                for l in LETTERS {
                    match v.get(l.to_string()).and_then(|x| x.as_str()) {
                        Some(o) if !o.trim().is_empty() => options.push(o.to_string()),
                        _ => err(&mut r, ln, format!("missing or empty option `{l}`")),
                    }
                }
                if options.len() != 4 {
                    continue;
                }
                let letter = match v
                    .get("Correct")
                    .and_then(|x| x.as_str())
                    .and_then(|c| c.trim().chars().next())
                {
                    Some(c) if LETTERS.contains(&c) => c,
                    other => {
                        err(&mut r, ln, format!("`Correct` {other:?} is not A-D"));
                        continue;
                    }
                };
                let kind = v
                    .get("Type")
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_string();
                if kind.is_empty() {
                    err(&mut r, ln, "missing `Type`".into());
                }
                let label = options[(letter as u8 - b'A') as usize].clone();
                (options, letter, label, kind)
            }
        };
        let distinct: BTreeSet<&String> = options.iter().collect();
        if distinct.len() != 4 {
            err(
                &mut r,
                ln,
                format!("options are not four distinct labels: {options:?}"),
            );
        }
        let idx = (letter as u8 - b'A') as usize;
        if options[idx] != label {
            err(
                &mut r,
                ln,
                format!(
                    "answer {letter}. {label:?} but option {letter} is {:?}",
                    options[idx]
                ),
            );
        }
        *r.letters.entry(letter.to_string()).or_default() += 1;
        *r.labels.entry(kind).or_default().entry(label).or_default() += 1;
        items.push((options, idx));
    }
    if r.records == 0 {
        err(&mut r, 0, "the file has no records".into());
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
        let r = check_file(&write(&dir, "good.jsonl", std::slice::from_ref(&good))).unwrap();
        assert!(r.ok(), "{}", r.render());
        assert_eq!(r.labels["direction"]["Moving Left"], 1);
        // A label answer counts as the option it names.
        let mut named = good.clone();
        named["text_output"] = "<think>\nI picture it from <output_image> to <output_image>. It shifts left.\n</think>\n<answer>\nMoving Left\n</answer>".into();
        let r = check_file(&write(&dir, "named.jsonl", &[named])).unwrap();
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
            let r = check_file(&write(&dir, "bad.jsonl", &[v])).unwrap();
            assert!(
                !r.ok() && r.errors.iter().any(|e| e.contains(want)),
                "{want}: {}",
                r.render()
            );
        }
        let dup = check_file(&write(&dir, "dup.jsonl", &[good.clone(), good])).unwrap();
        assert!(dup.errors.iter().any(|e| e.contains("duplicate id")));
        let empty = check_file(&write(&dir, "empty.jsonl", &[])).unwrap();
        assert!(!empty.ok() && empty.errors[0].contains("no records"));
    }
}
