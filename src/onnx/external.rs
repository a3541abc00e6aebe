//! External tensor data: reading it safely, writing it beside an output model.
//!
//! A model file must not make prunq read arbitrary files: locations must be
//! relative, may not climb out of the model's folder (`..`), and may not
//! resolve (through symlinks) to a file outside it.

use crate::ir::{Storage, Tensor};
use crate::proto;
use crate::{Error, Result};
use bytes::Bytes;
use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// Reads external data for the tensors of one model file.
pub(super) struct ExternalData {
    /// The model's folder, canonical; `None` for a model decoded from memory.
    pub dir: Option<PathBuf>,
    pub model_path: PathBuf,
    /// Each data file mapped once; tensors are zero-copy slices of it, so a
    /// large model's weights are paged in from the file, not copied.
    pub maps: std::cell::RefCell<std::collections::BTreeMap<PathBuf, Bytes>>,
}

impl ExternalData {
    pub fn read(&self, t: &proto::TensorProto) -> Result<Bytes> {
        let name = t.name.as_deref().unwrap_or("");
        let bad = |why: String| Error::Model(format!("{}: tensor '{name}': {why}", self.model_path.display()));
        let entry =
            |key: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(key)).and_then(|e| e.value.clone());
        let location = entry("location").ok_or_else(|| bad("external data without a location".into()))?;
        let number = |key: &str| -> Result<Option<u64>> {
            entry(key)
                .map(|v| v.trim().parse::<u64>().map_err(|_| bad(format!("bad external {key} '{v}'"))))
                .transpose()
        };
        let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
        let dir = self.dir.as_ref().ok_or_else(|| bad("external data needs the model's folder".into()))?;
        let path = safe_location(dir, &location).map_err(|why| bad(format!("external location '{location}' {why}")))?;
        let whole = self.map(&path).map_err(|e| bad(format!("external file '{location}': {e}")))?;
        let size = whole.len() as u64;
        let length = length.unwrap_or(size.saturating_sub(offset));
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(bad(format!(
                "external file '{location}' has {size} bytes, the tensor needs bytes {offset}..{}",
                offset.saturating_add(length)
            )));
        }
        let expected = t.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(u64::try_from(d).ok()?));
        let expected = expected.and_then(|n| crate::ir::DataType(t.data_type.unwrap_or(0)).byte_len(n as usize));
        if expected.is_some_and(|e| e as u64 != length) {
            return Err(bad(format!("external length {length} does not match its shape {:?}", t.dims)));
        }
        Ok(whole.slice(offset as usize..(offset + length) as usize))
    }

    /// The whole data file, memory-mapped (once per file).
    fn map(&self, path: &Path) -> std::io::Result<Bytes> {
        if let Some(b) = self.maps.borrow().get(path) {
            return Ok(b.clone());
        }
        let file = File::open(path)?;
        let bytes = if file.metadata()?.len() == 0 {
            Bytes::new()
        } else {
            // SAFETY: the mapping is read-only and prunq never writes its inputs; a file
            // truncated by another process while we run would fault, as with any mmap reader.
            let map = Arc::new(unsafe { memmap2::Mmap::map(&file)? });
            let mut live = MAPPINGS.lock().unwrap_or_else(|e| e.into_inner());
            live.retain(|m| m.strong_count() > 0);
            live.push(Arc::downgrade(&map));
            crate::ir::set_release_hook(release);
            Bytes::from_owner(Mapped(map))
        };
        self.maps.borrow_mut().insert(path.to_path_buf(), bytes.clone());
        Ok(bytes)
    }
}

/// Every live mapping of external data, so pages can be handed back.
static MAPPINGS: Mutex<Vec<Weak<memmap2::Mmap>>> = Mutex::new(Vec::new());

struct Mapped(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Hands the whole pages of `data` back to the kernel when it lies in a
/// mapping: a pass is done with that weight, so a model bigger than memory
/// does not stay resident. Safe at any time: the mapping is read-only and
/// file-backed, so a page touched again is simply read again.
fn release(data: &[u8]) {
    const PAGE: usize = 4096;
    let live = MAPPINGS.lock().unwrap_or_else(|e| e.into_inner());
    for map in live.iter().filter_map(Weak::upgrade) {
        let base = map.as_ptr() as usize;
        let start = data.as_ptr() as usize;
        if start < base || start + data.len() > base + map.len() {
            continue;
        }
        let first = (start - base).div_ceil(PAGE) * PAGE;
        let last = (start - base + data.len()) / PAGE * PAGE;
        if last > first {
            // SAFETY: DONTNEED on a read-only file mapping only drops cached pages;
            // later reads fault them back in from the file with the same contents.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first) };
        }
    }
}

/// `location` resolved inside `dir`, or why it may not be read.
fn safe_location(dir: &Path, location: &str) -> std::result::Result<PathBuf, &'static str> {
    let rel = Path::new(location);
    if rel.is_absolute() || location.starts_with('/') || location.starts_with('\\') || location.contains(':') {
        return Err("is absolute; only paths inside the model's folder are read");
    }
    if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err("leaves the model's folder");
    }
    let full = dir.join(rel).canonicalize().map_err(|_| "does not exist")?;
    if !full.starts_with(dir) {
        return Err("resolves (through a link) outside the model's folder");
    }
    Ok(full)
}

/// Which tensors `save` writes to an external data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExternalMode {
    /// Keep external what was external; move every large tensor out when the
    /// model would pass protobuf's 2 GB limit.
    #[default]
    Auto,
    /// Every tensor of at least `EXTERNAL_MIN_BYTES`.
    Always,
    /// Everything inline (fails past 2 GB).
    Never,
}

/// Tensors smaller than this stay inline even when writing external data.
pub const EXTERNAL_MIN_BYTES: usize = 1024;

/// Collects the external data of one output model into a temporary file.
pub(super) struct ExternalSink {
    all_large: bool,
    keep_external: bool,
    /// Sparse-stored tensors are written sparse (files) rather than dense
    /// (in-memory encodings for the runtime: tract reads no sparse_initializer).
    sparse: bool,
    /// The data file's name, relative to the model's folder.
    location: String,
    dir: PathBuf,
    file: Option<tempfile::NamedTempFile>,
    offset: u64,
    /// Hash of everything written, for the data file's final name.
    hash: std::collections::hash_map::DefaultHasher,
}

impl ExternalSink {
    /// A sink that places nothing outside (for in-memory encoding).
    pub fn inline() -> ExternalSink {
        ExternalSink {
            all_large: false,
            keep_external: false,
            sparse: false,
            location: String::new(),
            dir: PathBuf::new(),
            file: None,
            offset: 0,
            hash: Default::default(),
        }
    }

    /// Like [`Self::inline`], with sparse-stored tensors written sparse, as a file holds them.
    pub fn inline_as_in_a_file() -> ExternalSink {
        ExternalSink { sparse: true, ..ExternalSink::inline() }
    }

    pub fn new(output: &Path, mode: ExternalMode, too_big: bool) -> ExternalSink {
        let file_name = output.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        ExternalSink {
            all_large: mode == ExternalMode::Always || (mode == ExternalMode::Auto && too_big),
            keep_external: mode != ExternalMode::Never,
            sparse: true,
            location: format!("{file_name}.data"),
            dir: output.parent().map(Path::to_path_buf).unwrap_or_default(),
            file: None,
            offset: 0,
            hash: Default::default(),
        }
    }

    pub fn sparse_allowed(&self) -> bool {
        self.sparse
    }

    /// Writes `data` out if this tensor goes to the data file; returns its
    /// `external_data` entries then.
    pub fn place(&mut self, t: &Tensor, data: &[u8]) -> Result<Option<Vec<(String, String)>>> {
        let wanted = (self.all_large && data.len() >= EXTERNAL_MIN_BYTES)
            || (self.keep_external && matches!(t.storage, Storage::External(_)));
        if !wanted {
            return Ok(None);
        }
        if self.file.is_none() {
            let dir = if self.dir.as_os_str().is_empty() { Path::new(".") } else { &self.dir };
            self.file = Some(super::output_temp_file(dir)?);
        }
        let file = self.file.as_mut().expect("created above");
        // Align each tensor to 64 bytes so runtimes can map it directly.
        let pad = (64 - self.offset % 64) % 64;
        let path = file.path().to_path_buf();
        let write = |f: &mut tempfile::NamedTempFile| -> std::io::Result<()> {
            f.write_all(&vec![0u8; pad as usize])?;
            f.write_all(data)
        };
        write(file).map_err(|e| Error::io(path, e))?;
        std::hash::Hasher::write(&mut self.hash, data);
        let offset = self.offset + pad;
        self.offset = offset + data.len() as u64;
        Ok(Some(vec![
            ("location".into(), self.location.clone()),
            ("offset".into(), offset.to_string()),
            ("length".into(), data.len().to_string()),
        ]))
    }

    /// The location written into the tensors while converting (a placeholder
    /// until [`ExternalSink::final_location`] is known).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The data file's final name: `<model file>.<content hash>.data`. Named by
    /// content, a new data file never replaces the one the previous model at the
    /// same path reads, so a crash between the two renames leaves that model
    /// whole (and the same output always gets the same name).
    pub fn final_location(&self) -> Option<String> {
        self.file.as_ref()?;
        let hash = std::hash::Hasher::finish(&self.hash);
        Some(format!("{}.{hash:016x}.data", self.location.trim_end_matches(".data")))
    }

    /// Moves the data file to its final name (before the model itself is).
    pub fn commit(self) -> Result<()> {
        if let (Some(location), Some(file)) = (self.final_location(), self.file) {
            let target = self.dir.join(&location);
            file.as_file().sync_all().map_err(|e| Error::io(&target, e))?;
            file.persist(&target).map_err(|e| Error::io(&target, e.error))?;
        }
        Ok(())
    }
}

/// Once the model at `output` is in place: removes data files an earlier
/// model at the same path wrote (`<file>.<hash>.data`) that `keep` is not.
pub(super) fn remove_stale_data(output: &Path, keep: Option<&str>) {
    let (Some(dir), Some(name)) = (output.parent(), output.file_name()) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(middle) = file.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".data")) else { continue };
        let ours = middle.len() == 16 && middle.bytes().all(|b| b.is_ascii_hexdigit());
        if ours && Some(file.as_str()) != keep {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Points every external tensor of `p` at `to` instead of `from`.
pub(super) fn relocate(p: &mut proto::ModelProto, from: &str, to: &str) {
    fn tensor(t: &mut proto::TensorProto, from: &str, to: &str) {
        for e in t.external_data.iter_mut() {
            if e.key.as_deref() == Some("location") && e.value.as_deref() == Some(from) {
                e.value = Some(to.to_string());
            }
        }
    }
    fn sparse(s: &mut proto::SparseTensorProto, from: &str, to: &str) {
        s.values.iter_mut().chain(s.indices.iter_mut()).for_each(|t| tensor(t, from, to));
    }
    fn graph(g: &mut proto::GraphProto, from: &str, to: &str) {
        g.initializer.iter_mut().for_each(|t| tensor(t, from, to));
        g.sparse_initializer.iter_mut().for_each(|s| sparse(s, from, to));
        for a in g.node.iter_mut().flat_map(|n| n.attribute.iter_mut()) {
            a.t.iter_mut().chain(a.tensors.iter_mut()).for_each(|t| tensor(t, from, to));
            a.sparse_tensor.iter_mut().chain(a.sparse_tensors.iter_mut()).for_each(|s| sparse(s, from, to));
            a.g.iter_mut().chain(a.graphs.iter_mut()).for_each(|sub| graph(sub, from, to));
        }
    }
    if let Some(g) = p.graph.as_mut() {
        graph(g, from, to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_outside_the_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().canonicalize().unwrap();
        std::fs::write(dir.join("w.bin"), [0u8; 4]).unwrap();
        assert!(safe_location(&dir, "w.bin").is_ok());
        assert!(safe_location(&dir, "./w.bin").is_ok());
        assert_eq!(
            safe_location(&dir, "/etc/passwd"),
            Err("is absolute; only paths inside the model's folder are read")
        );
        assert_eq!(safe_location(&dir, "../w.bin"), Err("leaves the model's folder"));
        assert_eq!(safe_location(&dir, "a/../../w.bin"), Err("leaves the model's folder"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
            assert_eq!(safe_location(&dir, "link"), Err("resolves (through a link) outside the model's folder"));
        }
    }
}
