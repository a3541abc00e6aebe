//! LiteRT's C library (`libLiteRt.so` of the `ai-edge-litert` wheel), loaded once per process at
//! run time: prunq builds and runs without it. Searched like ONNX Runtime's (`--litert-lib`,
//! `$LITERT_LIB`, the active Python environment, `./.venv`; [`super::library_search`]).
//!
//! Only the functions of LiteRT's `CompiledModel` C API that a session needs are bound, with the
//! signatures of `litert/c/*.h` (LiteRT 2.3).

use super::library_search::LibrarySearch;
use crate::{Error, Result};
use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// An opaque LiteRT handle.
pub(super) type Handle = *mut c_void;
/// `LiteRtStatus`: 0 is success.
pub(super) type Status = c_int;

/// `LITERT_TENSOR_MAX_RANK`.
pub(super) const MAX_RANK: usize = 8;

/// `LiteRtRankedTensorType`: an element type and a layout (`rank` in the low 7 bits of the
/// bit-field word, `has_strides` in the 8th), 72 bytes as the header asserts.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct RankedTensorType {
    pub element_type: c_int,
    pub rank_bits: u32,
    pub dimensions: [i32; MAX_RANK],
    pub strides: [u32; MAX_RANK],
}

impl RankedTensorType {
    pub fn rank(&self) -> usize {
        (self.rank_bits & 0x7f) as usize
    }
}

const _: () = assert!(std::mem::size_of::<RankedTensorType>() == 72);

macro_rules! api {
    ($($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The bound functions.
        #[allow(non_snake_case)]
        pub(super) struct Api {
            $(pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }

        impl Api {
            /// Binds every function, or names the first one the library lacks.
            unsafe fn bind(lib: &libloading::Library) -> std::result::Result<Api, String> {
                Ok(Api {
                    $($name: *lib
                        .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(concat!(stringify!($name), "\0").as_bytes())
                        .map_err(|e| format!("it has no {}: {e}", stringify!($name)))?,)*
                })
            }
        }
    };
}

api! {
    LiteRtCreateEnvironment: fn(c_int, *const c_void, *mut Handle) -> Status;
    LiteRtCreateModelFromBuffer: fn(Handle, *const c_void, usize, *mut Handle) -> Status;
    LiteRtDestroyModel: fn(Handle);
    LiteRtGetNumModelSignatures: fn(Handle, *mut usize) -> Status;
    LiteRtGetModelSignature: fn(Handle, usize, *mut Handle) -> Status;
    LiteRtGetNumSignatureInputs: fn(Handle, *mut usize) -> Status;
    LiteRtGetNumSignatureOutputs: fn(Handle, *mut usize) -> Status;
    LiteRtGetSignatureInputName: fn(Handle, usize, *mut *const c_char) -> Status;
    LiteRtGetSignatureOutputName: fn(Handle, usize, *mut *const c_char) -> Status;
    LiteRtGetSignatureInputTensorByIndex: fn(Handle, usize, *mut Handle) -> Status;
    LiteRtGetSignatureOutputTensorByIndex: fn(Handle, usize, *mut Handle) -> Status;
    LiteRtGetRankedTensorType: fn(Handle, *mut RankedTensorType) -> Status;
    LiteRtCreateOptions: fn(*mut Handle) -> Status;
    LiteRtDestroyOptions: fn(Handle);
    LiteRtSetOptionsHardwareAccelerators: fn(Handle, c_int) -> Status;
    LiteRtCreateOpaqueOptions: fn(*const c_char, *mut c_void, Option<unsafe extern "C" fn(*mut c_void)>, *mut Handle) -> Status;
    LiteRtAddOpaqueOptions: fn(Handle, Handle) -> Status;
    LiteRtCreateCompiledModel: fn(Handle, Handle, Handle, *mut Handle) -> Status;
    LiteRtDestroyCompiledModel: fn(Handle);
    LiteRtCreateManagedTensorBuffer: fn(Handle, c_int, *const RankedTensorType, usize, *mut Handle) -> Status;
    LiteRtDestroyTensorBuffer: fn(Handle);
    LiteRtLockTensorBuffer: fn(Handle, *mut *mut c_void, c_int) -> Status;
    LiteRtUnlockTensorBuffer: fn(Handle) -> Status;
    LiteRtRunCompiledModel: fn(Handle, usize, usize, *mut Handle, usize, *mut Handle) -> Status;
}

/// The loaded library: its functions, the process's environment, where it came from.
pub(super) struct Loaded {
    pub api: Api,
    pub env: Handle,
    pub info: LiteRtInfo,
    _library: libloading::Library,
}

// The environment is made once and only read afterwards; LiteRT's environment is shared by
// every compiled model of a process.
unsafe impl Send for Loaded {}
unsafe impl Sync for Loaded {}

/// The LiteRT library that was loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct LiteRtInfo {
    /// Its version (from the wheel's metadata when found beside it).
    pub version: Option<String>,
    /// The shared library's path.
    pub library: PathBuf,
}

static EXPLICIT: Mutex<Option<PathBuf>> = Mutex::new(None);
static LOADED: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// Use this library file (`--litert-lib`); must be called before the first LiteRT session.
pub fn set_litert_library(path: Option<PathBuf>) {
    *EXPLICIT.lock().unwrap_or_else(|e| e.into_inner()) = path;
}

/// The loaded LiteRT's version and file, if it loaded.
pub fn litert_info() -> Option<LiteRtInfo> {
    LOADED.get().and_then(|l| l.as_ref().ok()).map(|l| l.info.clone())
}

/// The process's LiteRT, loading the library on first use.
pub(super) fn litert() -> Result<&'static Loaded> {
    match LOADED.get_or_init(load) {
        Ok(l) => Ok(l),
        Err(e) => Err(Error::Runtime(e.clone())),
    }
}

/// Whether a file is LiteRT's C library, by name.
fn is_litert_library(name: &str) -> bool {
    name == "libLiteRt.so" || name == "libLiteRt.dylib" || name == "LiteRt.dll"
}

fn load() -> std::result::Result<Loaded, String> {
    let explicit = EXPLICIT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let search = LibrarySearch {
        explicit: explicit.as_deref(),
        env_var: "LITERT_LIB",
        package_dir: "ai_edge_litert",
        is_library: is_litert_library,
    };
    let (candidates, looked) = search.candidates();
    let Some(library) = candidates.into_iter().next() else {
        return Err(format!(
            "LiteRT's library (libLiteRt.so) was not found; looked in: {}. Install it (`pip install \
             ai-edge-litert`) or name the file (option litert-lib, or $LITERT_LIB)",
            looked.join("; ")
        ));
    };
    // SAFETY: loading runs the library's initialisers; libLiteRt.so is a plain C/C++ library
    // without load-time side effects beyond its own statics.
    let lib = unsafe { libloading::Library::new(&library) }.map_err(|e| format!("{}: {e}", library.display()))?;
    let api =
        unsafe { Api::bind(&lib) }.map_err(|e| format!("{}: not a LiteRT 2.x C library: {e}", library.display()))?;
    let mut env: Handle = std::ptr::null_mut();
    let (status, log) = capturing_stderr(|| unsafe { (api.LiteRtCreateEnvironment)(0, std::ptr::null(), &mut env) });
    if status != 0 || env.is_null() {
        return Err(format!(
            "{}: LiteRT could not make its environment ({}){}",
            library.display(),
            status_text(status),
            errors_in(&log)
        ));
    }
    let version = wheel_version(&library);
    Ok(Loaded { api, env, info: LiteRtInfo { version, library }, _library: lib })
}

/// The `ai-edge-litert` version recorded in the wheel's `*.dist-info` beside the package.
fn wheel_version(library: &std::path::Path) -> Option<String> {
    let site = library.parent()?.parent()?;
    let entries = std::fs::read_dir(site).ok()?;
    entries.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let rest = name.strip_prefix("ai_edge_litert-")?;
        rest.strip_suffix(".dist-info").map(str::to_string)
    })
}

/// What a `LiteRtStatus` means (the codes of `litert/c/litert_common.h`).
pub(super) fn status_text(status: Status) -> String {
    let what = match status {
        1 => "invalid argument",
        2 => "memory allocation failure",
        3 => "runtime failure",
        4 => "missing input tensor",
        5 => "unsupported",
        6 => "not found",
        8 => "wrong version",
        501 => "invalid flatbuffer",
        504 => "compilation failed",
        _ => "error",
    };
    format!("LiteRT status {status}: {what}")
}

/// Runs `f` with the process's stderr sent to a scratch file and returns what was written there:
/// LiteRT prints INFO lines (and its reasons for failing) to stderr and exports no switch for
/// them. prunq keeps them out of the terminal and puts them in the error when a call fails. One
/// capture at a time; other threads' stderr lines written meanwhile land in it too.
pub(super) fn capturing_stderr<R>(f: impl FnOnce() -> R) -> (R, String) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(unix)]
    {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        let Ok(mut scratch) = tempfile::tempfile() else { return (f(), String::new()) };
        // SAFETY: plain descriptor juggling on fd 2, restored before returning.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 || unsafe { libc::dup2(scratch.as_raw_fd(), 2) } < 0 {
            return (f(), String::new());
        }
        let result = f();
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
        let mut text = String::new();
        let _ = scratch.rewind();
        let _ = scratch.read_to_string(&mut text);
        (result, text)
    }
    #[cfg(not(unix))]
    {
        (f(), String::new())
    }
}

/// The lines of LiteRT's captured log that say something went wrong (its ERROR lines), for an
/// error message.
pub(super) fn errors_in(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("ERROR") || l.contains("rror:")).collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join(" | "))
    }
}
