//! The timeline of a run as an SVG, from its samples: desired, running and duplicate replicas
//! over time, with the splits of the network as bands, container kills as ticks and client
//! failures as a strip; below, one row per node showing its state (up, down, paused, offline)
//! and how many containers it runs.

use crate::backend::NodeState;
use crate::report::Report;
use std::fmt::Write;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 56.0;
const CHART: f64 = 220.0;
const ROW: f64 = 14.0;

/// Nodes drawn as rows at most; the rest are summed up in a line.
const MAX_ROWS: usize = 40;

fn state_colour(state: NodeState) -> &'static str {
    match state {
        NodeState::Absent => "#ffffff",
        NodeState::Up => "#cfe8cf",
        NodeState::Down => "#555555",
        NodeState::Paused => "#f0b44c",
        NodeState::Offline => "#a78bd8",
    }
}

/// The run's timeline.
pub fn timeline(report: &Report) -> String {
    let samples = &report.samples;
    let end_ms = (report.duration_s * 1000.0).max(1.0);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |ms: f64| LEFT + plot * ms / end_ms;
    let nodes = samples.last().map_or(0, |s| s.nodes.len());
    let rows = nodes.min(MAX_ROWS);
    let strip_top = TOP + CHART + 30.0;
    let rows_top = strip_top + 30.0;
    let height = rows_top + ROW * rows as f64 + 50.0;
    let top_value = samples
        .iter()
        .map(|s| s.desired.max(s.serving + s.duplicates))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let y = |v: f64| TOP + CHART - CHART * v / top_value;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let verdict = if report.passed { "passed" } else { "FAILED" };
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="14">{} on {} ({} nodes, seed {}): {verdict}</text>"#,
        escape(&report.scenario),
        report.backend,
        report.nodes,
        report.seed
    );
    for sep in &report.separations {
        let (from, to) = (sep.from_s * 1000.0, sep.to_s.map_or(end_ms, |t| t * 1000.0));
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{CHART}" fill="#ffe680" opacity="0.5"><title>{}</title></rect>"##,
            x(from),
            (x(to) - x(from)).max(1.0),
            escape(&sep.what)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{}" fill="#806000">{}</text>"##,
            x(from) + 2.0,
            TOP + 12.0,
            escape(&sep.what)
        );
    }
    // Axes and grid.
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
        TOP + CHART,
        WIDTH - RIGHT,
        TOP + CHART
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="#333"/>"##,
        TOP + CHART
    );
    let step = (top_value / 1.1 / 5.0).ceil().max(1.0);
    for i in 0..=5 {
        let v = step * i as f64;
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
            LEFT - 6.0,
            y(v) + 4.0
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#eee"/>"##,
            y(v),
            WIDTH - RIGHT,
            y(v)
        );
    }
    let tick = nice_step(end_ms / 1000.0 / 8.0);
    let mut t = 0.0;
    while t * 1000.0 <= end_ms {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{t}s</text>"##,
            x(t * 1000.0),
            TOP + CHART + 14.0
        );
        t += tick;
    }
    let line = |value: &dyn Fn(&crate::report::Sample) -> f64, colour: &str, dash: &str| {
        let points: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.at_ms as f64), y(value(s))))
            .collect();
        format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" stroke-dasharray="{dash}" points="{}"/>"#,
            points.join(" ")
        )
    };
    let _ = writeln!(svg, "{}", line(&|s| f64::from(s.desired), "#888", "5,3"));
    let _ = writeln!(svg, "{}", line(&|s| f64::from(s.serving), "#1f6fb4", ""));
    let _ = writeln!(svg, "{}", line(&|s| f64::from(s.duplicates), "#d62728", ""));
    for &kill in &report.kills {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#d62728"/>"##,
            x(kill as f64),
            TOP - 6.0,
            TOP
        );
    }
    let legend = [
        ("#888", "desired"),
        ("#1f6fb4", "running"),
        ("#d62728", "running twice; ticks: containers killed"),
    ];
    let mut lx = LEFT;
    for (colour, name) in legend {
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="28" width="10" height="10" fill="{colour}"/><text x="{}" y="37">{name}</text>"#,
            lx + 14.0
        );
        lx += 20.0 + 6.5 * name.len() as f64;
    }
    // Client failures, per interval between samples.
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">client</text>"#,
        LEFT - 6.0,
        strip_top + 11.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{strip_top}" width="{plot}" height="14" fill="#f4f4f4"/>"##
    );
    for pair in samples.windows(2) {
        let (asked, answered) = (
            pair[1].requests - pair[0].requests,
            pair[1].answered - pair[0].answered,
        );
        if asked > answered {
            let (a, b) = (x(pair[0].at_ms as f64), x(pair[1].at_ms as f64));
            let _ = writeln!(
                svg,
                r##"<rect x="{a:.1}" y="{strip_top}" width="{:.1}" height="14" fill="#d62728"><title>{} of {asked} failed</title></rect>"##,
                (b - a).max(1.0),
                asked - answered
            );
        }
    }
    // One row per node: its state, and its running containers as a dark line.
    let most = samples
        .iter()
        .flat_map(|s| s.running_on.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    for node in 0..rows {
        let top = rows_top + ROW * node as f64;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">node {node}</text>"#,
            LEFT - 6.0,
            top + 11.0
        );
        let mut from = 0;
        for i in 1..=samples.len() {
            let changed = i == samples.len() || samples[i].nodes[node] != samples[from].nodes[node];
            if changed {
                let state = samples[from].nodes[node];
                let (a, b) = (
                    x(samples[from].at_ms as f64),
                    x(samples[i.min(samples.len() - 1)].at_ms as f64),
                );
                let _ = writeln!(
                    svg,
                    r#"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{}" fill="{}"><title>{state:?}</title></rect>"#,
                    (b - a).max(1.0),
                    ROW - 2.0,
                    state_colour(state)
                );
                from = i;
            }
        }
        let points: Vec<String> = samples
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1}",
                    x(s.at_ms as f64),
                    top + ROW - 2.0 - (ROW - 4.0) * f64::from(s.running_on[node]) / most
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="#235" stroke-width="1" points="{}"/>"##,
            points.join(" ")
        );
    }
    let note_y = rows_top + ROW * rows as f64 + 18.0;
    if nodes > rows {
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{note_y}">… and {} more nodes (not drawn)</text>"#,
            nodes - rows
        );
    }
    let mut lx = LEFT;
    for state in [
        NodeState::Up,
        NodeState::Down,
        NodeState::Paused,
        NodeState::Offline,
    ] {
        let _ = writeln!(
            svg,
            r##"<rect x="{lx}" y="{}" width="10" height="10" fill="{}" stroke="#999"/><text x="{}" y="{}">{state:?}</text>"##,
            note_y + 8.0,
            state_colour(state),
            lx + 14.0,
            note_y + 17.0
        );
        lx += 90.0;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{lx}" y="{}">dark line: containers running on the node</text>"#,
        note_y + 17.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// A round step (1, 2 or 5 times a power of ten) of at least `at_least`.
fn nice_step(at_least: f64) -> f64 {
    let at_least = at_least.max(0.001);
    let power = 10f64.powf(at_least.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= at_least)
        .unwrap_or(10.0 * power)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
