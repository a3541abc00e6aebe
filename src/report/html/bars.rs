//! The page's one kind of plot: horizontal bar charts drawn as inline SVG.

use super::{esc, num};
use std::fmt::Write;

/// One horizontal bar chart: a row per label, a bar per series.
pub(super) struct Bars<'a> {
    pub(super) title: &'a str,
    pub(super) unit: &'a str,
    pub(super) labels: Vec<String>,
    pub(super) series: Vec<(&'a str, &'a str, Vec<f64>)>,
    /// Bars drawn red for these rows (kept float, slower).
    pub(super) flagged: Vec<bool>,
}

impl Bars<'_> {
    pub(super) fn svg(&self) -> String {
        if self.labels.is_empty() {
            return String::new();
        }
        let (label_w, plot_w, bar_h) = (300.0, 560.0, 11.0);
        let row_h = bar_h * self.series.len() as f64 + 5.0;
        let top = 22.0;
        let height = top + row_h * self.labels.len() as f64 + 8.0;
        let max = self.series.iter().flat_map(|s| s.2.iter()).copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
        let scale = if max > 0.0 { plot_w / max } else { 0.0 };
        let mut s = format!(
            "<h2>{}</h2><svg class=plot width={} height={height} role=img aria-label=\"{}\">",
            esc(self.title),
            label_w + plot_w + 110.0,
            esc(self.title)
        );
        let mut x = label_w;
        for (name, color, _) in &self.series {
            let _ = write!(
                s,
                "<rect x={x} y=4 width=10 height=10 fill=\"{color}\"/><text x={} y=13>{}</text>",
                x + 14.0,
                esc(name)
            );
            x += 24.0 + 7.0 * name.len() as f64;
        }
        let _ = write!(s, "<text x={} y=13 text-anchor=end>{}</text>", label_w + plot_w + 100.0, esc(self.unit));
        for (i, label) in self.labels.iter().enumerate() {
            let y0 = top + i as f64 * row_h;
            let short: String = if label.chars().count() > 46 {
                format!("…{}", label.chars().rev().take(45).collect::<Vec<_>>().into_iter().rev().collect::<String>())
            } else {
                label.clone()
            };
            let _ = write!(
                s,
                "<text x={} y={} text-anchor=end><title>{}</title>{}</text>",
                label_w - 6.0,
                y0 + bar_h,
                esc(label),
                esc(&short)
            );
            for (k, (_, color, values)) in self.series.iter().enumerate() {
                let v = values.get(i).copied().unwrap_or(f64::NAN);
                let w = if v.is_finite() { (v.max(0.0) * scale).max(1.0) } else { 1.0 };
                let fill = if self.flagged.get(i).copied().unwrap_or(false) { "#c0392b" } else { color };
                let y = y0 + k as f64 * bar_h;
                let _ = write!(
                    s,
                    "<rect class=bar x={label_w} y={y} width={w:.1} height={} fill=\"{fill}\"><title>{}: {}</title></rect>\
                     <text x={:.1} y={}>{}</text>",
                    bar_h - 2.0,
                    esc(label),
                    num(v),
                    label_w + w + 4.0,
                    y + bar_h - 3.0,
                    num(v)
                );
            }
        }
        s + "</svg>"
    }
}
