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
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * std::mem::size_of::<T>());
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
pub fn npz_bytes(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    const DOS_DATE: u16 = 0x0021; // 1980-01-01
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let fname = format!("{name}.npy");
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
    Some(data.chunks_exact(7 * width).map(|row| std::array::from_fn(|j| value(&row[j * width..(j + 1) * width]))).collect())
}
