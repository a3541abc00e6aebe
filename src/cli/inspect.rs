use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Input shape for counting MACs, e.g. `input=1x1x16x16` (dynamic dims default to 1).
    #[arg(long, value_parser = prunq::analysis::parse_shape)]
    shape: Vec<(String, Vec<usize>)>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Also list the channel groups structured pruning sees, and why any cannot be pruned.
    #[arg(long)]
    groups: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let model = prunq::onnx::load(&a.model)?;
    let size = std::fs::metadata(&a.model).map(|m| m.len()).ok();
    let shapes: BTreeMap<_, _> = a.shape.into_iter().collect();
    let summary = prunq::analysis::summarize(&model, &shapes, size)
        .with_context(|| format!("{}: cannot analyse the model", a.model.display()))?;
    if a.json {
        super::print_json(&summary)
    } else {
        print!("{}", prunq::report::text::summary(&summary));
        if a.groups {
            let (deps, _, _) = prunq::prune::structured::channel_groups(&mut model.clone(), &shapes)
                .with_context(|| format!("{}: cannot follow the channels", a.model.display()))?;
            print!("\n{}", prunq::report::text::groups(&deps));
        }
        Ok(())
    }
}
