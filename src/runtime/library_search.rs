//! Where prunq looks for a runtime's shared library that a Python package ships (ONNX Runtime in
//! `onnxruntime`, LiteRT in `ai-edge-litert`): one search order for every runtime loaded at run time.
//!
//! In order: the file the user named (final: never another), the environment variable (final too),
//! the package inside the active Python environment (`$VIRTUAL_ENV`, then `python3`'s
//! site-packages), then `./.venv`.

use std::path::{Path, PathBuf};

/// What to look for.
pub(super) struct LibrarySearch<'a> {
    /// The file the user named (`--ort-lib`, `--litert-lib`).
    pub explicit: Option<&'a Path>,
    /// The environment variable naming the file (`ORT_DYLIB_PATH`, `LITERT_LIB`).
    pub env_var: &'static str,
    /// The library's folder inside site-packages (`onnxruntime/capi`, `ai_edge_litert`).
    pub package_dir: &'static str,
    /// Whether a file name in that folder is the library.
    pub is_library: fn(&str) -> bool,
}

impl LibrarySearch<'_> {
    /// Existing library files in search order (newest name first within a folder), and a
    /// description of every place looked, for the error when none is found.
    pub fn candidates(&self) -> (Vec<PathBuf>, Vec<String>) {
        let mut found = vec![];
        let mut looked = vec![];
        if let Some(p) = self.explicit {
            looked.push(format!("the library asked for, {}", p.display()));
            if p.is_file() {
                found.push(p.to_path_buf());
            }
            return (found, looked);
        }
        if let Some(p) = std::env::var_os(self.env_var).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            looked.push(format!("${}={}", self.env_var, p.display()));
            if p.is_file() {
                found.push(p);
            }
            return (found, looked);
        }
        let mut site_dirs = vec![];
        if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
            site_dirs.extend(venv_site_packages(Path::new(&venv)));
        }
        site_dirs.extend(python_site_packages());
        site_dirs.extend(venv_site_packages(Path::new(".venv")));
        for dir in site_dirs {
            let folder = dir.join(self.package_dir);
            looked.push(folder.display().to_string());
            found.extend(self.library_files(&folder));
        }
        if !Path::new(".venv").is_dir() {
            looked.push("./.venv (none here)".into());
        }
        (found, looked)
    }

    fn library_files(&self, dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| (self.is_library)(&n.to_string_lossy())))
            .collect();
        files.sort();
        files.reverse();
        files
    }
}

/// `VENV/lib/python3.*/site-packages` (and Windows' `VENV/Lib/site-packages`).
fn venv_site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![venv.join("Lib").join("site-packages")];
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        let mut pythons: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("site-packages")).collect();
        pythons.sort();
        dirs.extend(pythons);
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// The site-packages folders of `python3` on the PATH (asked, not guessed; importing nothing, so
/// it costs a few milliseconds).
fn python_site_packages() -> Vec<PathBuf> {
    let script = "import site, sys\nfor p in site.getsitepackages() + [site.getusersitepackages()]: print(p)";
    let Ok(out) = std::process::Command::new("python3").args(["-c", script]).output() else { return vec![] };
    String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).filter(|p| p.is_dir()).collect()
}
