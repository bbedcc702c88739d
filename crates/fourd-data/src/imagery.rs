//! Stage 2d, helper imagery: the tracked mask drawn on keyframes the way the reference draws it
//! (`preprocess.md` §8.2: inside the mask `0.6·pixel + 0.4·red`, and a 2-px red contour along the
//! mask's outer boundary), and the static landmark that camera questions track.
//!
//! The reference segments a named static object with SAM3 for camera questions. Here the
//! landmark comes from geometry: a well-textured patch of static background (no moving-object
//! pixels, valid depth) is chosen in the segment's first frame, and its mask in every other
//! keyframe is found by back-projecting that frame's pixels with their depth, moving them into
//! the first frame with the two poses and testing whether they land inside the patch (with a
//! depth check, so occluded pixels are not marked). No model is involved, so the landmark can
//! neither drift to another object nor be hallucinated.

use fourd_world::glam::DVec3;
use image::RgbImage;

use crate::masks::Mask;
use crate::object_motion::{w2c, Pinhole};

const RED: [f64; 3] = [255.0, 0.0, 0.0];

/// The reference overlay: red tint (alpha 0.4) inside the mask, 2-px red contour on its outer
/// boundary (the mask's boundary pixels plus one pixel outside, like OpenCV's thickness-2
/// contour centred on the boundary).
pub fn overlay(frame: &RgbImage, mask: &Mask) -> RgbImage {
    let (w, h) = frame.dimensions();
    let mut out = frame.clone();
    let inside = |x: i64, y: i64| {
        x >= 0 && y >= 0 && x < w as i64 && y < h as i64 && mask.get(x as u32, y as u32)
    };
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let here = inside(x, y);
            let n4 = [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)];
            let boundary_in = here && n4.iter().any(|&(a, b)| !inside(a, b));
            let boundary_out = !here
                && n4.iter().any(|&(a, b)| {
                    inside(a, b)
                        && [(a - 1, b), (a + 1, b), (a, b - 1), (a, b + 1)]
                            .iter()
                            .any(|&(c, d)| !inside(c, d))
                });
            let p = out.get_pixel_mut(x as u32, y as u32);
            if boundary_in || boundary_out {
                *p = image::Rgb([255, 0, 0]);
            } else if here {
                for (v, red) in p.0.iter_mut().zip(RED) {
                    *v = (0.6 * *v as f64 + 0.4 * red).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    out
}

/// `count` keyframes spread evenly over the frames in `candidates` (sorted), always including the
/// first and the last (the reference keeps first and last and spaces the interior evenly).
pub fn spread_keyframes(candidates: &[usize], count: usize) -> Vec<usize> {
    if candidates.len() <= count {
        return candidates.to_vec();
    }
    let last = candidates.len() - 1;
    let mut out: Vec<usize> = (0..count)
        .map(|i| candidates[(i * last + (count - 1) / 2) / (count - 1).max(1)])
        .collect();
    out[0] = candidates[0];
    out[count - 1] = candidates[last];
    out.dedup();
    out
}

/// A static landmark patch in frame `a`, and its mask in every frame of `frames`.
///
/// `depth` is the `[N, H, W]` stack, `dynamic[t]` the union of moving-object masks in frame `t`
/// (excluded from the patch). Returns `None` when no patch with enough static, depth-valid
/// pixels exists or it is not visible in some keyframe.
pub fn landmark_masks(
    image_a: &RgbImage,
    a: usize,
    frames: &[usize],
    depth: &[f32],
    poses: &[[f64; 7]],
    k: &Pinhole,
    dynamic: &[Option<Mask>],
) -> Option<Vec<Mask>> {
    let (w, h) = image_a.dimensions();
    let px = (w * h) as usize;
    let depth_at = |t: usize, x: u32, y: u32| -> Option<f64> {
        let z = *depth.get(t * px + (y * w + x) as usize)? as f64;
        (z.is_finite() && z > 0.0).then_some(z)
    };
    let is_dynamic = |t: usize, x: u32, y: u32| {
        dynamic
            .get(t)
            .and_then(|m| m.as_ref())
            .is_some_and(|m| m.get(x, y))
    };
    let luma = |x: u32, y: u32| {
        let p = image_a.get_pixel(x, y).0;
        0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
    };
    // Candidate patches: a quarter of each side, on a grid of eighths, kept away from the border so
    // the patch stays in view under moderate camera motion.
    let (bw, bh) = ((w / 4).max(2), (h / 4).max(2));
    let mut best: Option<(f64, u32, u32)> = None;
    for gy in 1..6u32 {
        for gx in 1..6u32 {
            let (x0, y0) = (gx * w / 8, gy * h / 8);
            if x0 + bw >= w || y0 + bh >= h {
                continue;
            }
            let (mut energy, mut valid) = (0.0, 0usize);
            for y in y0..y0 + bh {
                for x in x0..x0 + bw {
                    if is_dynamic(a, x, y) || depth_at(a, x, y).is_none() {
                        continue;
                    }
                    valid += 1;
                    if x + 1 < w && y + 1 < h {
                        energy += (luma(x + 1, y) - luma(x, y)).abs()
                            + (luma(x, y + 1) - luma(x, y)).abs();
                    }
                }
            }
            if (valid as f64) < 0.8 * (bw * bh) as f64 {
                continue;
            }
            // Prefer texture (a landmark one can follow), then the centre (stays in view).
            let centre = 1.0 - ((gx as f64 - 3.0).abs() + (gy as f64 - 3.0).abs()) / 8.0;
            let score = energy / valid as f64 + centre;
            if best.is_none_or(|b| score > b.0) {
                best = Some((score, x0, y0));
            }
        }
    }
    let (_, x0, y0) = best?;
    let in_patch = |x: u32, y: u32| {
        x >= x0
            && x < x0 + bw
            && y >= y0
            && y < y0 + bh
            && !is_dynamic(a, x, y)
            && depth_at(a, x, y).is_some()
    };
    let (ra, ta) = w2c(&poses[a]);
    let mut out = Vec::with_capacity(frames.len());
    for &f in frames {
        if f == a {
            out.push(Mask::new(
                w,
                h,
                (0..px)
                    .map(|i| in_patch(i as u32 % w, i as u32 / w))
                    .collect(),
            ));
            continue;
        }
        let (rf, tf) = w2c(&poses[f]);
        let mut bits = vec![false; px];
        for y in 0..h {
            for x in 0..w {
                let Some(z) = depth_at(f, x, y) else { continue };
                if is_dynamic(f, x, y) {
                    continue;
                }
                let p_world = rf.transpose() * (k.back_project(x as f64, y as f64, z) - tf);
                let p_a: DVec3 = ra * p_world + ta;
                let Some((u, v)) = k.project(p_a) else {
                    continue;
                };
                let (ui, vi) = (u.round(), v.round());
                if ui < 0.0 || vi < 0.0 || ui >= w as f64 || vi >= h as f64 {
                    continue;
                }
                let (ui, vi) = (ui as u32, vi as u32);
                // The point must be the surface frame `a` saw there, not something behind it.
                let visible_in_a =
                    depth_at(a, ui, vi).is_some_and(|za| (za - p_a.z).abs() <= 0.05 * za);
                bits[(y * w + x) as usize] = visible_in_a && in_patch(ui, vi);
            }
        }
        let m = Mask::new(w, h, bits);
        if m.area() * 4 < out.first().map_or(1, |m0: &Mask| m0.area()) {
            // Less than a quarter of the patch still visible: not a usable landmark.
            return None;
        }
        out.push(m);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_tints_and_outlines() {
        let frame = RgbImage::from_pixel(10, 10, image::Rgb([0, 0, 200]));
        let mask = Mask::new(
            10,
            10,
            (0..100)
                .map(|i| (3..7).contains(&(i % 10)) && (3..7).contains(&(i / 10)))
                .collect(),
        );
        let o = overlay(&frame, &mask);
        assert_eq!(o.get_pixel(0, 0).0, [0, 0, 200], "outside untouched");
        assert_eq!(
            o.get_pixel(3, 3).0,
            [255, 0, 0],
            "boundary inside is contour"
        );
        assert_eq!(
            o.get_pixel(2, 4).0,
            [255, 0, 0],
            "one pixel outside is contour"
        );
        assert_eq!(
            o.get_pixel(4, 4).0,
            [102, 0, 120],
            "interior is 0.6 pixel + 0.4 red"
        );
        assert_eq!(
            spread_keyframes(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 4),
            vec![0, 3, 6, 9]
        );
        assert_eq!(spread_keyframes(&[2, 5], 4), vec![2, 5]);
    }
}
