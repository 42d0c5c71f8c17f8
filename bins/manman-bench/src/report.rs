//! Figures (min/median/max of repeated runs, beside a target) and the markdown report.
//!
//! Each scenario owns a section between `<!-- scenario:NAME -->` and `<!-- /scenario:NAME -->`;
//! writing replaces the sections of the scenarios that ran and keeps the others.

use std::fmt::Write as _;
use std::path::Path;

/// What a figure must reach.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The median must be at most this.
    AtMost(f64),
    /// The median must be at least this.
    AtLeast(f64),
    /// Reported without a target.
    None,
}

/// One measured quantity over the runs.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    pub(crate) target: Target,
    pub(crate) values: Vec<f64>,
}

impl Figure {
    pub(crate) fn new(name: &str, unit: &'static str, target: Target) -> Self {
        Self {
            name: name.to_owned(),
            unit,
            target,
            values: Vec::new(),
        }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.values.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    pub(crate) fn median(&self) -> Option<f64> {
        let v = self.sorted();
        if v.is_empty() {
            return None;
        }
        let mid = v.len() / 2;
        Some(if v.len().is_multiple_of(2) {
            f64::midpoint(v[mid - 1], v[mid])
        } else {
            v[mid]
        })
    }

    fn verdict(&self) -> &'static str {
        match (self.target, self.median()) {
            (_, None) => "not measured",
            (Target::None, _) => "—",
            (Target::AtMost(limit), Some(m)) if m <= limit => "met",
            (Target::AtLeast(limit), Some(m)) if m >= limit => "met",
            _ => "**MISSED**",
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtMost(v) => format!("≤ {} {}", number(v), self.unit),
            Target::AtLeast(v) => format!("≥ {} {}", number(v), self.unit),
            Target::None => "—".to_owned(),
        }
    }

    /// A markdown table row: name, target, min, median, max, verdict.
    pub(crate) fn row(&self) -> String {
        let v = self.sorted();
        let cell = |x: Option<&f64>| {
            x.map_or_else(
                || "—".to_owned(),
                |x| format!("{} {}", number(*x), self.unit),
            )
        };
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            self.name,
            self.target_text(),
            cell(v.first()),
            cell(self.median().as_ref()),
            cell(v.last()),
            self.verdict()
        )
    }
}

fn number(x: f64) -> String {
    if x.abs() >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A scenario's part of the report.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub(crate) scenario: &'static str,
    pub(crate) title: String,
    pub(crate) method: String,
    pub(crate) figures: Vec<Figure>,
    pub(crate) notes: Vec<String>,
}

impl Section {
    fn markdown(&self, machine: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<!-- scenario:{} -->", self.scenario);
        let _ = writeln!(out, "## {}\n", self.title);
        let _ = writeln!(out, "{}\n", self.method);
        let runs = self.figures.first().map_or(0, |f| f.values.len());
        let _ = writeln!(
            out,
            "Runs: {runs}. Measured {} on {machine}.\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(out, "| figure | target | min | median | max | |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for figure in &self.figures {
            let _ = writeln!(out, "{}", figure.row());
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        let _ = writeln!(out, "<!-- /scenario:{} -->", self.scenario);
        out
    }
}

const HEADER_END: &str = "<!-- /header -->";

/// Writes the report: a fresh header, then a section per scenario in `order` — the new one
/// where it ran, the kept one where it did not — then kept sections of scenarios no longer in
/// `order`.
pub(crate) fn write(
    path: &Path,
    machine: &str,
    order: &[&str],
    sections: &[Section],
) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut kept: Vec<(String, String)> = Vec::new();
    let mut rest = old.as_str();
    while let Some(start) = rest.find("<!-- scenario:") {
        let name_end = rest[start..].find(" -->").map_or(rest.len(), |e| start + e);
        let name = rest[start + "<!-- scenario:".len()..name_end].to_owned();
        let close = format!("<!-- /scenario:{name} -->");
        let Some(end) = rest.find(&close) else { break };
        kept.push((name, rest[start..end + close.len()].to_owned()));
        rest = &rest[end + close.len()..];
    }
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `cargo run --release -p manman-bench` (see `bins/manman-bench`); do not edit by \
         hand. Each figure is the min, median and max over repeated runs, beside its target; the \
         verdict is the median's. Timed expectations live here, not in the tests: this machine is \
         shared and noisy, and each section names the machine and the time it was measured on. \
         The end-to-end scenarios come first and lead with the distributed deployment \
         (`manman-host` on PostgreSQL and RabbitMQ, separate `manman-worker` processes): that \
         is how ManMan runs.\n"
    );
    let _ = writeln!(out, "{HEADER_END}\n");
    let mut text_of = |name: &str| -> Option<String> {
        if let Some(section) = sections.iter().find(|s| s.scenario == name) {
            return Some(section.markdown(machine));
        }
        let at = kept.iter().position(|(kept_name, _)| kept_name == name)?;
        Some(format!("{}\n", kept.remove(at).1))
    };
    for name in order {
        if let Some(text) = text_of(name) {
            out.push_str(&text);
            out.push('\n');
        }
    }
    // Kept sections of scenarios that are no longer run, last.
    for (name, text) in kept {
        if order.contains(&name.as_str()) || sections.iter().any(|s| s.scenario == name) {
            continue;
        }
        out.push_str(&text);
        out.push_str("\n\n");
    }
    std::fs::write(path, out)?;
    Ok(())
}
