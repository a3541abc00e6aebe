use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Input shape for counting MACs, e.g. `input=1x1x16x16` (dynamic dims default to 1).
    #[arg(long, value_parser = crate::analysis::parse_shape)]
    shape: Vec<(String, Vec<usize>)>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Also list the channel groups structured pruning sees, and why any cannot be pruned.
    #[arg(long)]
    groups: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let model = crate::onnx::load(&a.model)?;
    let size = std::fs::metadata(&a.model).map(|m| m.len()).ok();
    let shapes: BTreeMap<_, _> = a.shape.into_iter().collect();
    let summary = crate::analysis::summarize(&model, &shapes, size)
        .with_context(|| format!("{}: cannot analyse the model", a.model.display()))?;
    if a.json {
        super::print_json(&summary)
    } else {
        print!("{}", crate::report::text::summary(&summary));
        if a.groups {
            let (deps, _, _) = crate::prune::structured::channel_groups(&mut model.clone(), &shapes)
                .with_context(|| format!("{}: cannot follow the channels", a.model.display()))?;
            print!("\n{}", crate::report::text::groups(&deps));
        }
        Ok(())
    }
}
