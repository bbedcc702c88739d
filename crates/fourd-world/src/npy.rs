//! Minimal, deterministic writers for NumPy `.npy` (format 1.0, little-endian, C order) and
//! `.npz` (a zip archive with one stored, uncompressed `.npy` per array, as `numpy.savez` writes;
//! every zip timestamp is 1980-01-01 00:00 so the bytes depend on the data only).

/// Element types this writer knows.
pub trait NpyElem: Copy {
    /// NumPy `descr`, e.g. `<f4`.
    const DESCR: &'static str;
    fn write_le(self, out: &mut Vec<u8>);
}

macro_rules! elem {
    ($t:ty, $d:literal) => {
        impl NpyElem for $t {
            const DESCR: &'static str = $d;
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
elem!(f32, "<f4");
elem!(f64, "<f8");
elem!(u8, "|u1");
elem!(u16, "<u2");
elem!(i64, "<i8");
elem!(i32, "<i4");

/// Bytes of a `.npy` file holding `data` with `shape` (C order). Panics if the sizes disagree.
pub fn npy_bytes<T: NpyElem>(shape: &[usize], data: &[T]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy: shape {shape:?} does not match {} elements",
        data.len()
    );
    let shape_str = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_str
    );
    // magic (6) + version (2) + header length (2) + header, padded with spaces and ended by a
    // newline to a multiple of 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + std::mem::size_of_val(data));
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in data {
        v.write_le(&mut out);
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// Bytes of a `.npz` archive: `(name, npy bytes)` entries, stored as `name.npy` in that order.
/// Each entry must be under 4 GiB (no zip64).
pub fn npz_bytes<S: AsRef<str>>(entries: &[(S, Vec<u8>)]) -> Vec<u8> {
    const DOS_DATE: u16 = 0x0021; // 1980-01-01
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let fname = format!("{}.npy", name.as_ref());
        let crc = crc32(data);
        let size = u32::try_from(data.len()).expect("npz entry under 4 GiB");
        let offset = out.len() as u32;
        let common = |buf: &mut Vec<u8>| {
            buf.extend_from_slice(&20u16.to_le_bytes()); // version needed
            buf.extend_from_slice(&0u16.to_le_bytes()); // flags
            buf.extend_from_slice(&0u16.to_le_bytes()); // method: stored
            buf.extend_from_slice(&0u16.to_le_bytes()); // time
            buf.extend_from_slice(&DOS_DATE.to_le_bytes());
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&(fname.len() as u16).to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(fname.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(fname.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// The entries of a `.npz` whose members are *stored* (uncompressed), as [`npz_bytes`] and
/// `numpy.savez` write them: `(name without ".npy", npy bytes)` in archive order. `None` for a
/// compressed member or a malformed archive (for tests and validators; read the local headers
/// in order, so archives with data descriptors are not supported).
pub fn parse_npz(bytes: &[u8]) -> Option<Vec<(String, &[u8])>> {
    let u16_at = |i: usize| -> Option<u16> {
        Some(u16::from_le_bytes(bytes.get(i..i + 2)?.try_into().ok()?))
    };
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    let mut out = Vec::new();
    let mut pos = 0usize;
    while u32_at(pos)? == 0x0403_4b50 {
        let method = u16_at(pos + 8)?;
        let size = u32_at(pos + 18)? as usize;
        let name_len = u16_at(pos + 26)? as usize;
        let extra_len = u16_at(pos + 28)? as usize;
        if method != 0 {
            return None;
        }
        let name = std::str::from_utf8(bytes.get(pos + 30..pos + 30 + name_len)?).ok()?;
        let start = pos + 30 + name_len + extra_len;
        let data = bytes.get(start..start + size)?;
        out.push((name.strip_suffix(".npy").unwrap_or(name).to_string(), data));
        pos = start + size;
    }
    Some(out)
}

/// SpatialVID's `dyn_masks.npz` layout (upstream `camera_pose_annotation/dynamic_mask/
/// inference_batch.py`, `compress`): one SciPy CSR matrix per frame, stored as the arrays
/// `f_{i}_data`, `f_{i}_indices` and `f_{i}_indptr`, plus `shape` = `(H, W)` written once (after
/// frame 0's arrays). `masks` holds `n` frames of `height * width` row-major values (non-zero =
/// dynamic). Data is `|u1` (value 1), indices and indptr `<i4`, shape `<i8`, as NumPy/SciPy
/// write them for a uint8 mask stack.
pub fn dyn_masks_npz_bytes(masks: &[u8], n: usize, height: usize, width: usize) -> Vec<u8> {
    assert_eq!(masks.len(), n * height * width, "dyn masks: size mismatch");
    let mut entries: Vec<(String, Vec<u8>)> = Vec::with_capacity(3 * n + 1);
    for (i, frame) in masks
        .chunks_exact((height * width).max(1))
        .take(n)
        .enumerate()
    {
        let mut data = Vec::new();
        let mut indices = Vec::new();
        let mut indptr = vec![0i32];
        for row in frame.chunks_exact(width.max(1)) {
            for (x, &v) in row.iter().enumerate() {
                if v != 0 {
                    data.push(1u8);
                    indices.push(x as i32);
                }
            }
            indptr.push(indices.len() as i32);
        }
        entries.push((format!("f_{i}_data"), npy_bytes(&[data.len()], &data)));
        entries.push((
            format!("f_{i}_indices"),
            npy_bytes(&[indices.len()], &indices),
        ));
        entries.push((format!("f_{i}_indptr"), npy_bytes(&[indptr.len()], &indptr)));
        if i == 0 {
            entries.push((
                "shape".into(),
                npy_bytes(&[2], &[height as i64, width as i64]),
            ));
        }
    }
    npz_bytes(&entries)
}

/// Expands a SpatialVID `dyn_masks.npz` (see [`dyn_masks_npz_bytes`]) into `(n, height, width,
/// row-major 0/1 values)`, as upstream `utils/expand_npz.py` does: the frame count is
/// `(entries - 1) / 3`. Archive members must be stored (what [`npz_bytes`] writes); for
/// `np.savez_compressed` files (the released data) read the members with a zip library and
/// call [`expand_dyn_masks`]. `None` if malformed.
pub fn read_dyn_masks_npz(bytes: &[u8]) -> Option<(usize, usize, usize, Vec<u8>)> {
    expand_dyn_masks(&parse_npz(bytes)?)
}

/// [`read_dyn_masks_npz`] on already extracted members: `(name with or without ".npy", npy
/// bytes)`. Accepts `|u1`/`|b1` data and `<i4`/`<i8` indices, indptr and shape.
pub fn expand_dyn_masks<S: AsRef<str>, B: AsRef<[u8]>>(
    entries: &[(S, B)],
) -> Option<(usize, usize, usize, Vec<u8>)> {
    let get = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| {
                let k = k.as_ref();
                k.strip_suffix(".npy").unwrap_or(k) == name
            })
            .map(|(_, v)| v.as_ref())
    };
    let ints = |npy: &[u8]| -> Option<Vec<usize>> {
        let (shape, descr, data) = parse_npy(npy)?;
        if shape.len() != 1 {
            return None;
        }
        match descr.as_str() {
            "<i4" => data
                .chunks_exact(4)
                .map(|c| usize::try_from(i32::from_le_bytes(c.try_into().ok()?)).ok())
                .collect(),
            "<i8" => data
                .chunks_exact(8)
                .map(|c| usize::try_from(i64::from_le_bytes(c.try_into().ok()?)).ok())
                .collect(),
            _ => None,
        }
    };
    let hw = ints(get("shape")?)?;
    let (height, width) = match hw.as_slice() {
        [h, w] => (*h, *w),
        _ => return None,
    };
    let n = entries.len().checked_sub(1)? / 3;
    let mut out = vec![0u8; n * height * width];
    for i in 0..n {
        let (_, descr, data) = parse_npy(get(&format!("f_{i}_data"))?)?;
        if descr != "|u1" && descr != "|b1" {
            return None;
        }
        let indices = ints(get(&format!("f_{i}_indices"))?)?;
        let indptr = ints(get(&format!("f_{i}_indptr"))?)?;
        if indptr.len() != height + 1 || indices.len() != data.len() {
            return None;
        }
        for y in 0..height {
            let row = indptr[y]..indptr[y + 1];
            for (&x, &v) in indices.get(row.clone())?.iter().zip(data.get(row)?) {
                if x >= width {
                    return None;
                }
                out[(i * height + y) * width + x] = (v != 0) as u8;
            }
        }
    }
    Some((n, height, width, out))
}

/// Reads back the shape, `descr` and raw little-endian data of a `.npy` written by
/// [`npy_bytes`] (format 1.0 only; for tests and validators).
pub fn parse_npy(bytes: &[u8]) -> Option<(Vec<usize>, String, &[u8])> {
    if bytes.len() < 10 || &bytes[..8] != b"\x93NUMPY\x01\x00" {
        return None;
    }
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(bytes.get(10..10 + hlen)?).ok()?;
    let descr = header
        .split("'descr': '")
        .nth(1)?
        .split('\'')
        .next()?
        .to_string();
    let shape_s = header.split("'shape': (").nth(1)?.split(')').next()?;
    let shape = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<usize>>>()?;
    Some((shape, descr, &bytes[10 + hlen..]))
}

/// Rows of a `poses.npy` (`<f4` or `<f8`, `[N, 7]`), as f64.
pub fn read_poses_npy(bytes: &[u8]) -> Option<Vec<[f64; 7]>> {
    let (shape, descr, data) = parse_npy(bytes)?;
    if shape.len() != 2 || shape[1] != 7 {
        return None;
    }
    let width = match descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        _ => return None,
    };
    let value = |c: &[u8]| -> f64 {
        if width == 4 {
            f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64
        } else {
            f64::from_le_bytes(c.try_into().expect("8 bytes"))
        }
    };
    Some(
        data.chunks_exact(7 * width)
            .map(|row| std::array::from_fn(|j| value(&row[j * width..(j + 1) * width])))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_header() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let b = npy_bytes(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!((b.len() - 24) % 64, 0);
        let (shape, descr, data) = parse_npy(&b).unwrap();
        assert_eq!((shape, descr.as_str(), data.len()), (vec![2, 3], "<f4", 24));
        let b1 = npy_bytes(&[3], &[1u8, 2, 3]);
        assert_eq!(parse_npy(&b1).unwrap().0, vec![3]);
    }

    #[test]
    fn dyn_masks_round_trip_and_int64_members() {
        // 3 frames of 3x4: an empty frame, a diagonal, a full last row.
        let (n, h, w) = (3, 3, 4);
        let mut masks = vec![0u8; n * h * w];
        for y in 0..3 {
            masks[h * w + y * w + y] = 1;
        }
        for x in 0..4 {
            masks[2 * h * w + 2 * w + x] = 7; // any non-zero counts as dynamic
        }
        let bytes = dyn_masks_npz_bytes(&masks, n, h, w);
        let (rn, rh, rw, back) = read_dyn_masks_npz(&bytes).unwrap();
        assert_eq!((rn, rh, rw), (n, h, w));
        let want: Vec<u8> = masks.iter().map(|&m| (m != 0) as u8).collect();
        assert_eq!(back, want);
        let names: Vec<String> = parse_npz(&bytes)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(names.len(), 3 * n + 1);
        assert_eq!(
            &names[..4],
            ["f_0_data", "f_0_indices", "f_0_indptr", "shape"]
        );
        // SciPy may store int64 indices; the frame-1 diagonal written that way reads the same.
        let one = |i: usize| -> Vec<(String, Vec<u8>)> {
            vec![
                (format!("f_{i}_data.npy"), npy_bytes(&[3], &[1u8, 1, 1])),
                (format!("f_{i}_indices.npy"), npy_bytes(&[3], &[0i64, 1, 2])),
                (
                    format!("f_{i}_indptr.npy"),
                    npy_bytes(&[4], &[0i64, 1, 2, 3]),
                ),
            ]
        };
        let mut entries = one(0);
        entries.push(("shape.npy".into(), npy_bytes(&[2], &[3i64, 4])));
        let (_, _, _, diag) = expand_dyn_masks(&entries).unwrap();
        assert_eq!(diag, want[h * w..2 * h * w]);
        // A column index outside the width is refused, not written out of bounds.
        entries[1].1 = npy_bytes(&[3], &[0i64, 1, 9]);
        assert!(expand_dyn_masks(&entries).is_none());
    }
}
