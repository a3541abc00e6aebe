use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A report written by `--report R.json` (quantize or prune).
    report: PathBuf,
    /// The HTML page to write.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.report).map_err(|e| crate::Error::io(&a.report, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::Error::Data(format!("{}: not a JSON report ({e})", a.report.display())))?;
    if !value.is_object() {
        return Err(crate::Error::Data(format!("{}: not a prunq report (no JSON object)", a.report.display())).into());
    }
    std::fs::write(&a.output, crate::report::html::page(&value)).map_err(|e| crate::Error::io(&a.output, e))?;
    println!("wrote {}", a.output.display());
    Ok(())
}
