#!/usr/bin/env python3
"""Writes tests/fixtures/spatialvid_release/: a miniature SpatialVID-HQ release, converted from a
small `fourd synth` output, and tests/fixtures/spatialvid_release.expected.json (values for the
Rust tests, all computed here).

    pip install numpy scipy pandas OpenEXR
    python3 tools/reference/make_spatialvid_release_fixture.py [--src /tmp/synth-src] [--fourd BIN]

The input is `fourd synth --out /tmp/synth-src --clips 3 --frames 8 --size 96x64 --seed 3`
(regenerated with --fourd, default target/debug/fourd, when --src does not exist). Needs the
ffmpeg CLI (libx264). Deterministic: two runs give byte-identical files on one machine.

Every file is written the way SpatialVID's own code writes it; `docs/spatialvid-release.md`
(section numbers "§n" below) gives the upstream source lines, cited as in that doc:
[N] = NJU-3DV/SpatialVID @ 5228326, [S] = Stars1233/SpatialVID @ 23840d4, [B] = SpatialVID/base,
[T] = third-party readers of the real files.

Output layout (§0):
    videos/group_0000/<id>.mp4
    annotations/group_0000/<id>/{caption.json, dyn_masks.npz, indexes.txt, instructions.json,
                                 intrinsics.npy, poses.npy}
    depths/group_0000/<id>.zip
    data/train/SpatialVID_HQ_metadata.csv
"""
import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
from scipy.ndimage import gaussian_filter
from scipy.signal import find_peaks
from scipy.sparse import csr_matrix

import Imath
import OpenEXR

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests/fixtures/spatialvid_release"
EXPECTED = REPO / "tests/fixtures/spatialvid_release.expected.json"
SYNTH_ARGS = ["--clips", "3", "--frames", "8", "--size", "96x64", "--seed", "3"]
GROUP = 0

# The released videos run at 10 fps, so [N] utils/extract_frames.py (lines 60-64) keeps every
# int(0.2 * fps) = 2nd frame (§3). Synth frame k becomes video frame 2k; odd video frames repeat
# the previous synth frame.
FPS = 10.0
INTERVAL = int(0.2 * FPS)

# Per-clip non-metric scale s (§1: depth and poses share one arbitrary scale per clip, [N]
# camera_tracking.py lines 68-73 and 263-267; [B] droid.py lines 160-172). Z = 1/(s*depth),
# translations * s.
SCALES = [1.0, 0.5, 2.0]
# Value written where the synth ray hit nothing ("sky"): clip 0 gets 0, the others a negative
# disparity, which upstream's alignment shift can produce ([N] cvd_opt.py lines 385-388; [S]
# utils/read_depth.py comments that negative values are invalid depth).
INVALID_Z = [0.0, -0.01, -0.01]
# The seed-3 synth room is closed (no pixel is +inf), so pixels farther than this along the optical
# axis also count as "nothing hit" (the far corners of the back wall, about 10% of the pixels).
FAR_CUTOFF_M = 12.0

# Filter scores ([T] column names; scoring/*): plausible constants, one row per clip.
SCORES = [
    {"aesthetic score": 5.123, "luminance score": 112.47, "motion score": 3.218, "ocr score": 0.0},
    {"aesthetic score": 4.871, "luminance score": 98.302, "motion score": 5.467, "ocr score": 0.0124},
    {"aesthetic score": 5.342, "luminance score": 121.75, "motion score": 2.684, "ocr score": 0.0031},
]
# caption.json CategoryTag ([N] caption/tagging/inference.py lines 15-51): constants for the room.
CATEGORY_TAG = {
    "sceneType": {"first": "Indoor", "second": "Room"},
    "lighting": "Artificial",
    "timeOfDay": "Unknown",
    "weather": "Unknown",
    "crowdDensity": "None",
}
# A fixed mtime for the EXR temp files, so that the zip member timestamps are reproducible
# (set in main() once TZ is UTC: zipfile stamps members with localtime(mtime)).
ZIP_MTIME = None


# ----------------------------------------------------------------------------------- helpers


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def clip_uuid(name):
    """A deterministic UUID-like id for a synth clip (real ids are UUIDs, §2 `id`)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fourd-synth:seed3:{name}"))


def tracking_grid(w0, h0):
    """[N] camera_tracking.py lines 76-81: scale to ~384*512 pixels, crop top-left to /8 (§1)."""
    h1 = int(h0 * np.sqrt((384 * 512) / (h0 * w0)))
    w1 = int(w0 * np.sqrt((384 * 512) / (h0 * w0)))
    return (w1, h1), (w1 - w1 % 8, h1 - h1 % 8)


def grid_to_video(u, v, w0, h0, w1, h1):
    """Nearest-exact source pixel of grid pixel (u, v): floor((u+0.5)*w0/w1), like
    F.interpolate(mode="nearest-exact") in [N] camera_tracking.py lines 85-89. Exact integer
    arithmetic (no float rounding at the boundaries), clamped like torch."""
    x = min((2 * u + 1) * w0 // (2 * w1), w0 - 1)
    y = min((2 * v + 1) * h0 // (2 * h1), h0 - 1)
    return x, y


# --------------------------------------------------------------- upstream writers, verbatim


def save_depth(path, depths):
    """[N] camera_pose_annotation/cvd_opt/cvd_opt.py lines 39-49, verbatim except for the marked
    os.utime line (z.write stamps each member with the temp file's mtime; pinning it makes the
    zip reproducible)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for index, depth in enumerate(depths):
            height, width = depth.shape
            header = OpenEXR.Header(width, height)
            header["channels"] = {"Z": Imath.Channel(Imath.PixelType(Imath.PixelType.HALF))}
            with tempfile.NamedTemporaryFile(suffix=".exr") as f:
                exr = OpenEXR.OutputFile(f.name, header)
                exr.writePixels({"Z": depth.astype(np.float16).tobytes()})
                exr.close()
                os.utime(f.name, (ZIP_MTIME, ZIP_MTIME))  # not upstream: reproducibility
                z.write(f.name, f"{index:05d}.exr")


def compress(dyn_masks, save_path=None):
    """[N] camera_pose_annotation/dynamic_mask/inference_batch.py lines 26-38, verbatim (§4)."""
    assert save_path.endswith(".npz")
    sparse_matrices_list = [csr_matrix(dyn_mask) for dyn_mask in dyn_masks]
    sparse_matrices = {}
    for i, dyn_mask in enumerate(sparse_matrices_list):
        sparse_matrices[f"f_{i}_data"] = dyn_mask.data
        sparse_matrices[f"f_{i}_indices"] = dyn_mask.indices
        sparse_matrices[f"f_{i}_indptr"] = dyn_mask.indptr
        if i == 0:
            sparse_matrices["shape"] = dyn_mask.shape
    np.savez_compressed(save_path, **sparse_matrices)


# ---------------------------------------------------------------- upstream readers (checks)


def expand(loaded_data):
    """[N] utils/expand_npz.py lines 23-37."""
    num_frames = (len(loaded_data) - 1) // 3
    matrix_shape = loaded_data["shape"]
    mats = []
    for i in range(num_frames):
        m = csr_matrix(
            (loaded_data[f"f_{i}_data"], loaded_data[f"f_{i}_indices"], loaded_data[f"f_{i}_indptr"]),
            shape=matrix_shape,
        )
        mats.append(m)
    return np.stack([m.toarray() for m in mats], axis=0)


def read_depth_z(zip_file_path):
    """[N] utils/read_depth.py lines 1-31 up to (not including) the final `1/Z`: the raw Z maps as
    float32, members in sorted name order, size from dataWindow."""
    out = []
    with zipfile.ZipFile(zip_file_path, "r") as z:
        for name in sorted(z.namelist()):
            with z.open(name) as f:
                exr = OpenEXR.InputFile(f)
                dw = exr.header()["dataWindow"]
                width, height = dw.max.x - dw.min.x + 1, dw.max.y - dw.min.y + 1
                data = np.frombuffer(exr.channels(["Z"])[0], dtype=np.float16).reshape((height, width))
                out.append(data.astype(np.float32))
    return np.array(out)


# ------------------------------------------------- upstream metrics ([N] utils/evaluation.py)
# numpy float32 ports of the torch code (torch is not needed here); the values agree with torch's
# to within float32 rounding of the norm / matmul reductions.


def move_distance(cam_pos):
    """evaluation.py lines 73-88: sum of |t_{i+1} - t_i| over the raw w2c translation rows."""
    total = np.float32(0.0)
    for i in range(len(cam_pos) - 1):
        d = cam_pos[i + 1] - cam_pos[i]
        total = np.float32(total + np.sqrt(np.sum(d * d, dtype=np.float32)))
    val = float(total)
    level = sum(1 for t in [0.08, 0.28, 0.92, 2.41] if val >= t)
    return val, level


def quaternion_multiply(q1, q2):
    """evaluation.py lines 91-108, quaternions (x, y, z, w)."""
    w1, x1, y1, z1 = q1[3], q1[0], q1[1], q1[2]
    w2, x2, y2, z2 = q2[3], q2[0], q2[1], q2[2]
    m = np.array([[w1, -z1, y1, x1], [z1, w1, -x1, y1], [-y1, x1, w1, z1], [-x1, -y1, -z1, w1]], dtype=np.float32)
    return m @ np.array([x2, y2, z2, w2], dtype=np.float32)


def rotation_angle(cam_rotate):
    """evaluation.py lines 111-128: sum of 2*acos(w) of q_{i+1} q_i^-1 (no |w|), radians."""
    total = np.float32(0.0)
    for i in range(len(cam_rotate) - 1):
        q1, q2 = cam_rotate[i], cam_rotate[i + 1]
        q1_inv = np.array([-q1[0], -q1[1], -q1[2], q1[3]], dtype=np.float32)
        w = np.clip(quaternion_multiply(q2, q1_inv)[3], np.float32(-1.0), np.float32(1.0))
        total = np.float32(total + np.float32(2) * np.arccos(w))
    return float(total)


def trajectory_turns(cam_pos, threshold=0.45):
    """evaluation.py lines 131-164: an integer peak count."""
    n = len(cam_pos)
    if n < 3:
        return [], 0
    angles = []
    for t in range(1, n - 1):
        v1 = cam_pos[t] - cam_pos[0]
        v2 = cam_pos[n - 1] - cam_pos[t]
        n1 = np.sqrt(np.sum(v1 * v1, dtype=np.float32))
        n2 = np.sqrt(np.sum(v2 * v2, dtype=np.float32))
        if n1 < 1e-8 or n2 < 1e-8:
            continue
        c = np.clip(np.float32(np.dot(v1, v2)) / np.float32(n1 * n2), np.float32(-1.0), np.float32(1.0))
        angles.append(float(np.arccos(c)))
    angles = gaussian_filter(angles, sigma=5)
    peaks, _ = find_peaks(angles, height=threshold, distance=5)
    peaks_values = [angles[i] for i in peaks]
    max_angle = max(angles)
    if max_angle > threshold and max_angle not in peaks_values:
        peaks_values.append(max_angle)
    return len(peaks_values)


def dynamic_ratio(masks):
    """evaluation.py lines 167-175: mean of masks[::5] (a float32 division in torch)."""
    m = masks[::5]
    return float(np.float32(int(m.sum()) / (m.shape[0] * m.shape[1] * m.shape[2])))


# ------------------------------------------------------------------------------- conversion


def decode_yuv(mp4, w, h):
    """Decoded frames as raw yuv420p (no colour conversion on the way through)."""
    raw = run(["ffmpeg", "-v", "error", "-i", str(mp4), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
              capture_output=True).stdout
    size = w * h * 3 // 2
    assert len(raw) % size == 0
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def encode_mp4(frames, w, h, path):
    """libx264 yuv420p at 10 fps; single-threaded and bitexact so that the bytes are reproducible."""
    run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}",
         "-framerate", str(int(FPS)), "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1",
         "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", str(path)],
        input=b"".join(frames))


def probe_frames(path):
    out = run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
               "stream=nb_read_frames,avg_frame_rate,width,height,codec_name,pix_fmt", "-of", "json", str(path)],
              capture_output=True, text=True).stdout
    return json.loads(out)["streams"][0]


def caption_upstream(ours, truth):
    """caption.json in the schema upstream's code writes (§5): [N] caption/utils/combine.py keys
    CamMotion/SceneDesc (lines 107-122) + OptCamMotion, SceneSummary, MotionTrends, SceneTags,
    ShotImmersion, LLM (lines 17-24), then CategoryTag (caption/tagging/inference.py line 77).
    Our text goes into CamMotion/OptCamMotion (camera) and SceneSummary/SceneDesc (scene)."""
    objects = truth["objects"]
    return {
        "CamMotion": ours["CameraMotion"],
        "SceneDesc": ours["SceneSummary"],
        "OptCamMotion": ours["CameraMotion"],
        "SceneSummary": ours["SceneSummary"],
        "MotionTrends": [f"{o['name']} {o['direction'].lower()}" for o in objects],
        "SceneTags": ["synthetic", "room"] + [o["name"] for o in objects],
        "ShotImmersion": "A fixed-height camera inside a small textured room.",
        "LLM": "",
        "CategoryTag": CATEGORY_TAG,
    }


def convert_clip(c, src_ann, src_vid, w0, h0):
    name = src_vid.stem
    cid = clip_uuid(name)
    s = SCALES[c]
    rel_vid = f"videos/group_{GROUP:04d}/{cid}.mp4"
    rel_ann = f"annotations/group_{GROUP:04d}/{cid}"
    rel_dep = f"depths/group_{GROUP:04d}/{cid}.zip"
    ann = OUT / rel_ann
    ann.mkdir(parents=True)
    (OUT / rel_vid).parent.mkdir(parents=True, exist_ok=True)
    (OUT / rel_dep).parent.mkdir(parents=True, exist_ok=True)

    poses = np.load(src_ann / "poses.npy")
    intr = np.load(src_ann / "intrinsics.npy")
    depth = np.load(src_ann / "depth.npy")
    src_masks = expand(np.load(src_ann / "dyn_masks.npz"))
    truth = json.loads((src_ann / "truth.json").read_text())
    ours_caption = json.loads((src_ann / "caption.json").read_text())
    instructions = json.loads((src_ann / "instructions.json").read_text())
    n = poses.shape[0]
    assert depth.shape == (n, h0, w0) and src_masks.shape == (n, h0, w0) and intr.shape == (n, 4)

    # --- video: 2N-1 frames at 10 fps, frame 2k = synth frame k (§3).
    synth_frames = decode_yuv(src_vid, w0, h0)
    assert len(synth_frames) == n, (src_vid, len(synth_frames))
    video = [synth_frames[i // INTERVAL] for i in range((n - 1) * INTERVAL + 1)]
    num_frames = len(video)
    encode_mp4(video, w0, h0, OUT / rel_vid)
    probe = probe_frames(OUT / rel_vid)
    assert int(probe["nb_read_frames"]) == num_frames and probe["avg_frame_rate"] == "10/1", probe
    # [N] extract_frames.py lines 33-43: keep frame % interval == 0; N = (num_frames-1)//interval+1.
    idx = [f for f in range(num_frames) if f % INTERVAL == 0]
    assert len(idx) == n == (num_frames - 1) // INTERVAL + 1

    # --- indexes.txt: "# total N indexes" then "k frame" ([T] parse_indexes; §3).
    (ann / "indexes.txt").write_text(f"# total {n} indexes\n" + "".join(f"{k} {f}\n" for k, f in enumerate(idx)))

    # --- poses.npy: float32 [N,7] (tx ty tz qx qy qz qw), w2c, lietorch SE3.data saved with np.save
    # ([N] camera_tracking.py line 118; §5). Translations scaled by s (§1).
    out_poses = poses.astype(np.float32).copy()
    out_poses[:, :3] *= np.float32(s)
    # Our synth writer picks each quaternion's sign on its own, so consecutive rows can jump to the
    # other hemisphere (q and -q, the same rotation). DROID's optimised trajectories are continuous,
    # and upstream's rotAngle (evaluation.py lines 111-128, no |w|) would count such a jump as ~2*pi.
    # Keep the written rows sign-continuous (q_k . q_{k-1} >= 0); row 0 is unchanged.
    flipped = []
    for k in range(1, n):
        if np.dot(out_poses[k, 3:], out_poses[k - 1, 3:]) < 0:
            out_poses[k, 3:] = -out_poses[k, 3:]
            flipped.append(k)
    np.save(ann / "poses.npy", out_poses)

    # --- intrinsics.npy: float32 [N,4] after [N] utils/normalize_intrinsics.py lines 32-35:
    # fx/W, fy/H and cx = cy = 0.5 exactly (§5).
    out_intr = intr.astype(np.float32).copy()
    out_intr[:, 2] = 0.5
    out_intr[:, 3] = 0.5
    np.save(ann / "intrinsics.npy", out_intr)

    # --- dyn_masks.npz at video resolution, one per annotated frame (§4). Upstream appends a uint8
    # zeros frame when no segment is accepted ([N] inference_batch.py lines 131 and 148) and a bool
    # logical_or result otherwise (line 176); np.stack (line 181) promotes to uint8 if any frame is
    # empty. Emulated frame by frame.
    frames = [np.zeros((h0, w0), dtype=np.uint8) if not m.any() else m.astype(bool) for m in src_masks]
    masks = np.stack(frames, axis=0)
    compress(masks, str(ann / "dyn_masks.npz"))

    # --- instructions.json: ours are already in the enhanced layout (unit steps t->t+1 on annotated
    # positions, merged; [N] get_instructions_enhanced.py lines 302-313) with upstream's labels;
    # written as line 332 does.
    with open(ann / "instructions.json", "w") as f:
        json.dump(instructions, f, ensure_ascii=False, indent=2)

    # --- caption.json, as combine.py line 159 / tagging/inference.py line 81 write it.
    labels = list(dict.fromkeys(x for v in instructions.values() for x in v))
    caption = caption_upstream(ours_caption, truth)
    with open(ann / "caption.json", "w", encoding="utf-8") as f:
        json.dump(caption, f, ensure_ascii=False, indent=2)

    # --- depths/<id>.zip: disparity Z = 1/(s*depth) on the tracking grid (§1).
    (w1, h1), (gw, gh) = tracking_grid(w0, h0)
    xs = np.array([grid_to_video(u, 0, w0, h0, w1, h1)[0] for u in range(gw)])
    ys = np.array([grid_to_video(0, v, w0, h0, w1, h1)[1] for v in range(gh)])
    grid_depth = depth[:, ys][:, :, xs]  # [N, gh, gw], nearest-exact
    invalid = ~np.isfinite(grid_depth) | (grid_depth > FAR_CUTOFF_M)
    with np.errstate(divide="ignore"):
        disp = (np.float32(1.0) / (np.float32(s) * grid_depth)).astype(np.float32)
    disp[invalid] = INVALID_Z[c]
    save_depth(OUT / rel_dep, list(disp))

    # --- read back with upstream's readers and check.
    z = read_depth_z(OUT / rel_dep)
    assert z.shape == (n, gh, gw)
    assert np.array_equal(z, disp.astype(np.float16).astype(np.float32))
    back = expand(np.load(ann / "dyn_masks.npz"))
    assert back.dtype == masks.dtype and np.array_equal(back, masks)

    # --- metadata row (§2): metrics from the written poses / masks, as evaluation.py computes them.
    p = np.load(ann / "poses.npy")
    move_dist, dist_level = move_distance(p[:, :3])
    row = {
        "id": cid,
        "group id": GROUP,
        "video path": rel_vid,
        "annotation path": rel_ann,
        "num frames": num_frames,
        "fps": FPS,
        "resolution": f"{w0}x{h0}",
        **SCORES[c],
        "moveDist": move_dist,
        "distLevel": dist_level,
        "rotAngle": rotation_angle(p[:, 3:]),
        "trajTurns": trajectory_turns(p[:, :3]),
        "dynamicRatio": dynamic_ratio(back),
        # Tag columns ([T]; format unconfirmed): motionTags = the clip's instruction labels in order
        # of first use (comma-separated, so the field is quoted); the rest mirror CategoryTag.
        "motionTags": ", ".join(labels),
        "sceneType": CATEGORY_TAG["sceneType"]["first"],
        "brightness": CATEGORY_TAG["lighting"],
        "timeOfDay": CATEGORY_TAG["timeOfDay"],
        "weather": CATEGORY_TAG["weather"],
        "crowdDensity": CATEGORY_TAG["crowdDensity"],
    }

    # --- depth samples: fixed corners/centre plus invalid pixels found by scanning.
    picks = [(0, 0, 0), (n - 1, gw - 1, gh - 1), (n // 2, gw // 2, gh // 2), (1, 90, 91)]
    inv_k = [k for k in range(n) if invalid[k].any()]
    k = inv_k[0]
    v, u = np.argwhere(invalid[k])[0]
    picks.append((k, int(u), int(v)))
    k = inv_k[-1]
    v, u = np.argwhere(invalid[k])[-1]
    picks.append((k, int(u), int(v)))
    samples = []
    for k, u, v in picks:
        zk = np.float32(z[k, v, u])
        x, y = grid_to_video(u, v, w0, h0, w1, h1)
        synth_d = float(depth[k, y, x])
        with np.errstate(divide="ignore"):
            inv = np.float32(1.0) / zk  # read_depth: 1.0 / np.array(float32 maps)
        samples.append({
            "k": k, "u": u, "v": v,
            "z": float(zk),
            "valid": bool(zk > 0),
            "depth": float(inv) if zk > 0 else None,
            # [N] read_depth (Sept 2025) returns clip(1/Z, 1e-3, 1e2) for every pixel.
            "depth_read_depth_clipped": float(np.clip(inv, np.float32(1e-3), np.float32(1e2))),
            "video": {"x": x, "y": y, "frame": idx[k]},
            "synth_depth_m": synth_d,
            "synth_depth_scaled": float(np.float32(s) * np.float32(synth_d)),
        })
    assert any(not x["valid"] for x in samples) and any(x["valid"] for x in samples)

    expected = {
        "synth_name": name,
        "scale": s,
        "invalid_z": float(np.float32(np.float16(INVALID_Z[c]))),
        "fps": FPS,
        "num_frames": num_frames,
        "annotated_frames": n,
        "interval": INTERVAL,
        "indexes": [[k, f] for k, f in enumerate(idx)],
        "seconds": [f / FPS for f in idx],
        "video_size": {"w": w0, "h": h0},
        "grid": {"w": gw, "h": gh},
        "grid_precrop": {"w": w1, "h": h1},
        "depth_members": [f"{k:05d}.exr" for k in range(n)],
        "invalid_pixels_per_frame": [int(x) for x in invalid.sum(axis=(1, 2))],
        "depth_samples": samples,
        "mask_dtype": str(masks.dtype),
        "mask_shape": [h0, w0],
        "mask_pixel_counts": [int(m.sum()) for m in masks],
        "poses_row0": [float(x) for x in out_poses[0]],
        "intrinsics_row0": [float(x) for x in out_intr[0]],
        "poses_shape": list(out_poses.shape),
        "poses_quat_negated_rows": flipped,
        "intrinsics_shape": list(out_intr.shape),
        "instructions": instructions,
        "caption_keys": list(caption.keys()),
        "truth": truth,
        "paths": {"video": rel_vid, "annotation": rel_ann, "depth": rel_dep},
        "video_probe": probe,
    }
    return row, expected


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default="/tmp/synth-src")
    ap.add_argument("--fourd", default=str(REPO / "target/debug/fourd"))
    args = ap.parse_args()
    global ZIP_MTIME
    os.environ["TZ"] = "UTC"
    time.tzset()
    ZIP_MTIME = time.mktime((2025, 9, 29, 0, 0, 0, 0, 0, 0))
    t0 = time.time()

    src = Path(args.src)
    if not src.exists():
        run([args.fourd, "synth", "--out", str(src), *SYNTH_ARGS])
    job = json.loads((src / "fourd_job.json").read_text())["settings"]
    assert (job["clips"], job["frames"], job["size"], job["seed"], job["fps"]) == (3, 8, "96x64", 3, 8), job
    w0, h0 = map(int, job["size"].split("x"))

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rows, clips = [], {}
    for c, vid in enumerate(sorted((src / "videos/group_0000").glob("*.mp4"))):
        row, exp = convert_clip(c, src / "annotations/group_0000" / vid.stem, vid, w0, h0)
        rows.append(row)
        clips[row["id"]] = exp

    # --- metadata CSV: pandas, to_csv(index=False) as every upstream stage writes it (e.g. [N]
    # utils/evaluation.py line 286); file name from [S] download_SpatialVID.py line 42 (§2).
    csv_rel = "data/train/SpatialVID_HQ_metadata.csv"
    (OUT / csv_rel).parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(OUT / csv_rel, index=False)
    text = (OUT / csv_rel).read_text()
    lines = text.splitlines()
    parsed = list(csv.reader(io.StringIO(text)))
    header = parsed[0]
    for line, fields in zip(lines[1:], parsed[1:]):
        clips[fields[0]]["csv_line"] = line
        clips[fields[0]]["csv_row"] = dict(zip(header, fields))

    files = sorted(p for p in OUT.rglob("*") if p.is_file())
    expected = {
        "generator": "tools/reference/make_spatialvid_release_fixture.py",
        "source": "fourd synth --out /tmp/synth-src " + " ".join(SYNTH_ARGS),
        "versions": {
            "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "OpenEXR": getattr(OpenEXR, "__version__", "?"),
            "ffmpeg": run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0],
        },
        "rules": {
            "interval": "int(0.2*fps)",
            "video_frame_of_annotated_k": "k*interval",
            "seconds": "frame/fps",
            "grid": "h1=int(h0*sqrt(384*512/(h0*w0))), w1 likewise; crop to (w1-w1%8, h1-h1%8)",
            "grid_to_video": "x=min(((2u+1)*w0)//(2*w1), w0-1), y=min(((2v+1)*h0)//(2*h1), h0-1)",
            "z": "float16(1/(s*synth_depth)); invalid_z where synth depth is +inf or > far_cutoff_m",
            "far_cutoff_m": FAR_CUTOFF_M,
            "depth": "float32(1)/z for z > 0 (read_depth), else null",
            "poses": "translation columns * s",
        },
        "csv_path": csv_rel,
        "csv_header": header,
        "clip_ids": [r["id"] for r in rows],
        "clips": clips,
        "files": [{"path": str(p.relative_to(OUT)), "bytes": p.stat().st_size,
                   "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in files],
        "total_bytes": sum(p.stat().st_size for p in files),
    }
    with open(EXPECTED, "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT} ({expected['total_bytes']} bytes in {len(files)} files) and {EXPECTED} "
          f"in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
