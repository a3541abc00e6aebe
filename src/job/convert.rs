//! The `convert` job: the model written as LiteRT (`.tflite`), run in LiteRT beside the original
//! before anything is written, then saved and reported.

use super::Job;
use crate::data::Dataset;
use crate::eval::OutputCheck;
use crate::litert::{ConvertOptions, Converted};
use crate::measure::Progress;
use crate::runtime::{ModelFile, RuntimeInfo};
use crate::{Error, Result};
use serde::Serialize;

/// What the conversion did and how the written model measured.
#[derive(Clone, Debug, Serialize)]
pub struct ConvertReport {
    /// The conversion's facts (operators, layout transposes, input sizes).
    pub conversion: Converted,
    /// The `.tflite` file's size in bytes.
    pub output_bytes: u64,
    /// The input's size in bytes.
    pub input_bytes: u64,
    /// The check the output passed before it was written (LiteRT against the original).
    pub output_check: OutputCheck,
    /// The LiteRT that ran the output.
    pub litert: RuntimeInfo,
    /// The runtime that ran the original.
    pub reference: RuntimeInfo,
}

/// A converted model: the `.tflite` bytes (as written, when an output was given) and its report.
pub struct ConvertedModel {
    /// The `.tflite` file's bytes.
    pub bytes: Vec<u8>,
    /// What was done and measured.
    pub report: ConvertReport,
}

impl Job<'_> {
    /// Converts the original to LiteRT, runs it in LiteRT beside the original (on the
    /// validation data, else the calibration data, else made-up inputs at the converted sizes),
    /// refuses it when outputs turn non-finite, then writes it atomically and reports.
    pub fn convert(&self, options: &ConvertOptions, progress: &dyn Progress) -> Result<ConvertedModel> {
        self.ensure_output_is_not_input()?;
        // Nothing is fitted: the check may run on any rows.
        self.calib_use.set(super::CalibUse::Run);
        self.specialise(progress)?;
        progress.start(1, "convert to LiteRT");
        let (converted, check) = self.checked_litert(self.original(), options, progress)?;
        progress.finish();
        let reference = crate::runtime::default_backend()?;
        super::say_simplified(&Some(converted.simplified.clone()), progress);
        progress.check_stop()?;
        let output_bytes = match self.output {
            Some(path) => {
                crate::onnx::write_atomically(path, &converted.bytes)?;
                converted.bytes.len() as u64
            }
            None => converted.bytes.len() as u64,
        };
        let input_bytes = self.input_size()?;
        progress.say(&format!(
            "size: {} → {} ({:.2}×)",
            crate::report::table::bytes(input_bytes),
            crate::report::table::bytes(output_bytes),
            output_bytes as f64 / input_bytes.max(1) as f64
        ));
        let litert = RuntimeInfo::of(crate::runtime::Backend::LiteRt);
        progress.say(&format!("measured in {litert} against {}", RuntimeInfo::of(reference)));
        let bytes = converted.bytes.clone();
        let report = ConvertReport {
            conversion: converted,
            output_bytes,
            input_bytes,
            output_check: check,
            litert,
            reference: RuntimeInfo::of(reference),
        };
        if let Some(path) = self.checks.report.as_deref() {
            let mut value =
                serde_json::to_value(&report).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
            if let Some(object) = value.as_object_mut() {
                object.insert("command".into(), "convert".into());
                object.insert("model".into(), self.input.map(|p| p.display().to_string()).into());
                object.insert("output".into(), self.output.map(|p| p.display().to_string()).into());
            }
            let text =
                serde_json::to_string_pretty(&value).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
            crate::onnx::write_atomically(path, text.as_bytes())?;
        }
        Ok(ConvertedModel { bytes, report })
    }

    /// Whether the output is a LiteRT file (`.tflite`): the result is then converted, checked in
    /// LiteRT and written as one, and timed in LiteRT against the input converted as it is.
    pub(super) fn writes_litert(&self) -> bool {
        self.output.and_then(|p| p.extension()).is_some_and(|e| e.eq_ignore_ascii_case("tflite"))
    }

    /// The result as LiteRT bytes, run in LiteRT beside the original first (refused when its
    /// outputs turn non-finite; its quality line said).
    pub(super) fn litert_of(&self, model: &crate::ir::Model, progress: &dyn Progress) -> Result<Vec<u8>> {
        let converted = self.checked_litert(model, &ConvertOptions::default(), progress)?.0;
        let options = ConvertOptions { input_shapes: converted.input_shapes.clone(), ..Default::default() };
        let input = crate::litert::convert(self.original(), &options)?.bytes;
        let _ = self.litert.set((input, converted.bytes.clone()));
        Ok(converted.bytes)
    }

    /// `model` converted (sizes from the check data where `options` gives none), said, and run in
    /// LiteRT beside the original on the check data; refused when its outputs turn non-finite,
    /// its quality line said.
    fn checked_litert(
        &self,
        model: &crate::ir::Model,
        options: &ConvertOptions,
        progress: &dyn Progress,
    ) -> Result<(Converted, OutputCheck)> {
        let options = crate::litert::sizes_from_data(self.original(), self.check_data(), options)?;
        let mut converted = crate::litert::convert(model, &options)?;
        let mut check = self.litert_check(&converted)?;
        // A quantize job's output floor (its `--target-sqnr`, or 3 dB under what the result
        // measured in the ONNX runtime when that is lower) is checked again in LiteRT: the
        // dynamic-range form, which quantizes float layers' activations at run time, is kept only
        // above it; a miss is said loudly.
        if let Some(floor) = self.litert_floor_db.get() {
            let worst = |c: &OutputCheck| c.outputs.iter().map(|o| o.sqnr_db).fold(f64::INFINITY, f64::min);
            let (layers, measured) = (converted.dynamic_range_layers, worst(&check));
            if layers > 0 && measured < floor {
                let float_form =
                    crate::litert::convert(model, &ConvertOptions { dynamic_range: false, ..options.clone() })?;
                // MatMuls the ONNX model itself quantizes at run time (DynamicQuantizeLinear) keep
                // that form either way: only the float layers' form is the converter's choice.
                let moved = layers - float_form.dynamic_range_layers;
                if moved > 0 {
                    converted = float_form;
                    check = self.litert_check(&converted)?;
                    progress.say(&format!(
                        "note: {moved} float fully connected layers compute in float from their int8 weights: \
                         LiteRT's dynamic-range form (activations quantized per row at run time) measured \
                         {measured:.1} dB, under the {floor:.1} dB floor"
                    ));
                }
            } else if layers > 0 {
                progress.say(&format!(
                    "note: {layers} fully connected layers with float activations and int8 weights run in LiteRT's \
                     dynamic-range form (activations quantized per row at run time): {measured:.1} dB, above the \
                     {floor:.1} dB floor"
                ));
            }
            if worst(&check) < floor {
                progress.say(&format!(
                    "warning: in LiteRT the output measures {:.1} dB, under the {floor:.1} dB floor (the output \
                     target, or 3 dB under the result in {}): LiteRT's integer kernels round differently — judge it on \
                     your data before shipping it",
                    worst(&check),
                    crate::runtime::default_backend()?
                ));
            }
        }
        progress.say(&format!(
            "converted to LiteRT: {} ONNX nodes → {} operators ({} layout transposes), inputs {}",
            converted.nodes.1,
            converted.operators,
            converted.layout_transposes,
            converted.input_shapes.iter().map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>().join(", ")
        ));
        if let Some(refusal) = check.refusal() {
            return Err(refusal);
        }
        self.say_quality(&check, progress);
        Ok((converted, check))
    }

    /// The converted model run in LiteRT beside the original (at the converted sizes) on the
    /// check data, else made-up inputs.
    fn litert_check(&self, converted: &Converted) -> Result<OutputCheck> {
        let fixed = crate::litert::with_fixed_inputs(self.original(), &converted.input_shapes);
        let (data, rows) = (self.check_data(), crate::eval::CHECK_ROWS);
        let batches = crate::eval::check_batches(&fixed, data, rows, 8)?;
        let reference = crate::runtime::default_backend()?;
        let rows = crate::eval::checked_rows(&fixed, data, rows)?;
        crate::eval::check_converted(&fixed, &converted.bytes, &batches, reference, rows)
    }

    /// The input and the result as LiteRT models at the same sizes (for comparing and timing
    /// them there): those the save made, else made now (when nothing was written).
    pub(super) fn litert_pair(&self, model: &crate::ir::Model) -> Result<(Vec<u8>, Vec<u8>)> {
        if let Some(pair) = self.litert.get() {
            return Ok(pair.clone());
        }
        let options = crate::litert::sizes_from_data(self.original(), self.check_data(), &ConvertOptions::default())?;
        let pair =
            (crate::litert::convert(self.original(), &options)?.bytes, crate::litert::convert(model, &options)?.bytes);
        let _ = self.litert.set(pair.clone());
        Ok(pair)
    }
}

/// `file` as LiteRT runs it: an ONNX model converted (batch 1; inputs with other open sizes at
/// those of `data`'s first row), a `.tflite` as it is — how `eval`, `compare` and `bench` run any
/// model in LiteRT (`--runtime litert`).
pub fn in_litert(file: ModelFile, data: Option<&Dataset>) -> Result<ModelFile> {
    match file {
        ModelFile::Onnx(model) => {
            let options = crate::litert::sizes_from_data(&model, data, &ConvertOptions::default())?;
            Ok(ModelFile::LiteRt(crate::litert::convert(&model, &options)?.bytes))
        }
        litert => Ok(litert),
    }
}
