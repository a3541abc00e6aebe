//! The `quantize` job: the pass, then the shared tail.

use super::{say_simplified, untouched_subgraphs, Done, Job};
use crate::measure::Progress;
use crate::quant::{QuantConfig, QuantMode, QuantReport, Rounding};
use crate::{Error, Result};

/// How much lower than the ONNX result's own output SQNR its LiteRT file may measure before it is
/// said to have dropped (see `Job::quantize`).
const LITERT_SQNR_MARGIN_DB: f64 = 3.0;

impl Job<'_> {
    /// Quantizes the original as `config` says, then checks, writes, compares, times and reports
    /// the result. Static quantization keeps int8 only where it measures faster when the latency
    /// check is on (`config.keep_faster` is the job's `checks.latency`) — timed in LiteRT for a
    /// `.tflite` output, whose weights are then int8 whatever the CPU.
    pub fn quantize(&self, config: &QuantConfig, progress: &dyn Progress) -> Result<Done<QuantReport>> {
        let (started, timed) = (std::time::Instant::now(), crate::measure::Timed::new(progress));
        let progress: &dyn Progress = &timed;
        let mut config = QuantConfig { keep_faster: self.checks.latency, ..config.clone() };
        if self.writes_litert() {
            // A .tflite runs in LiteRT: its speed trials are timed there, and its int8 kernels
            // take symmetric int8 weights (uint8 ones are ONNX Runtime's remedy on x86 without VNNI).
            if config.unsigned_weights == Some(true) {
                return Err(Error::Usage(
                    "LiteRT's int8 kernels take int8 weights: --weight-type uint8 is for ONNX outputs".into(),
                ));
            }
            config.unsigned_weights = Some(false);
            config.in_litert = true;
        }
        config.validate()?;
        if config.algorithm == Rounding::Gptq && self.calib.is_none() {
            return Err(Error::Usage("algorithm gptq needs calibration data (--calib DATA)".into()));
        }
        if config.mode == QuantMode::Static && self.calib.is_none() {
            return Err(Error::Usage("mode static needs calibration data (--calib DATA)".into()));
        }
        self.ensure_output_is_not_input()?;
        self.specialise(progress)?;
        let mut model = self.original().clone();
        // fp16 checks its ranges on the validation data when there is some.
        let data = if config.mode == QuantMode::Fp16 { self.val.or(self.fit_data()) } else { self.fit_data() };
        let mut report = crate::quant::quantize(&mut model, &config, data, progress)?;
        say_simplified(&report.simplified, progress);
        report.size_before = self.input_size()?;
        // Every mode but static quantizes inside control-flow bodies too (data-free).
        if config.mode == QuantMode::Static {
            if let Some(said) = untouched_subgraphs(&model, "quantized", report.tensors.is_empty(), progress)? {
                report.notes.push(said);
            }
        }
        let (check, measured) = self.check_and_time_before_write(&model, progress)?;
        if self.writes_litert() && config.target_sqnr > 0.0 {
            // What the LiteRT file must keep: the output target, or (when the result measured under
            // it here) within 3 dB of what it measured in the ONNX runtime — LiteRT's integer
            // kernels round differently: ppocr_rec_v4's int8 file reads the same lines at 2.3 dB less.
            let here = check.outputs.iter().map(|o| o.sqnr_db).fold(f64::INFINITY, f64::min);
            self.litert_floor_db.set(Some(config.target_sqnr.min(here - LITERT_SQNR_MARGIN_DB)));
        }
        report.output_check = Some(check);
        report.size_after = self.save(&model, progress)?;
        progress.say(&format!(
            "{} tensors quantized{}, {} left float; {} → {} ({:.2}×); opset {} → {}",
            report.tensors.len(),
            crate::quant::forms_said(&report.tensors),
            report.skipped.len(),
            crate::report::table::bytes(report.size_before),
            crate::report::table::bytes(report.size_after),
            report.size_after as f64 / report.size_before as f64,
            report.opset_before,
            report.opset_after
        ));
        for note in &report.notes {
            progress.say(&format!("note: {note}"));
        }
        // The report always carries a comparison: on the validation data, else the calibration data.
        let judge_on = self.val.or(if self.checks.report.is_some() { self.check_data() } else { None });
        report.comparison = self.compare(&model, judge_on, progress)?;
        report.runtime = self.runtime_used(self.calib.is_some() || judge_on.is_some(), progress)?;
        if matches!(config.mode, QuantMode::Static | QuantMode::Dynamic)
            && config.unsigned_weights.is_none()
            && config.uses_unsigned_weights()
        {
            progress.say(
                "note: weights are uint8 (zero point 128): this x86 CPU has no VNNI, and ONNX Runtime's u8×s8 \
                 kernels here add pairs of products in 16 bits, which saturate on int8 weights \
                 (--weight-type int8 for VNNI or ARM targets)",
            );
        }
        report.latency = self.latency(&model, measured, progress)?;
        (report.stages, report.seconds) = (timed.stages(), Some(started.elapsed().as_secs_f64()));
        self.write_report(&format!("quantize --mode {}", report.mode), &model, self.check_data(), &report)?;
        Ok(Done { model, report })
    }
}
