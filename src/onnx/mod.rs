//! ONNX files in and out: decode with prost, convert to the IR and back,
//! external data, atomic writes.

mod external;
mod file_buf;
mod from_ir;
pub mod limits;
mod to_ir;

pub use external::{ExternalMode, EXTERNAL_MIN_BYTES};

use crate::ir::Model;
use crate::proto;
use crate::{Error, Result};
use external::{ExternalData, ExternalSink};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Protobuf cannot encode a message past 2 GiB.
pub const PROTOBUF_LIMIT: usize = i32::MAX as usize;

/// Loads and checks a model; external data is read relative to its folder.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let dir = path.canonicalize().map_err(|e| Error::io(path, e))?.parent().map(Path::to_path_buf);
    let model =
        decode_with(bytes.into(), ExternalData { dir, model_path: path.to_path_buf(), maps: Default::default() })?;
    Ok(model)
}

/// Decodes a model held in memory (no external data allowed).
pub fn decode(bytes: impl Into<bytes::Bytes>) -> Result<Model> {
    decode_with(
        bytes.into(),
        ExternalData { dir: None, model_path: PathBuf::from("<memory>"), maps: Default::default() },
    )
}

fn decode_with(bytes: bytes::Bytes, ext: ExternalData) -> Result<Model> {
    let path = ext.model_path.clone();
    let p = proto::ModelProto::decode(bytes).map_err(|cause| Error::Decode { path: path.clone(), cause })?;
    let in_file = |e: Error| match e {
        Error::Model(m) if !m.starts_with(&path.display().to_string()) => {
            Error::Model(format!("{}: {m}", path.display()))
        }
        e => e,
    };
    let model = to_ir::model(p, &ext).map_err(in_file)?;
    model.graph.validate(&Default::default()).map_err(in_file)?;
    limits::check(&model.graph, limits::memory_limit()).map_err(in_file)?;
    Ok(model)
}

/// The model as protobuf bytes, every tensor inline (for the runtime).
pub fn encode(model: &Model) -> Result<Vec<u8>> {
    let p = from_ir::model(model, &mut ExternalSink::inline())?;
    let len = p.encoded_len();
    if len > PROTOBUF_LIMIT {
        return Err(Error::Model(format!("the model is {len} bytes, past protobuf's 2 GB limit")));
    }
    Ok(p.encode_to_vec())
}

/// The bytes `save` would write for the model with every tensor inline
/// (sparse-stored tensors sparse): its size as a file, without writing one.
pub fn file_size(model: &Model) -> Result<u64> {
    Ok(from_ir::model(model, &mut ExternalSink::inline_as_in_a_file())?.encoded_len() as u64)
}

/// How `save` writes a model.
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// Whether weights go to an external data file.
    pub external: ExternalMode,
}

/// Writes the model to `path` atomically: to a temporary file in the same
/// folder, synced, then renamed, so a failure never leaves a partial file.
/// External data (if any) goes to `<file name>.<content hash>.data` beside it.
pub fn save(model: &Model, path: impl AsRef<Path>, options: &SaveOptions) -> Result<()> {
    let path = path.as_ref();
    let weights: usize = total_tensor_bytes(model);
    // Leave room for the graph itself under the limit.
    let too_big = weights > PROTOBUF_LIMIT - (64 << 20);
    let mut sink = ExternalSink::new(path, options.external, too_big);
    let mut p = from_ir::model(model, &mut sink)?;
    let location = sink.final_location();
    if let Some(to) = &location {
        external::relocate(&mut p, sink.location(), to);
    }
    let len = p.encoded_len();
    if len > PROTOBUF_LIMIT {
        return Err(Error::Model(format!(
            "{}: the model would be {len} bytes, past protobuf's 2 GB limit (use external data)",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = output_temp_file(dir)?;
    let mut out = file_buf::FileBuf::new(tmp.as_file_mut());
    p.encode(&mut out).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
    out.finish().and_then(|w| w.flush()).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    sink.commit()?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    external::remove_stale_data(path, location.as_deref());
    Ok(())
}

/// Writes `bytes` (a recipe, a report) to `path` as models are written: a
/// temporary file beside it, renamed into place when complete.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = output_temp_file(dir)?;
    std::io::Write::write_all(tmp.as_file_mut(), bytes).map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// A temporary file in `dir` that is renamed over an output when complete. Created with the mode an
/// ordinary new file gets (0666 less the umask): tempfile's own 0600 would leave outputs unreadable to
/// the group and others that the user's umask lets read them.
fn output_temp_file(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".prunq-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))
}

/// Fails when `output` is the same file as `input`: prunq never modifies its input.
pub fn ensure_not_input(input: &Path, output: &Path) -> Result<()> {
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::Usage(format!(
            "{}: refusing to overwrite the input model; choose another output path",
            output.display()
        )));
    }
    Ok(())
}

fn total_tensor_bytes(model: &Model) -> usize {
    let g = &model.graph;
    let inits: usize = g.initializers.iter().map(|t| t.byte_size()).sum();
    let consts: usize = g
        .nodes
        .iter()
        .flat_map(|n| n.attributes.iter())
        .map(|a| match &a.value {
            crate::ir::AttrValue::Tensor(t) => t.byte_size(),
            _ => 0,
        })
        .sum();
    inits + consts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::testing::{model, node, tensor, wavy};

    fn no_temp_files(dir: &Path) -> bool {
        std::fs::read_dir(dir).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with(".prunq-"))
    }

    #[test]
    fn the_input_is_never_the_output_whatever_the_path_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.onnx");
        std::fs::write(&m, b"x").unwrap();
        let same = dir.path().join(".").join("m.onnx");
        let e = ensure_not_input(&m, &same).unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite the input model"), "{e}");
        assert!(ensure_not_input(&m, &dir.path().join("out.onnx")).is_ok(), "a new file is fine");
    }

    #[test]
    fn saved_models_read_back_equal_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let m =
            model(vec![node("MatMul", &["x", "w"], "y", &[])], vec![tensor("w", &[4, 4], wavy)], &[1, 4], &["y"], 17);
        let path = dir.path().join("m.onnx");
        save(&m, &path, &Default::default()).unwrap();
        assert!(no_temp_files(dir.path()));
        let back = load(&path).unwrap();
        assert_eq!(encode(&back).unwrap(), encode(&m).unwrap());
        assert_eq!(file_size(&m).unwrap(), std::fs::metadata(&path).unwrap().len(), "file_size is the file's size");
    }

    #[cfg(unix)]
    #[test]
    fn written_files_follow_the_umask_like_any_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_atomically(&path, b"{}").unwrap();
        // Whatever the process's umask, an ordinary new file gets 0666 less it: compare with one.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert!(no_temp_files(dir.path()));
    }
}
