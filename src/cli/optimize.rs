use prunq::eval::Progress;
use prunq::optimize::{Budget, Candidate, Metric, Objective, Observer, OptimizeConfig, Recipe};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model (never modified).
    model: PathBuf,
    /// Where to write the best model found.
    #[arg(short, long)]
    output: PathBuf,
    /// Calibration data (static quantization, GPTQ, the structured repair).
    #[arg(long)]
    calib: PathBuf,
    /// Validation data every candidate is judged on.
    #[arg(long)]
    val: PathBuf,
    /// How candidates are judged (default: accuracy when --val has labels, exact-lines with
    /// --text, else top-1 agreement with the original; choose cosine for embeddings).
    #[arg(long, value_enum)]
    metric: Option<Metric>,
    /// Expected text of each validation sample, one a line (exact-lines, cer).
    #[arg(long)]
    text: Option<PathBuf>,
    /// The most quality may drop from the original's, in the metric's unit (points for
    /// percentages; default 1, or 0.01 for cosine).
    #[arg(long, conflicts_with = "min_quality")]
    max_drop: Option<f64>,
    /// The least quality a result may have (the most, for cer).
    #[arg(long)]
    min_quality: Option<f64>,
    /// What the winner is best at among those that keep the budget.
    #[arg(long, value_enum, default_value = "latency")]
    objective: Objective,
    /// No new candidate is started after this long (e.g. 90s, 10m, 1h); the best so far wins.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    time_budget: std::time::Duration,
    /// Write the search (every candidate, the Pareto front, the winner): JSON, or an HTML page
    /// with plots when the name ends in .html.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the winner's recipe (TOML) for `prunq apply`.
    #[arg(long)]
    save_recipe: Option<PathBuf>,
}

/// `90s`, `10m`, `1h` or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: f64 = digits.trim().parse().map_err(|_| format!("'{s}' is not a duration like 90s or 10m"))?;
    let seconds = match unit {
        's' => n,
        'm' => n * 60.0,
        'h' => n * 3600.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (s, m or h)")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("'{s}' is not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// Prints each candidate as it is measured, with the best so far.
pub(super) struct Printer(pub(super) Metric);

impl Observer for Printer {
    fn trying(&self, label: &str) {
        eprintln!("trying {label} …");
    }
    fn measured(&self, c: &Candidate, best: Option<&Candidate>) {
        match (&c.error, c.quality) {
            (Some(e), _) => println!("  {}: not made: {e}", c.label),
            (None, Some(q)) => println!(
                "  {}: {}, {:.2}× size, {:.2}× speed{}",
                c.label,
                self.0.show(q.value),
                c.size_ratio,
                c.speedup,
                if c.meets_budget { "" } else { " (over the budget)" }
            ),
            _ => {}
        }
        if let Some(b) = best {
            println!("  best so far: {} ({:.2}× speed, {:.2}× size)", b.label, b.speedup, b.size_ratio);
        }
    }
}

pub(super) fn read_texts(path: Option<&Path>) -> anyhow::Result<Option<Vec<String>>> {
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(p).map_err(|e| prunq::Error::io(p, e))?;
    Ok(Some(text.lines().map(str::to_string).collect()))
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    prunq::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = prunq::onnx::load(&a.model)?;
    let calib = super::open_data(&a.calib)?;
    let val = super::open_data(&a.val)?;
    let texts = read_texts(a.text.as_deref())?;
    let metric = match a.metric {
        Some(m) => m,
        None if texts.is_some() => Metric::ExactLines,
        None if val.bind(&prunq::runtime::feed_inputs(&original), None)?.labels.is_some() => Metric::Accuracy,
        None => Metric::Agreement,
    };
    let budget = match (a.max_drop, a.min_quality) {
        (_, Some(q)) => Budget::MinQuality(q),
        (Some(d), None) => Budget::MaxDrop(d),
        (None, None) => Budget::MaxDrop(if metric == Metric::Cosine { 0.01 } else { 1.0 }),
    };
    let config = OptimizeConfig { metric, budget, objective: a.objective, time_budget: a.time_budget, texts };
    let _ = progress;
    let (report, model) = prunq::optimize::optimize(&original, &config, &calib, &val, &Printer(metric))?;
    let (model, recipe) = match (model, report.chosen) {
        (Some(m), Some(i)) => (m, report.candidates[i].recipe.clone()),
        _ => {
            println!(
                "warning: no candidate kept the budget ({} at worst {}): the output is the input as it was",
                metric.show(report.original_quality),
                metric.show(report.bound)
            );
            (original.clone(), Recipe::default())
        }
    };
    super::check_before_write(&original, &model, Some(&a.val))?;
    prunq::onnx::save(&model, &a.output, &Default::default())?;
    if let Some(path) = &a.save_recipe {
        let text = format!(
            "# prunq recipe: {}\n# made by `prunq optimize` on {} ({}, {}); replay with\n#   prunq apply {} MODEL -o OUT --calib {}\n\n{}",
            recipe.label(),
            a.model.display(),
            metric.show(report.original_quality),
            match report.chosen {
                Some(i) => format!(
                    "result: {}",
                    report.candidates[i].quality.map(|q| metric.show(q.value)).unwrap_or_default()
                ),
                None => "no candidate kept the budget".into(),
            },
            path.display(),
            a.calib.display(),
            recipe.to_toml()?
        );
        prunq::onnx::write_atomically(path, text.as_bytes())?;
    }
    let front: Vec<&Candidate> = report.candidates.iter().filter(|c| c.pareto).collect();
    println!("\n{} candidates in {:.0} s; Pareto front:", report.candidates.len(), report.seconds);
    for c in front {
        let q = c.quality.map(|q| metric.show(q.value)).unwrap_or_default();
        println!("  {q}, {:.2}× size, {:.2}× speed: {}", c.size_ratio, c.speedup, c.label);
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    println!(
        "\nwrote {}: {} (original {}, at worst {}); measured in {}",
        a.output.display(),
        recipe.label(),
        metric.show(report.original_quality),
        metric.show(report.bound),
        report.runtime
    );
    let about = super::Reported {
        command: "optimize".into(),
        input: (&a.model, &original),
        output: (&a.output, &model),
        data: Some(&a.val),
    };
    super::write_report(a.report.as_deref(), about, &report)
}
