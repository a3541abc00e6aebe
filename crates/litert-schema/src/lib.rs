//! The LiteRT flatbuffer schema (`schema/schema.fbs`, version 3c) as planus types, and
//! [`finish_model`], which writes a `Model` as LiteRT reads it.

#[allow(clippy::all, unused, non_snake_case, non_camel_case_types, missing_docs)]
mod generated;

pub use generated::tflite::*;
pub use planus;

/// The file identifier of a LiteRT model (`file_identifier "TFL3"` in the schema).
pub const FILE_IDENTIFIER: [u8; 4] = *b"TFL3";

/// Serializes `model` with the file identifier where FlatBuffers puts it: bytes 0–3 the offset
/// of the root table, bytes 4–7 `TFL3`.
///
/// planus 1.3's `Builder::finish` with an identifier writes the two words the other way round
/// (identifier first, then an offset relative to its own position 4). Swapping them back and
/// rebasing the offset onto position 0 is all it takes: every other offset in a flatbuffer is
/// relative to where it is stored, and the buffer's length and alignment do not change.
pub fn finish_model(model: &Model) -> Vec<u8> {
    let mut builder = planus::Builder::new();
    let mut bytes = builder.finish(model, Some(FILE_IDENTIFIER)).to_vec();
    if bytes[0..4] == FILE_IDENTIFIER {
        let offset = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        bytes[0..4].copy_from_slice(&(offset + 4).to_le_bytes());
        bytes[4..8].copy_from_slice(&FILE_IDENTIFIER);
    }
    bytes
}

/// The bytes of the metadata entry `name` of the LiteRT model `bytes` (None when the model has
/// none of that name, or the bytes are not a LiteRT model).
pub fn metadata(bytes: &[u8], name: &str) -> Option<Vec<u8>> {
    use planus::ReadAsRoot;
    let model = ModelRef::read_as_root(bytes).ok()?;
    let entry =
        model.metadata().ok()??.iter().filter_map(|m| m.ok()).find(|m| m.name().ok().flatten() == Some(name))?;
    let buffer = model.buffers().ok()??.get(entry.buffer().ok()? as usize)?.ok()?;
    Some(buffer.data().ok()??.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use planus::ReadAsRoot;

    fn small_model() -> Model {
        Model {
            version: 3,
            description: Some("prunq test".into()),
            buffers: Some(vec![Buffer::default(), Buffer { data: Some(vec![1, 2, 3, 4]), ..Default::default() }]),
            operator_codes: Some(vec![OperatorCode {
                builtin_code: BuiltinOperator::Relu,
                version: 1,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn the_identifier_follows_the_root_offset() {
        let bytes = finish_model(&small_model());
        assert_eq!(&bytes[4..8], b"TFL3");
        let root = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
        assert!(root >= 8 && root < bytes.len(), "root offset {root} of {}", bytes.len());
    }

    #[test]
    fn the_written_model_reads_back() {
        let bytes = finish_model(&small_model());
        let model = ModelRef::read_as_root(&bytes).expect("a valid flatbuffer");
        assert_eq!(model.version().unwrap(), 3);
        assert_eq!(model.description().unwrap(), Some("prunq test"));
        let buffers = model.buffers().unwrap().unwrap();
        assert_eq!(buffers.get(1).unwrap().unwrap().data().unwrap().unwrap().to_vec(), vec![1u8, 2, 3, 4]);
        let code = model.operator_codes().unwrap().unwrap().get(0).unwrap().unwrap();
        assert_eq!(code.builtin_code().unwrap(), BuiltinOperator::Relu);
    }
}
