//! Reading NumPy arrays: `.npy` through `fourd_world::npy::parse_npy`, `.npz` archives (stored
//! as `fourd synth` writes them, or deflated as `numpy.savez_compressed` does) through `zip`.

use std::io::Read;
use std::path::Path;

use crate::error::{DataError, Result};

/// A decoded array: its shape and values widened to a common type.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T> Array<T> {
    /// The `[N, H, W]` shape, or an error naming `path` when the array is not 3-D.
    pub fn dims3(&self, path: &Path) -> Result<(usize, usize, usize)> {
        match self.shape.as_slice() {
            [n, h, w] => Ok((*n, *h, *w)),
            s => Err(DataError::malformed(
                path,
                format!("expected a 3-D array [N, H, W], got shape {s:?}"),
            )),
        }
    }
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<(Vec<usize>, String, &'a [u8])> {
    let (shape, descr, data) = fourd_world::npy::parse_npy(bytes).ok_or_else(|| {
        DataError::malformed(
            path,
            "not a NumPy .npy file (format 1.0, C order) or its header is unreadable",
        )
    })?;
    if bytes.len() > 10 {
        let header = String::from_utf8_lossy(&bytes[10..bytes.len() - data.len()]).into_owned();
        if header.contains("'fortran_order': True") {
            return Err(DataError::malformed(
                path,
                "Fortran-ordered arrays are not supported; save with C order",
            ));
        }
    }
    let count: usize = shape.iter().product();
    let width = match descr.as_str() {
        "|u1" | "<u1" | "|b1" | "|i1" => 1,
        "<u2" | "<i2" => 2,
        "<f4" | "<u4" | "<i4" => 4,
        "<f8" | "<i8" | "<u8" => 8,
        d => {
            return Err(DataError::malformed(
                path,
                format!("unsupported dtype {d:?}"),
            ))
        }
    };
    if data.len() < count * width {
        return Err(DataError::malformed(
            path,
            format!(
                "array data is truncated: shape {shape:?} needs {} bytes, file has {}",
                count * width,
                data.len()
            ),
        ));
    }
    Ok((shape, descr, data))
}

/// Element `i`-th of raw little-endian data of NumPy type `descr`, as f64 (exact for every type
/// read here).
fn elements(descr: &str, data: &[u8], n: usize) -> Vec<f64> {
    let width = match descr {
        "|u1" | "<u1" | "|b1" | "|i1" => 1,
        "<u2" | "<i2" => 2,
        "<f4" | "<u4" | "<i4" => 4,
        _ => 8,
    };
    data.chunks_exact(width)
        .take(n)
        .map(|c| match descr {
            "|i1" => c[0] as i8 as f64,
            "<u2" => u16::from_le_bytes([c[0], c[1]]) as f64,
            "<i2" => i16::from_le_bytes([c[0], c[1]]) as f64,
            "<f4" => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            "<u4" => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            "<i4" => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            "<f8" => f64::from_le_bytes(c.try_into().expect("8-byte chunk")),
            "<i8" => i64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f64,
            "<u8" => u64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f64,
            _ => c[0] as f64,
        })
        .collect()
}

/// Parses `bytes` and converts its elements with `conv`, when its dtype is one of `accepted`.
fn read_as<T>(
    bytes: &[u8],
    path: &Path,
    accepted: &[&str],
    what: &str,
    conv: fn(f64) -> T,
) -> Result<Array<T>> {
    let (shape, descr, data) = parse(bytes, path)?;
    if !accepted.contains(&descr.as_str()) {
        return Err(DataError::malformed(
            path,
            format!("{what} dtype {descr:?} is not one of {accepted:?}"),
        ));
    }
    let n: usize = shape.iter().product();
    Ok(Array {
        data: elements(&descr, data, n).into_iter().map(conv).collect(),
        shape,
    })
}

/// A mask array as 0/1: uint8, bool, uint16 (non-zero is inside) or float32 (above 0.5).
pub fn read_u8(bytes: &[u8], path: &Path) -> Result<Array<u8>> {
    read_as(
        bytes,
        path,
        &["|u1", "<u1", "|b1", "<u2", "<f4"],
        "mask",
        |v| (v > 0.5) as u8,
    )
}

/// A uint16 array (instance ids); uint8 is widened.
pub fn read_u16(bytes: &[u8], path: &Path) -> Result<Array<u16>> {
    read_as(bytes, path, &["<u2", "|u1", "<u1"], "instance-id", |v| {
        v as u16
    })
}

/// A float array (depth, intrinsics) as f32; float64 is narrowed.
pub fn read_f32(bytes: &[u8], path: &Path) -> Result<Array<f32>> {
    read_as(bytes, path, &["<f4", "<f8"], "float", |v| v as f32)
}

/// Reads a file fully; a missing file is [`DataError::Missing`].
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::open(path, e))
}

/// Every member of the `.npz` archive at `path`: `(name, bytes)`.
pub fn npz_members(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::open(path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        DataError::malformed(path, format!("not a readable .npz (zip) archive: {e}"))
    })?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| DataError::malformed(path, format!("member {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| DataError::malformed(path, format!("member {i}: {e}")))?
            .into_owned();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(|e| {
            DataError::malformed(path, format!("member {name:?} cannot be decompressed: {e}"))
        })?;
        out.push((name, bytes));
    }
    Ok(out)
}

/// SpatialVID's `dyn_masks.npz` as `[N, H, W]` 0/1 values: the released sparse layout (per frame
/// CSR members `f_{i}_data`/`f_{i}_indices`/`f_{i}_indptr` plus `shape`, expanded by
/// `fourd_world::npy::expand_dyn_masks`), or one dense `dyn_masks` array.
pub fn read_dyn_masks(path: &Path) -> Result<Array<u8>> {
    let members = npz_members(path)?;
    if let Some((_, dense)) = members
        .iter()
        .find(|(n, _)| n == "dyn_masks.npy" || n == "dyn_masks")
    {
        return read_u8(dense, path);
    }
    let (n, h, w, data) = fourd_world::npy::expand_dyn_masks(&members).ok_or_else(|| {
        DataError::malformed(path, "neither a dense `dyn_masks` array nor SpatialVID's sparse layout (f_<i>_data, f_<i>_indices, f_<i>_indptr, shape)")
    })?;
    Ok(Array {
        shape: vec![n, h, w],
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fourd_world::npy::{npy_bytes, npz_bytes};

    #[test]
    fn reads_npz_written_by_fourd_world() {
        let dir = std::env::temp_dir().join(format!("fourd-data-arrays-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.npz");
        let mask = npy_bytes(&[2, 2, 3], &[0u8, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1]);
        std::fs::write(
            &p,
            npz_bytes(&[("dyn_masks", mask.clone()), ("extra", mask)]),
        )
        .unwrap();
        let a = read_dyn_masks(&p).unwrap();
        assert_eq!(a.dims3(&p).unwrap(), (2, 2, 3));
        assert_eq!(a.data.iter().filter(|&&v| v != 0).count(), 6);
        assert_eq!(npz_members(&p).unwrap().len(), 2);
        // SpatialVID's sparse layout gives the same masks.
        let sparse = dir.join("s.npz");
        std::fs::write(
            &sparse,
            fourd_world::npy::dyn_masks_npz_bytes(&a.data, 2, 2, 3),
        )
        .unwrap();
        assert_eq!(read_dyn_masks(&sparse).unwrap(), a);
        // numpy.savez_compressed deflates every member (the released SpatialVID files).
        let deflated = dir.join("d.npz");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&deflated).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in npz_members(&sparse).unwrap() {
            w.start_file(name, opts).unwrap();
            std::io::Write::write_all(&mut w, &bytes).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(read_dyn_masks(&deflated).unwrap(), a);
        std::fs::write(&sparse, b"PK junk").unwrap();
        let err = read_dyn_masks(&sparse).unwrap_err().to_string();
        assert!(err.contains("s.npz") && err.contains("zip"), "{err}");
        let bad = read_u8(b"not numpy", &p).unwrap_err().to_string();
        assert!(bad.contains("not a NumPy"), "{bad}");
    }
}
