//! Stage 2b, objects and masks: the [`Segmenter`] interface and its backends.
//!
//! | backend | source | objects |
//! |---|---|---|
//! | [`DynMasksSegmenter`] | SpatialVID's `dyn_masks.npz` (sparse per-frame CSR members, or a dense `dyn_masks` `[N, H, W]`) | connected components of the moving-pixel mask, linked frame to frame by overlap |
//! | [`InstanceSegmenter`] | `instance_ids.npy` (`fourd synth`; object `k` is `ids == k`) | one per id, named from `truth.json` ("red sphere") when present, else by measured colour |
//! | [`MaskDirSegmenter`] | masks produced elsewhere: `<root>/<group>/<clip>/<object>/frame_XXXX[_mask].{npy,png}` | one per object folder, named after it |
//! | `HttpSegmenter` (`api` module) | an HTTP service (frames + text prompt -> one mask per frame) | one per prompt |
//!
//! Masks whose size differs from the frames are resized (nearest neighbour) when the aspect
//! ratio matches within 2% (SpatialVID stores some annotations at a reduced resolution);
//! otherwise the clip fails with a message naming the file and both sizes.

use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage};

use crate::arrays::{read_file, read_u16, read_u8};
use crate::error::{DataError, Result};
use crate::ingest::IngestRecord;

/// A binary mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    /// Row-major, `true` inside.
    pub bits: Vec<bool>,
}

impl Mask {
    pub fn new(width: u32, height: u32, bits: Vec<bool>) -> Self {
        debug_assert_eq!(bits.len(), (width * height) as usize);
        Self {
            width,
            height,
            bits,
        }
    }
    pub fn get(&self, x: u32, y: u32) -> bool {
        x < self.width && y < self.height && self.bits[(y * self.width + x) as usize]
    }
    pub fn area(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }
    /// Inclusive `[x1, y1, x2, y2]`, `None` when empty.
    pub fn bbox(&self) -> Option<[u32; 4]> {
        let mut b: Option<[u32; 4]> = None;
        for (i, _) in self.bits.iter().enumerate().filter(|(_, &v)| v) {
            let (x, y) = (i as u32 % self.width, i as u32 / self.width);
            b = Some(match b {
                None => [x, y, x, y],
                Some([x1, y1, x2, y2]) => [x1.min(x), y1.min(y), x2.max(x), y2.max(y)],
            });
        }
        b
    }
    /// Mean pixel position `(u, v)`, `None` when empty.
    pub fn centroid(&self) -> Option<(f64, f64)> {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0usize);
        for (i, _) in self.bits.iter().enumerate().filter(|(_, &v)| v) {
            sx += (i as u32 % self.width) as f64;
            sy += (i as u32 / self.width) as f64;
            n += 1;
        }
        (n > 0).then(|| (sx / n as f64, sy / n as f64))
    }
    /// Whether the mask touches the image border (the object may be cut off).
    pub fn touches_border(&self) -> bool {
        self.bbox().is_some_and(|[x1, y1, x2, y2]| {
            x1 == 0 || y1 == 0 || x2 + 1 >= self.width || y2 + 1 >= self.height
        })
    }
    pub fn iou(&self, other: &Mask) -> f64 {
        let (mut inter, mut union) = (0usize, 0usize);
        for (a, b) in self.bits.iter().zip(&other.bits) {
            inter += (*a && *b) as usize;
            union += (*a || *b) as usize;
        }
        if union == 0 {
            0.0
        } else {
            inter as f64 / union as f64
        }
    }
    /// A 0/255 grey image (the HTTP protocol's and the mask folders' PNG form).
    pub fn to_gray(&self) -> GrayImage {
        GrayImage::from_fn(self.width, self.height, |x, y| {
            image::Luma([if self.get(x, y) { 255 } else { 0 }])
        })
    }
    /// From a grey image: above 127 is inside (the reference's binarisation).
    pub fn from_gray(img: &GrayImage) -> Self {
        Self::new(
            img.width(),
            img.height(),
            img.pixels().map(|p| p.0[0] > 127).collect(),
        )
    }
    /// Nearest-neighbour resize.
    pub fn resized(&self, width: u32, height: u32) -> Self {
        let bits = (0..height)
            .flat_map(|y| {
                (0..width).map(move |x| {
                    let sx = ((x as f64 + 0.5) * self.width as f64 / width as f64) as u32;
                    let sy = ((y as f64 + 0.5) * self.height as f64 / height as f64) as u32;
                    (sx.min(self.width - 1), sy.min(self.height - 1))
                })
            })
            .map(|(sx, sy)| self.get(sx, sy))
            .collect();
        Self::new(width, height, bits)
    }
}

/// Brings a mask of size `(mw, mh)` to the frame size, or explains why it cannot.
pub fn fit_mask(mask: Mask, frame: (u32, u32), path: &Path) -> Result<Mask> {
    let (w, h) = frame;
    if (mask.width, mask.height) == (w, h) {
        return Ok(mask);
    }
    let aspect_m = mask.width as f64 / mask.height.max(1) as f64;
    let aspect_f = w as f64 / h.max(1) as f64;
    if mask.width > 0 && mask.height > 0 && (aspect_m / aspect_f - 1.0).abs() <= 0.02 {
        return Ok(mask.resized(w, h));
    }
    Err(DataError::inconsistent(
        path,
        format!("mask is {}x{} but the frames are {w}x{h} (different aspect ratio, so it cannot be a resized copy)", mask.width, mask.height),
    ))
}

/// One object followed through the clip.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedObject {
    /// 1-based, unique within the clip.
    pub track_id: u32,
    /// How questions refer to it ("the red sphere").
    pub name: String,
    /// One entry per annotated frame; `None` where the object is not found.
    pub masks: Vec<Option<Mask>>,
    /// The instance id the track came from (instance backend), for comparisons with `truth.json`.
    pub instance_id: Option<u16>,
}

/// What a segmenter gets: the ingested clip and its decoded frames.
pub struct SegmentInput<'a> {
    pub record: &'a IngestRecord,
    pub frames: &'a [RgbImage],
}

/// A source of per-object masks.
pub trait Segmenter: Send + Sync {
    /// Short name for logs and the manifest.
    fn name(&self) -> String;
    /// The clip's objects. An error fails the clip (with the message as its reason).
    fn segment(&self, input: &SegmentInput) -> Result<Vec<TrackedObject>>;
}

/// Which backend to use; [`SegmenterChoice::Auto`] takes `instance_ids.npy` when the clip has
/// one (synthetic data), else `dyn_masks.npz`. `Custom` plugs in any implementation (the HTTP
/// segmenter, or a test double).
#[derive(Clone, Default)]
pub enum SegmenterChoice {
    #[default]
    Auto,
    DynMasks,
    Instances,
    MaskDir(PathBuf),
    Custom(std::sync::Arc<dyn Segmenter>),
}

impl std::fmt::Debug for SegmenterChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SegmenterChoice {
    /// A stable description (part of the label stage's configuration fingerprint).
    pub fn describe(&self) -> String {
        match self {
            Self::Auto => "auto".into(),
            Self::DynMasks => "dyn-masks".into(),
            Self::Instances => "instances".into(),
            Self::MaskDir(p) => format!("mask-dir:{}", p.display()),
            Self::Custom(s) => s.name(),
        }
    }

    /// The backend for one clip.
    pub fn for_clip(&self, record: &IngestRecord) -> std::sync::Arc<dyn Segmenter> {
        use std::sync::Arc;
        match self {
            Self::Auto if record.annotations.join("instance_ids.npy").is_file() => {
                Arc::new(InstanceSegmenter)
            }
            Self::Auto | Self::DynMasks => Arc::new(DynMasksSegmenter::default()),
            Self::Instances => Arc::new(InstanceSegmenter),
            Self::MaskDir(p) => Arc::new(MaskDirSegmenter { root: p.clone() }),
            Self::Custom(s) => s.clone(),
        }
    }
}

/// Colour name of the mean colour of `mask`'s pixels (used to tell objects apart in questions
/// without asking a model; e.g. "red").
pub fn colour_name(frame: &RgbImage, mask: &Mask) -> &'static str {
    let (mut r, mut g, mut b, mut n) = (0.0, 0.0, 0.0, 0.0);
    for (i, _) in mask.bits.iter().enumerate().filter(|(_, &v)| v) {
        let p = frame
            .get_pixel(i as u32 % mask.width, i as u32 / mask.width)
            .0;
        r += p[0] as f64;
        g += p[1] as f64;
        b += p[2] as f64;
        n += 1.0;
    }
    if n == 0.0 {
        return "unseen";
    }
    let (r, g, b) = (r / n / 255.0, g / n / 255.0, b / n / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let sat = if max > 0.0 { (max - min) / max } else { 0.0 };
    if max < 0.2 {
        return "black";
    }
    if sat < 0.2 {
        return if max > 0.8 { "white" } else { "grey" };
    }
    let d = max - min;
    let hue = if max == r {
        60.0 * (((g - b) / d).rem_euclid(6.0))
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    match hue {
        h if h < 15.0 => "red",
        h if h < 40.0 => {
            if max < 0.6 {
                "brown"
            } else {
                "orange"
            }
        }
        h if h < 70.0 => "yellow",
        h if h < 160.0 => "green",
        h if h < 200.0 => "cyan",
        h if h < 255.0 => "blue",
        h if h < 290.0 => "purple",
        h if h < 340.0 => "pink",
        _ => "red",
    }
}

/// Gives duplicate names an ordinal from left to right in their first frame ("the left red
/// box", ...), so every name in a clip picks out one object.
pub fn disambiguate_names(objects: &mut [TrackedObject]) {
    let names: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
    for name in names.iter().collect::<std::collections::BTreeSet<_>>() {
        let mut same: Vec<(f64, usize)> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| &o.name == name)
            .map(|(i, o)| {
                (
                    o.masks
                        .iter()
                        .flatten()
                        .next()
                        .and_then(|m| m.centroid())
                        .map_or(0.0, |c| c.0),
                    i,
                )
            })
            .collect();
        if same.len() < 2 {
            continue;
        }
        same.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ordinals = [
            "leftmost",
            "second from the left",
            "third from the left",
            "fourth from the left",
        ];
        for (rank, (_, i)) in same.iter().enumerate() {
            let ord = ordinals.get(rank).copied().unwrap_or("next");
            objects[*i].name = format!("{ord} {name}");
        }
    }
}

fn check_stack(path: &Path, n: usize, h: usize, w: usize, record: &IngestRecord) -> Result<()> {
    if n != record.frames.len() {
        return Err(DataError::inconsistent(
            path,
            format!("{n} masks for {} annotated frames", record.frames.len()),
        ));
    }
    if w == 0 || h == 0 {
        return Err(DataError::malformed(
            path,
            format!("empty mask size {w}x{h}"),
        ));
    }
    Ok(())
}

/// 8-connected components with at least `min_area` pixels.
pub fn components(mask: &Mask, min_area: usize) -> Vec<Mask> {
    let (w, h) = (mask.width as i64, mask.height as i64);
    let mut label = vec![0u32; mask.bits.len()];
    let mut out = Vec::new();
    let mut next = 0u32;
    for start in 0..mask.bits.len() {
        if !mask.bits[start] || label[start] != 0 {
            continue;
        }
        next += 1;
        let mut stack = vec![start];
        let mut members = Vec::new();
        label[start] = next;
        while let Some(i) = stack.pop() {
            members.push(i);
            let (x, y) = (i as i64 % w, i as i64 / w);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w || ny >= h {
                        continue;
                    }
                    let j = (ny * w + nx) as usize;
                    if mask.bits[j] && label[j] == 0 {
                        label[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
        if members.len() >= min_area {
            let mut bits = vec![false; mask.bits.len()];
            for i in members {
                bits[i] = true;
            }
            out.push(Mask::new(mask.width, mask.height, bits));
        }
    }
    out
}

/// Links per-frame components into tracks: each component joins the live track whose latest
/// mask it overlaps most (IoU > 0, greedy, best pairs first) or, failing that, whose latest
/// centroid is nearest within `gate_px`; otherwise it starts a new track.
pub fn link_components(per_frame: Vec<Vec<Mask>>, gate_px: f64) -> Vec<Vec<Option<Mask>>> {
    let n = per_frame.len();
    let mut tracks: Vec<Vec<Option<Mask>>> = Vec::new();
    for (t, comps) in per_frame.into_iter().enumerate() {
        let last: Vec<Option<Mask>> = tracks
            .iter()
            .map(|tr| tr[..t].iter().rev().flatten().next().cloned())
            .collect();
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (ci, c) in comps.iter().enumerate() {
            let cc = c.centroid().unwrap_or((0.0, 0.0));
            for (ti, l) in last.iter().enumerate() {
                let Some(l) = l else { continue };
                let iou = c.iou(l);
                let lc = l.centroid().unwrap_or((0.0, 0.0));
                let dist = ((cc.0 - lc.0).powi(2) + (cc.1 - lc.1).powi(2)).sqrt();
                // Overlap first (score above 1), then proximity.
                let score = if iou > 0.0 {
                    1.0 + iou
                } else if dist <= gate_px {
                    1.0 - dist / gate_px.max(1e-9)
                } else {
                    continue;
                };
                pairs.push((score, ci, ti));
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut used_c = vec![false; comps.len()];
        let mut used_t = vec![false; tracks.len()];
        let mut assign: Vec<Option<usize>> = vec![None; comps.len()];
        for (_, ci, ti) in pairs {
            if !used_c[ci] && !used_t[ti] {
                used_c[ci] = true;
                used_t[ti] = true;
                assign[ci] = Some(ti);
            }
        }
        for (ci, c) in comps.into_iter().enumerate() {
            match assign[ci] {
                Some(ti) => tracks[ti][t] = Some(c),
                None => {
                    let mut tr = vec![None; n];
                    tr[t] = Some(c);
                    tracks.push(tr);
                }
            }
        }
    }
    tracks
}

/// SpatialVID's `dyn_masks.npz`: moving pixels of all objects in one mask per frame, split
/// into objects by connected components and linked across frames.
#[derive(Debug, Clone)]
pub struct DynMasksSegmenter {
    /// Components smaller than this fraction of the frame are noise (the reference's 0.1%
    /// area gate).
    pub min_area_fraction: f64,
}

impl Default for DynMasksSegmenter {
    fn default() -> Self {
        Self {
            min_area_fraction: 0.001,
        }
    }
}

impl Segmenter for DynMasksSegmenter {
    fn name(&self) -> String {
        "dyn-masks".into()
    }
    fn segment(&self, input: &SegmentInput) -> Result<Vec<TrackedObject>> {
        let r = input.record;
        let path = r.annotations.join("dyn_masks.npz");
        let stack = crate::arrays::read_dyn_masks(&path)?;
        let (n, h, w) = stack.dims3(&path)?;
        check_stack(&path, n, h, w, r)?;
        let px = w * h;
        let min_area =
            ((self.min_area_fraction * (r.width * r.height) as f64).ceil() as usize).max(1);
        let mut per_frame = Vec::with_capacity(n);
        for t in 0..n {
            let m = Mask::new(
                w as u32,
                h as u32,
                stack.data[t * px..(t + 1) * px]
                    .iter()
                    .map(|&v| v != 0)
                    .collect(),
            );
            let m = fit_mask(m, (r.width, r.height), &path)?;
            per_frame.push(components(&m, min_area));
        }
        let gate = 0.15 * ((r.width as f64).powi(2) + (r.height as f64).powi(2)).sqrt();
        let mut objects: Vec<TrackedObject> = link_components(per_frame, gate)
            .into_iter()
            .enumerate()
            .map(|(i, masks)| {
                let first = masks.iter().position(Option::is_some);
                let colour = first
                    .and_then(|t| masks[t].as_ref().map(|m| colour_name(&input.frames[t], m)))
                    .unwrap_or("unseen");
                TrackedObject {
                    track_id: i as u32 + 1,
                    name: format!("{colour} object"),
                    masks,
                    instance_id: None,
                }
            })
            .collect();
        disambiguate_names(&mut objects);
        Ok(objects)
    }
}

/// `instance_ids.npy` (uint16 `[N, H, W]`, 0 = background), as `fourd synth` writes it.
#[derive(Debug, Clone, Default)]
pub struct InstanceSegmenter;

impl Segmenter for InstanceSegmenter {
    fn name(&self) -> String {
        "instances".into()
    }
    fn segment(&self, input: &SegmentInput) -> Result<Vec<TrackedObject>> {
        let r = input.record;
        let path = r.annotations.join("instance_ids.npy");
        let ids = read_u16(&read_file(&path)?, &path)?;
        let (n, h, w) = ids.dims3(&path)?;
        check_stack(&path, n, h, w, r)?;
        if (w as u32, h as u32) != (r.width, r.height) {
            return Err(DataError::inconsistent(
                &path,
                format!(
                    "ids are {w}x{h} but the frames are {}x{}",
                    r.width, r.height
                ),
            ));
        }
        // Names from truth.json when present (colour and shape, never motion).
        let truth_path = r.annotations.join("truth.json");
        let names: std::collections::BTreeMap<u64, String> = if truth_path.is_file() {
            let v: serde_json::Value = crate::fsio::read_json(&truth_path)?;
            v["objects"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|o| Some((o["id"].as_u64()?, o["name"].as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let mut present: Vec<u16> = ids.data.iter().copied().filter(|&v| v != 0).collect();
        present.sort_unstable();
        present.dedup();
        let px = w * h;
        let mut objects: Vec<TrackedObject> = present
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let masks: Vec<Option<Mask>> = (0..n)
                    .map(|t| {
                        let bits: Vec<bool> = ids.data[t * px..(t + 1) * px]
                            .iter()
                            .map(|&v| v == id)
                            .collect();
                        bits.iter()
                            .any(|&b| b)
                            .then(|| Mask::new(w as u32, h as u32, bits))
                    })
                    .collect();
                // truth.json's name ("red sphere") when there is one, else the measured colour.
                let name = names.get(&(id as u64)).cloned().unwrap_or_else(|| {
                    let first = masks.iter().position(Option::is_some);
                    let colour = first
                        .and_then(|t| masks[t].as_ref().map(|m| colour_name(&input.frames[t], m)))
                        .unwrap_or("unseen");
                    format!("{colour} object")
                });
                TrackedObject {
                    track_id: i as u32 + 1,
                    name,
                    masks,
                    instance_id: Some(id),
                }
            })
            .collect();
        disambiguate_names(&mut objects);
        Ok(objects)
    }
}

/// Mask folders produced by another tool: `<root>/<group>/<clip>/<object name>/` holding one
/// mask per annotated frame, named after the frame (`frame_0003.npy`, `frame_0003_mask.npy` —
/// both of the reference's spellings — or `.png`); a missing file means "not visible".
#[derive(Debug, Clone)]
pub struct MaskDirSegmenter {
    pub root: PathBuf,
}

fn load_mask_file(path: &Path) -> Result<Mask> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        let img = image::open(path).map_err(|e| DataError::Image {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        return Ok(Mask::from_gray(&img.to_luma8()));
    }
    let a = read_u8(&read_file(path)?, path)?;
    let (h, w) = match a.shape.as_slice() {
        [h, w] | [1, h, w] => (*h, *w),
        s => {
            return Err(DataError::malformed(
                path,
                format!("expected a 2-D [H, W] mask, got shape {s:?}"),
            ))
        }
    };
    Ok(Mask::new(
        w as u32,
        h as u32,
        a.data.iter().map(|&v| v != 0).collect(),
    ))
}

impl Segmenter for MaskDirSegmenter {
    fn name(&self) -> String {
        format!("mask-dir:{}", self.root.display())
    }
    fn segment(&self, input: &SegmentInput) -> Result<Vec<TrackedObject>> {
        let r = input.record;
        let dir = self.root.join(&r.group).join(&r.clip);
        if !dir.is_dir() {
            return Err(DataError::Missing { path: dir });
        }
        let mut object_dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| DataError::io(&dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        object_dirs.sort();
        let mut objects = Vec::new();
        for (i, od) in object_dirs.iter().enumerate() {
            let mut masks = Vec::with_capacity(r.frames.len());
            for f in &r.frames {
                let stem = Path::new(f)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let candidates = ["npy", "png"].iter().flat_map(|ext| {
                    [
                        od.join(format!("{stem}.{ext}")),
                        od.join(format!("{stem}_mask.{ext}")),
                    ]
                });
                let found = candidates.into_iter().find(|p| p.is_file());
                masks.push(match found {
                    Some(p) => {
                        let m = fit_mask(load_mask_file(&p)?, (r.width, r.height), &p)?;
                        (m.area() > 0).then_some(m)
                    }
                    None => None,
                });
            }
            let name = od
                .file_name()
                .map(|n| n.to_string_lossy().replace('_', " "))
                .unwrap_or_default();
            objects.push(TrackedObject {
                track_id: i as u32 + 1,
                name,
                masks,
                instance_id: None,
            });
        }
        disambiguate_names(&mut objects);
        Ok(objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(w: u32, h: u32, x0: u32, y0: u32, s: u32) -> Mask {
        Mask::new(
            w,
            h,
            (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    x >= x0 && x < x0 + s && y >= y0 && y < y0 + s
                })
                .collect(),
        )
    }

    #[test]
    fn components_and_tracks() {
        let a = square(32, 32, 2, 2, 4);
        let b = square(32, 32, 20, 20, 5);
        let mut both = a.clone();
        for (i, v) in b.bits.iter().enumerate() {
            both.bits[i] |= v;
        }
        let c = components(&both, 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.iter().map(Mask::area).collect::<Vec<_>>(), vec![16, 25]);
        // Two objects moving one pixel per frame stay two tracks.
        let frames: Vec<Vec<Mask>> = (0..5)
            .map(|t| vec![square(32, 32, 2 + t, 2, 4), square(32, 32, 20, 20 - t, 5)])
            .collect();
        let tracks = link_components(frames, 8.0);
        assert_eq!(tracks.len(), 2);
        assert!(tracks.iter().all(|t| t.iter().all(Option::is_some)));
        assert_eq!(a.bbox(), Some([2, 2, 5, 5]));
        assert_eq!(a.centroid(), Some((3.5, 3.5)));
        assert!(fit_mask(square(16, 16, 0, 0, 2), (32, 32), Path::new("m")).is_ok());
        let err = fit_mask(square(16, 8, 0, 0, 2), (32, 32), Path::new("m.npy"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("16x8") && err.contains("m.npy"), "{err}");
    }

    #[test]
    fn colour_names() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([230, 40, 30]));
        assert_eq!(colour_name(&img, &square(4, 4, 0, 0, 2)), "red");
        let img = RgbImage::from_pixel(4, 4, image::Rgb([40, 60, 220]));
        assert_eq!(colour_name(&img, &square(4, 4, 0, 0, 2)), "blue");
    }
}
