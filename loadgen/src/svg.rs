//! Hand-written SVG line charts: axes with "nice" ticks, labels, one
//! polyline per series and a legend. Enough for throughput over time and
//! HDR latency percentile curves without a plotting crate.

use std::fmt::Write;

/// One line on a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in data coordinates (x already transformed for log axes).
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (e.g. the offered load next to the achieved one).
    pub dashed: bool,
}

/// A chart to render.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Explicit x ticks `(position, label)`; `None` picks nice linear ticks.
    pub x_ticks: Option<Vec<(f64, String)>>,
    /// The lines.
    pub series: Vec<Series>,
}

const W: f64 = 800.0;
const H: f64 = 450.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 45.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A 1/2/5 x 10^k step giving about `n` intervals over `span`.
pub fn nice_step(span: f64, n: usize) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Tick label: integers without decimals, SI suffix for large values.
pub fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Renders `chart` as a standalone SVG document.
pub fn render(chart: &Chart) -> String {
    let pts = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if let Some(t) = &chart.x_ticks {
        for (x, _) in t {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
        }
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let ystep = nice_step(if y1 > 0.0 { y1 } else { 1.0 }, 5);
    let ymax = (y1 / ystep).ceil().max(1.0) * ystep;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - y / ymax * ph;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(&chart.title)
    );
    // Y grid and ticks.
    let mut y = 0.0;
    while y <= ymax + ystep * 1e-9 {
        let py = sy(y);
        let _ = writeln!(
            o,
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            fmt_tick(y)
        );
        y += ystep;
    }
    // X ticks.
    let xticks: Vec<(f64, String)> = match &chart.x_ticks {
        Some(t) => t.clone(),
        None => {
            let step = nice_step(x1 - x0, 8);
            let mut v = Vec::new();
            let mut x = (x0 / step).ceil() * step;
            while x <= x1 + step * 1e-9 {
                v.push((x, fmt_tick(x)));
                x += step;
            }
            v
        }
    };
    for (x, label) in &xticks {
        let px = sx(*x);
        let _ = writeln!(
            o,
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\n<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph,
            TOP + ph + 18.0,
            esc(label)
        );
    }
    // Axes and labels.
    let _ = writeln!(
        o,
        "<polyline points=\"{LEFT},{TOP} {LEFT},{:.1} {:.1},{:.1}\" fill=\"none\" stroke=\"black\"/>",
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 15.0,
        esc(&chart.x_label)
    );
    let _ = writeln!(
        o,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(&chart.y_label)
    );
    // Lines and legend.
    for (i, s) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        for &(x, y) in &s.points {
            let _ = write!(pts, "{:.1},{:.1} ", sx(x), sy(y));
        }
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            pts.trim_end()
        );
        let ly = TOP + 14.0 + i as f64 * 16.0;
        let _ = writeln!(
            o,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 10.0,
            LEFT + 34.0,
            LEFT + 40.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// The x position of a percentile on an HDR chart: `log10(1 / (1 - p))`,
/// so 90, 99, 99.9 and 99.99 are evenly spaced (capped at 99.9999).
pub fn percentile_x(pct: f64) -> f64 {
    let q = (pct / 100.0).clamp(0.0, 0.999_999);
    (1.0 / (1.0 - q)).log10()
}

/// An HDR latency chart from `(name, [(percentile, ms)])` curves.
pub fn latency_chart(title: &str, curves: &[(String, Vec<(f64, f64)>)]) -> String {
    let max_x = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| percentile_x(p.0)))
        .fold(3.0f64, f64::max)
        .ceil();
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
    let ticks = (0..=max_x as usize)
        .map(|i| (i as f64, labels[i.min(labels.len() - 1)].to_string()))
        .collect();
    render(&Chart {
        title: title.into(),
        x_label: "percentile".into(),
        y_label: "latency (ms)".into(),
        x_ticks: Some(ticks),
        series: curves
            .iter()
            .map(|(name, c)| Series {
                name: name.clone(),
                points: c.iter().map(|&(p, ms)| (percentile_x(p), ms)).collect(),
                dashed: false,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(1.0, 5), 0.2);
        assert_eq!(nice_step(7.0, 8), 1.0);
        assert_eq!(nice_step(830_000.0, 5), 200_000.0);
        assert_eq!(nice_step(0.0, 5), 1.0);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(fmt_tick(0.0), "0");
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(fmt_tick(200_000.0), "200k");
        assert_eq!(fmt_tick(1_500_000.0), "1.5M");
    }

    #[test]
    fn renders_a_well_formed_document() {
        let svg = render(&Chart {
            title: "deliveries <per> second".into(),
            x_label: "time (s)".into(),
            y_label: "deliveries/s".into(),
            x_ticks: None,
            series: vec![
                Series {
                    name: "achieved".into(),
                    points: vec![(0.0, 0.0), (1.0, 500.0), (2.0, 1000.0)],
                    dashed: false,
                },
                Series {
                    name: "offered".into(),
                    points: vec![(0.0, 1000.0), (2.0, 1000.0)],
                    dashed: true,
                },
            ],
        });
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("deliveries &lt;per&gt; second"));
        assert_eq!(svg.matches("<polyline points=").count(), 3); // axes + 2 series
        assert!(svg.contains("stroke-dasharray"));
        // Every opened element is self-closed or closed.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn empty_chart_does_not_divide_by_zero() {
        let svg = render(&Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_ticks: None,
            series: vec![],
        });
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn hdr_axis() {
        assert!((percentile_x(0.0)).abs() < 1e-12);
        assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-9);
        assert!((percentile_x(100.0) - 6.0).abs() < 1e-6);
        let svg = latency_chart("lat", &[("all".into(), vec![(0.0, 1.0), (99.0, 2.0)])]);
        assert!(svg.contains(">99.9%<"));
    }
}
