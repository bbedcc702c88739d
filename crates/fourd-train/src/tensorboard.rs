//! TensorBoard event files (`events.out.tfevents.*`) with scalar summaries.
//!
//! The format is a sequence of TFRecords (`u64` length, masked CRC32C of the length, payload,
//! masked CRC32C of the payload) whose payloads are `tensorflow.Event` protobufs. Only the few
//! fields scalars need are encoded, by hand: `Event{wall_time=1, step=2, file_version=3,
//! summary=5, session_log=6}`, `Summary{value=1}`, `Summary.Value{tag=1, simple_value=2}`,
//! `SessionLog{status=1}`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// `SessionLog.SessionStatus.START`.
const SESSION_START: u64 = 1;

pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates a new event file in `dir` (created if needed). Each run appends its own file, as
    /// TensorBoard expects; a resumed run therefore continues the curves in a second file.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let path = dir.join(format!(
            "events.out.tfevents.{}.{}.{}",
            now.as_secs(),
            host,
            std::process::id()
        ));
        let file = File::create(&path).map_err(|e| TrainError::io(&path, e))?;
        let mut w = EventWriter { file, path };
        let mut ev = Vec::new();
        put_double(&mut ev, 1, wall_time());
        put_bytes(&mut ev, 3, b"brain.Event:2");
        w.write_record(&ev)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks a restart at `step` (TensorBoard's `SessionLog.START`): TensorBoard then drops the
    /// points earlier files logged at `step` or later, so a resumed run's curves do not show
    /// the steps it repeats twice.
    pub fn restart_at(&mut self, step: u64) -> Result<()> {
        let mut session_log = Vec::new();
        put_varint_field(&mut session_log, 1, SESSION_START);
        let mut ev = Vec::new();
        put_double(&mut ev, 1, wall_time());
        put_varint_field(&mut ev, 2, step);
        put_bytes(&mut ev, 6, &session_log);
        self.write_record(&ev)?;
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))
    }

    /// Logs scalars at `step` and flushes, so a crash loses nothing already logged.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, v) in values {
            let mut value = Vec::new();
            put_bytes(&mut value, 1, tag.as_bytes());
            put_float(&mut value, 2, *v as f32);
            put_bytes(&mut summary, 1, &value);
        }
        let mut ev = Vec::new();
        put_double(&mut ev, 1, wall_time());
        put_varint_field(&mut ev, 2, step);
        put_bytes(&mut ev, 5, &summary);
        self.write_record(&ev)?;
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))
    }

    fn write_record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut buf = Vec::with_capacity(data.len() + 16);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(&masked_crc(&len).to_le_bytes());
        buf.extend_from_slice(data);
        buf.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file
            .write_all(&buf)
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// TFRecord's CRC: CRC32C rotated and offset so that CRCs of CRCs stay well distributed.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282ead8)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(buf, (field as u64) << 3);
    put_varint(buf, v);
}

fn put_double(buf: &mut Vec<u8>, field: u32, v: f64) {
    put_varint(buf, ((field as u64) << 3) | 1);
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_float(buf: &mut Vec<u8>, field: u32, v: f32) {
    put_varint(buf, ((field as u64) << 3) | 5);
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, v: &[u8]) {
    put_varint(buf, ((field as u64) << 3) | 2);
    put_varint(buf, v.len() as u64);
    buf.extend_from_slice(v);
}

/// Reads back the scalars of an event file: `(step, tag, value)`, checking every CRC. Used by
/// tests and by `fourd` to summarise a run.
pub fn read_scalars(path: &Path) -> Result<Vec<(u64, String, f32)>> {
    let data = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = read_records(path, &data)?;
    out.retain(|(_, tag, _)| tag != RESTART_TAG);
    Ok(out)
}

/// Every scalar and restart marker of an event file's bytes, checking every CRC.
fn read_records(path: &Path, data: &[u8]) -> Result<Vec<(u64, String, f32)>> {
    let bad = |m: &str| TrainError::checkpoint(path, format!("not a valid event file: {m}"));
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if i + 12 > data.len() {
            return Err(bad("truncated header"));
        }
        let len_bytes = &data[i..i + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        if u32::from_le_bytes(data[i + 8..i + 12].try_into().expect("4 bytes"))
            != masked_crc(len_bytes)
        {
            return Err(bad("length CRC"));
        }
        let start = i + 12;
        if start + len + 4 > data.len() {
            return Err(bad("truncated record"));
        }
        let payload = &data[start..start + len];
        if u32::from_le_bytes(
            data[start + len..start + len + 4]
                .try_into()
                .expect("4 bytes"),
        ) != masked_crc(payload)
        {
            return Err(bad("payload CRC"));
        }
        parse_event(payload, &mut out).ok_or_else(|| bad("malformed event"))?;
        i = start + len + 4;
    }
    Ok(out)
}

fn get_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Walks one message: calls `f(field, wire_type, bytes_or_value)`.
fn fields<'a>(b: &'a [u8], mut f: impl FnMut(u32, &'a [u8], u64)) -> Option<()> {
    let mut i = 0;
    while i < b.len() {
        let key = get_varint(b, &mut i)?;
        let (field, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => {
                let v = get_varint(b, &mut i)?;
                f(field, &[], v);
            }
            1 => {
                let s = b.get(i..i + 8)?;
                i += 8;
                f(field, s, 0);
            }
            2 => {
                let n = get_varint(b, &mut i)? as usize;
                let s = b.get(i..i + n)?;
                i += n;
                f(field, s, 0);
            }
            5 => {
                let s = b.get(i..i + 4)?;
                i += 4;
                f(field, s, 0);
            }
            _ => return None,
        }
    }
    Some(())
}

/// The scalars of a run folder's event files as TensorBoard shows them: files in the order they
/// were written, and at each restart marker the earlier points from its step on dropped.
pub fn read_run_scalars(dir: &Path) -> Result<Vec<(u64, String, f32)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| TrainError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents."))
        })
        .collect();
    // Names hold the creation second then the host and pid: order by the file's own start.
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let mut out: Vec<(u64, String, f32)> = Vec::new();
    for f in files {
        let data = std::fs::read(&f).map_err(|e| TrainError::io(&f, e))?;
        for (step, tag, value) in read_records(&f, &data)? {
            if tag == RESTART_TAG {
                out.retain(|(s, _, _)| *s < step);
            } else {
                out.push((step, tag, value));
            }
        }
    }
    Ok(out)
}

/// How [`read_records`] reports a restart marker.
const RESTART_TAG: &str = "\u{0}restart";

fn parse_event(b: &[u8], out: &mut Vec<(u64, String, f32)>) -> Option<()> {
    let mut step = 0;
    let mut summary: Option<&[u8]> = None;
    let mut session: Option<&[u8]> = None;
    fields(b, |f, s, v| match f {
        2 => step = v,
        5 => summary = Some(s),
        6 => session = Some(s),
        _ => {}
    })?;
    if let Some(sl) = session {
        let mut status = 0;
        fields(sl, |f, _, v| {
            if f == 1 {
                status = v;
            }
        })?;
        if status == SESSION_START {
            out.push((step, RESTART_TAG.to_string(), f32::NAN));
        }
    }
    if let Some(sm) = summary {
        let mut values = Vec::new();
        fields(sm, |f, s, _| {
            if f == 1 {
                values.push(s);
            }
        })?;
        for val in values {
            let (mut tag, mut x) = (String::new(), f32::NAN);
            fields(val, |f, s, _| match f {
                1 => tag = String::from_utf8_lossy(s).into_owned(),
                2 if s.len() == 4 => x = f32::from_le_bytes(s.try_into().expect("4 bytes")),
                _ => {}
            })?;
            out.push((step, tag, x));
        }
    }
    Some(())
}
