//! The `.npy` format (NumPy's own, version 1–3): a magic string, a header that
//! is a Python dict literal, then the raw array.

use super::Array;
use crate::{Error, Result};
use ndarray::{ArrayD, IxDyn};

/// Parses one `.npy` file's bytes. `what` names it in errors.
pub fn parse(bytes: &[u8], what: &str) -> Result<Array> {
    let bad = |why: &str| Error::Data(format!("{what}: not a valid .npy array ({why})"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unknown version")),
    };
    let header = bytes.get(start..start.saturating_add(header_len)).ok_or_else(|| bad("short header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad("no descr"))?;
    let descr = quoted(descr).ok_or_else(|| bad("bad descr"))?;
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("Fortran order is not supported; save with C order"));
    }
    let shape = dict_value(header, "shape").ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let body = &bytes[start + header_len..];
    let (kind, size) = descr_kind(descr).ok_or_else(|| bad(&format!("unsupported dtype '{descr}'")))?;
    let need = n.checked_mul(size).ok_or_else(|| bad("shape overflows"))?;
    if body.len() < need {
        return Err(bad(&format!("{} bytes of data for shape {shape:?}, need {need}", body.len())));
    }
    let body = &body[..need];
    let s = IxDyn(&shape);
    macro_rules! read {
        ($t:ty, $v:ident) => {{
            let v: Vec<$t> =
                body.chunks_exact(size).map(|c| <$t>::from_le_bytes(c.try_into().expect("sized"))).collect();
            Array::$v(ArrayD::from_shape_vec(s, v).expect("length checked"))
        }};
    }
    Ok(match kind {
        "f4" => read!(f32, F32),
        "f8" => read!(f64, F64),
        "i8" => read!(i64, I64),
        "i4" => read!(i32, I32),
        "i1" => read!(i8, I8),
        "u1" => read!(u8, U8),
        "b1" => Array::Bool(ArrayD::from_shape_vec(s, body.iter().map(|&b| b != 0).collect()).expect("length checked")),
        _ => unreachable!("descr_kind returns only these"),
    })
}

/// Element kind and size of a little-endian (or byte-sized) descr.
fn descr_kind(descr: &str) -> Option<(&'static str, usize)> {
    Some(match descr {
        "<f4" => ("f4", 4),
        "<f8" => ("f8", 8),
        "<i8" => ("i8", 8),
        "<i4" => ("i4", 4),
        "|i1" | "<i1" => ("i1", 1),
        "|u1" | "<u1" => ("u1", 1),
        "|b1" => ("b1", 1),
        _ => return None,
    })
}

/// The text after `'key':` in the header dict, up to the end.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// The leading quoted string of `s` ('…' or "…"), without its quotes.
fn quoted(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &s[1..];
    rest.find(q).map(|end| &rest[..end])
}

/// Writes an f32/i64 array as `.npy` bytes (for tests and tools).
pub fn write(array: &Array) -> Vec<u8> {
    let (descr, data): (&str, Vec<u8>) = match array {
        Array::F32(a) => ("<f4", a.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Array::F64(a) => ("<f8", a.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Array::I64(a) => ("<i8", a.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Array::I32(a) => ("<i4", a.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Array::I8(a) => ("|i1", a.iter().map(|&v| v as u8).collect()),
        Array::U8(a) => ("|u1", a.iter().copied().collect()),
        Array::Bool(a) => ("|b1", a.iter().map(|&v| v as u8).collect()),
    };
    let shape: Vec<String> = array.shape().iter().map(usize::to_string).collect();
    let shape = if shape.len() == 1 { format!("{},", shape[0]) } else { shape.join(", ") };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({shape}), }}");
    // Pad so the data starts on a 64-byte boundary, newline-terminated.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_round_trips() {
        let a = Array::F32(ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1., 2., 3., 4., 5., 6.]).unwrap());
        assert_eq!(parse(&write(&a), "a").unwrap(), a);
        let b = Array::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![7, -1, 0]).unwrap());
        assert_eq!(parse(&write(&b), "b").unwrap(), b);
    }

    #[test]
    fn short_or_foreign_data_is_an_error() {
        let a = Array::F32(ArrayD::zeros(IxDyn(&[4])));
        let bytes = write(&a);
        let e = parse(&bytes[..bytes.len() - 1], "x.npy").unwrap_err().to_string();
        assert!(e.contains("x.npy") && e.contains("need 16"), "{e}");
        assert!(parse(b"hello world", "y").is_err());
        let mut big_endian = bytes.clone();
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        big_endian[at] = b'>';
        let e = parse(&big_endian, "z").unwrap_err().to_string();
        assert!(e.contains("unsupported dtype '>f4'"), "{e}");
    }
}
