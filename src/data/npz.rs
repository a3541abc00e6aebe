//! `.npz` archives: a zip (stored or deflate-compressed) of `.npy` files.

use super::{npy, Array};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Every array of an `.npz` file, by name (the member name without `.npy`).
pub fn read(path: &Path) -> Result<BTreeMap<String, Array>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_from(file, size, &path.display().to_string())
}

/// The arrays of an `.npz` archive held in memory (`what` names it in errors).
pub fn read_bytes(bytes: &[u8], what: &str) -> Result<BTreeMap<String, Array>> {
    read_from(std::io::Cursor::new(bytes), bytes.len() as u64, what)
}

fn read_from(reader: impl Read + std::io::Seek, size: u64, what: &str) -> Result<BTreeMap<String, Array>> {
    let bad = |why: String| Error::Data(format!("{what}: {why}"));
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| bad(format!("not an .npz archive ({e})")))?;
    let mut arrays = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(format!("member {i}: {e}")))?;
        let name = entry.name().trim_end_matches(".npy").to_string();
        // A member claiming far more than the archive could hold is hostile or broken.
        let claimed = entry.size();
        if claimed > size.saturating_mul(1032) + (1 << 20) {
            return Err(bad(format!("member '{name}' claims {claimed} bytes")));
        }
        let mut buf = Vec::with_capacity(claimed as usize);
        entry.read_to_end(&mut buf).map_err(|e| bad(format!("member '{name}': {e}")))?;
        let array = npy::parse(&buf, &format!("{what}: array '{name}'"))?;
        arrays.insert(name, array);
    }
    Ok(arrays)
}

/// Reads a `.npy` file or an `.npz` archive; a lone `.npy` array is named
/// after the file's stem.
pub fn read_any(path: &Path) -> Result<BTreeMap<String, Array>> {
    let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let array = npy::parse(&bytes, &path.display().to_string())?;
        Ok(BTreeMap::from([(name, array)]))
    } else {
        read(path)
    }
}

/// Writes arrays as an uncompressed `.npz` (for tests and tools).
pub fn write(path: &Path, arrays: &BTreeMap<String, Array>) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let err = |e: &dyn std::fmt::Display| Error::Data(format!("{}: {e}", path.display()));
    for (name, a) in arrays {
        zip.start_file(format!("{name}.npy"), opts).map_err(|e| err(&e))?;
        std::io::Write::write_all(&mut zip, &npy::write(a)).map_err(|e| err(&e))?;
    }
    zip.finish().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_round_trip_through_an_npz_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.npz");
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[3, 2]), |i| (i[0] * 2 + i[1]) as f32 * 0.5);
        let ids = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[3]), |i| i[0] as i64 - 1);
        let arrays = BTreeMap::from([("x".to_string(), Array::F32(x)), ("label".to_string(), Array::I64(ids))]);
        write(&path, &arrays).unwrap();
        assert_eq!(read(&path).unwrap(), arrays);
    }

    #[test]
    fn what_is_not_an_archive_is_named() {
        let e = read_bytes(b"not a zip", "calib.npz").unwrap_err().to_string();
        assert!(e.starts_with("calib.npz: not an .npz archive"), "{e}");
    }
}
