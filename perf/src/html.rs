//! The HTML report beside each JSON result (`target/perf/SUITE.html`): one file with
//! no outside resources (inline CSS and SVG), drawn from the JSON document itself so
//! the two cannot disagree. Per row: throughput bars (median, with the min–max range
//! of the repeats) and the HDR latency curve of each side's median run.

use serde_json::Value;
use std::fmt::Write;

const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c"];
const BAR_W: f64 = 520.0;
const CURVE_W: f64 = 520.0;
const CURVE_H: f64 = 220.0;
/// The curve's x axis: "nines" of the percentile, up to 99.999%.
const MAX_NINES: f64 = 5.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The sides of a row in display order: (label, side JSON).
fn sides(row: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    if let Some(obj) = row.as_object() {
        for key in std::iter::once("nextdb").chain(std::iter::once("peer")) {
            if let Some(s) = obj.get(key).filter(|s| s.is_object()) {
                out.push((side_label(key, s), s));
            }
        }
        for (k, s) in obj {
            if k.starts_with("peer_") && s.is_object() {
                out.push((side_label(k, s), s));
            }
        }
    }
    out
}

fn side_label(key: &str, s: &Value) -> String {
    match s["name"].as_str() {
        Some(n) if key != "nextdb" => n.to_string(),
        _ => key.to_string(),
    }
}

fn bars(row: &Value) -> String {
    let sides = sides(row);
    let top = sides
        .iter()
        .filter_map(|(_, s)| num(&s["ops_per_s_max"]).or(num(&s["ops_per_s"])))
        .fold(0.0f64, f64::max);
    let h = 26.0 * sides.len() as f64 + 10.0;
    let mut svg = format!(r#"<svg width="{}" height="{h}" role="img">"#, BAR_W + 260.0);
    for (i, (label, s)) in sides.iter().enumerate() {
        let y = 5.0 + 26.0 * i as f64;
        let scale = |x: f64| if top > 0.0 { x / top * BAR_W } else { 0.0 };
        let med = num(&s["ops_per_s"]).unwrap_or(0.0);
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            svg,
            r#"<rect x="0" y="{y}" width="{:.1}" height="18" fill="{color}" opacity="0.8"/>"#,
            scale(med)
        );
        if let (Some(lo), Some(hi)) = (num(&s["ops_per_s_min"]), num(&s["ops_per_s_max"])) {
            let _ = write!(
                svg,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
                scale(lo),
                scale(hi),
                y + 9.0,
                y + 9.0
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12">{} {:.0} op/s</text>"#,
            BAR_W + 8.0,
            y + 13.0,
            esc(label),
            med
        );
    }
    svg + "</svg>"
}

fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        MAX_NINES + 0.3
    } else {
        (-(1.0 - p / 100.0).log10()).min(MAX_NINES)
    }
}

/// The latency plot's axes: x in "nines" of the percentile, y in log10 µs.
struct Plot {
    lo: f64,
    hi: f64,
}

const LEFT: f64 = 50.0;
const BOTTOM: f64 = CURVE_H - 30.0;

impl Plot {
    fn x(&self, p: f64) -> f64 {
        LEFT + nines(p) / (MAX_NINES + 0.3) * (CURVE_W - LEFT - 10.0)
    }

    fn y(&self, us: f64) -> f64 {
        BOTTOM - (us.log10() - self.lo) / (self.hi - self.lo) * (BOTTOM - 10.0)
    }

    fn axes(&self, svg: &mut String) {
        let (w, h) = (CURVE_W - LEFT - 10.0, BOTTOM - 10.0);
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="10" width="{w:.1}" height="{h:.1}" fill="none" stroke="#999"/>"##
        );
        let ticks = [
            (50.0, "50%"),
            (90.0, "90%"),
            (99.0, "99%"),
            (99.9, "99.9%"),
            (99.99, "99.99%"),
            (99.999, "99.999%"),
            (100.0, "max"),
        ];
        for (p, label) in ticks {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{label}</text>"#,
                self.x(p),
                BOTTOM + 14.0
            );
        }
        let mut d = self.lo;
        while d <= self.hi {
            let us = 10f64.powf(d);
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{us} us</text>"#,
                LEFT - 4.0,
                self.y(us) + 3.0
            );
            d += 1.0;
        }
    }
}

/// Every side's (percentile, µs) points with a positive latency.
fn curve_points(sides: &[(String, &Value)]) -> Vec<Vec<(f64, f64)>> {
    sides
        .iter()
        .map(|(_, s)| {
            let pts = s["hdr"].as_array().into_iter().flatten();
            pts.filter_map(|p| Some((num(&p[0])?, num(&p[1])?)))
                .filter(|&(_, us)| us > 0.0)
                .collect()
        })
        .collect()
}

fn curve(row: &Value) -> String {
    let sides = sides(row);
    let pts = curve_points(&sides);
    let all: Vec<f64> = pts.iter().flatten().map(|&(_, us)| us.log10()).collect();
    if all.is_empty() {
        return String::new();
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).floor();
    let hi = all
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil()
        .max(lo + 1.0);
    let plot = Plot { lo, hi };
    let mut svg = format!(
        r#"<svg width="{}" height="{CURVE_H}" role="img">"#,
        CURVE_W + 200.0
    );
    plot.axes(&mut svg);
    for (i, ((label, _), p)) in sides.iter().zip(&pts).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line: Vec<String> = p
            .iter()
            .map(|&(pc, us)| format!("{:.1},{:.1}", plot.x(pc), plot.y(us)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        let y = 24.0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{y:.1}" font-size="12" fill="{color}">{}</text>"#,
            CURVE_W + 4.0,
            esc(label)
        );
    }
    svg + "</svg>"
}

fn row_section(row: &Value) -> String {
    let name = esc(row["name"].as_str().unwrap_or("?"));
    let ratio = match (num(&row["ratio"]), row["ratio_reason"].as_str()) {
        (Some(r), _) => format!("ratio (medians) <b>{r:.2}x</b>"),
        (None, Some(why)) => format!("no ratio: {}", esc(why)),
        (None, None) => "no ratio".into(),
    };
    let meaning = row["meaning"].as_str().map(esc).unwrap_or_default();
    format!(
        "<section><h2>{name}</h2><p>{meaning}</p><p>{ratio}</p>\
         <h3>Throughput (median, bar: min&ndash;max of the repeats)</h3>{}\
         <h3>Latency by percentile (median run)</h3>{}</section>\n",
        bars(row),
        curve(row)
    )
}

/// The whole report for one suite's JSON document.
pub fn render(doc: &Value) -> String {
    let suite = esc(doc["suite"].as_str().unwrap_or("?"));
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>NextDB {suite} benchmark</title>\
         <style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}\
         section{{border-top:1px solid #ccc;margin-top:1.5em}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style>\
         </head><body><h1>NextDB <code>{suite}</code> benchmark</h1>\n"
    );
    let _ = writeln!(
        html,
        "<details><summary>machine and configuration</summary><pre>{}</pre><pre>{}</pre></details>",
        esc(&serde_json::to_string_pretty(&doc["machine"]).unwrap_or_default()),
        esc(&serde_json::to_string_pretty(&doc["config"]).unwrap_or_default())
    );
    for row in doc["results"].as_array().into_iter().flatten() {
        html.push_str(&row_section(row));
    }
    html + "</body></html>\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn self_contained_with_bars_and_curves() {
        let side = |ops: f64| {
            json!({"name": "x<y", "ops_per_s": ops, "ops_per_s_min": ops * 0.9, "ops_per_s_max": ops * 1.1,
                   "hdr": [[50.0, 10.0], [99.0, 40.0], [99.9, 100.0], [100.0, 900.0]]})
        };
        let doc = json!({"suite": "kv", "machine": {}, "config": {},
            "results": [{"name": "get", "nextdb": side(100.0), "peer": side(50.0), "ratio": 2.0,
                         "peer_db_bench": side(40.0)}]});
        let html = render(&doc);
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no outside resources"
        );
        assert_eq!(html.matches("<polyline").count(), 3);
        assert_eq!(html.matches("<rect x=\"0\"").count(), 3);
        assert!(html.contains("x&lt;y"));
        assert!(html.contains("2.00x"));
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
    }
}
