//! Plain-text tables with aligned columns.

/// A table: header row, then rows; numbers right-aligned, text left-aligned.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: ToString>(header: &[S]) -> Table {
        Table { header: header.iter().map(ToString::to_string).collect(), rows: vec![] }
    }

    /// Adds a row.
    pub fn row<S: ToString>(&mut self, cells: &[S]) {
        self.rows.push(cells.iter().map(ToString::to_string).collect());
    }

    /// The table as aligned text.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let width = |c: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        // "1,234", "99.80 %", "-3.5e-2", "inf": right-aligned like numbers.
        let numeric = |s: &str| {
            let head = s.split(' ').next().unwrap_or("").replace(',', "");
            !head.is_empty() && head.parse::<f64>().is_ok()
        };
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = (0..cols)
                .map(|c| {
                    let s = r.get(c).map(String::as_str).unwrap_or("");
                    if numeric(s) {
                        format!("{s:>w$}", w = widths[c])
                    } else {
                        format!("{s:<w$}", w = widths[c])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        for r in &self.rows {
            out.push('\n');
            out.push_str(&line(r));
        }
        out.push('\n');
        out
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B/KiB/MiB/GiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < 3 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_and_aligns_columns() {
        assert_eq!(thousands(11879040), "11,879,040");
        assert_eq!(thousands(12), "12");
        assert_eq!(bytes(1536), "1.5 KiB");
        let mut t = Table::new(&["name", "n"]);
        t.row(&["a", "10"]);
        t.row(&["bbb", "2"]);
        assert_eq!(t.render(), "name  n\n----  --\na     10\nbbb    2\n");
    }
}
