//! Finding and loading ONNX Runtime's shared library at run time: prunq builds
//! and runs without it, and uses the library the user already has (the one
//! inside the `onnxruntime` Python package, typically).
//!
//! Where it looks, in order: `--ort-lib PATH` ([`set_ort_library`]),
//! `$ORT_DYLIB_PATH`, the `onnxruntime` package of the active Python
//! environment (`$VIRTUAL_ENV`, then `python3`'s site-packages), `./.venv`.
//! The library loads once per process; every session shares its environment.

use super::library_search::LibrarySearch;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

static EXPLICIT: Mutex<Option<PathBuf>> = Mutex::new(None);
static LOADED: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

struct Loaded {
    env: ort::environment::Environment,
    info: OrtInfo,
}

/// The ONNX Runtime that was loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct OrtInfo {
    /// Its version.
    pub version: String,
    /// The shared library's path.
    pub library: PathBuf,
}

/// Use this library file (`--ort-lib`); must be called before the first session.
pub fn set_ort_library(path: Option<PathBuf>) {
    *EXPLICIT.lock().unwrap_or_else(|e| e.into_inner()) = path;
}

/// The loaded runtime's version and file, if it loaded.
pub fn ort_info() -> Option<OrtInfo> {
    LOADED.get().and_then(|l| l.as_ref().ok()).map(|l| l.info.clone())
}

/// Why ONNX Runtime's library did not load, once loading was tried and failed (the runtime
/// choice `auto` then measures in tract: front ends say so).
pub fn ort_load_error() -> Option<String> {
    LOADED.get().and_then(|l| l.as_ref().err().cloned())
}

/// The process's ONNX Runtime environment, loading the library on first use.
pub(super) fn environment() -> Result<&'static ort::environment::Environment> {
    match LOADED.get_or_init(load) {
        Ok(l) => Ok(&l.env),
        Err(e) => Err(Error::Runtime(e.clone())),
    }
}

fn load() -> std::result::Result<Loaded, String> {
    let explicit = EXPLICIT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let search = LibrarySearch {
        explicit: explicit.as_deref(),
        env_var: "ORT_DYLIB_PATH",
        package_dir: "onnxruntime/capi",
        is_library: is_ort_library,
    };
    let (candidates, looked) = search.candidates();
    let Some(library) = candidates.into_iter().next() else {
        return Err(format!(
            "ONNX Runtime's library was not found; looked in: {}. Install it (`pip install onnxruntime`) \
             or name the file (option ort-lib, or $ORT_DYLIB_PATH), or use runtime tract",
            looked.join("; ")
        ));
    };
    // The library's own version, checked before `ort` binds to it: an older
    // one lacks API functions ort calls, and ort would stop the process.
    let minor =
        ort::util::probe(&library).ok_or_else(|| format!("{}: not an ONNX Runtime 1.x library", library.display()))?;
    if minor < ort::MINOR_VERSION {
        return Err(format!(
            "{}: ONNX Runtime 1.{minor} is too old; prunq needs 1.{} or newer",
            library.display(),
            ort::MINOR_VERSION
        ));
    }
    let version = version_from_name(&library).unwrap_or_else(|| format!("1.{minor}"));
    let builder = ort::init_from(&library).map_err(|e| format!("{}: {e}", library.display()))?;
    let env = builder
        .with_name("prunq")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("{}: cannot start ONNX Runtime: {e}", library.display()))?;
    Ok(Loaded { env, info: OrtInfo { version, library } })
}

/// Whether a file is ONNX Runtime's library, by name.
fn is_ort_library(name: &str) -> bool {
    name.starts_with("libonnxruntime.so")
        || name == "onnxruntime.dll"
        || (name.starts_with("libonnxruntime") && name.ends_with(".dylib"))
}

/// `1.32.0` from `libonnxruntime.so.1.32.0` or `libonnxruntime.1.32.0.dylib`.
fn version_from_name(library: &Path) -> Option<String> {
    let name = library.file_name()?.to_string_lossy().into_owned();
    let start = name.find("1.")?;
    let version: String = name[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let version = version.trim_end_matches('.');
    (version.split('.').count() >= 2).then(|| version.to_string())
}
