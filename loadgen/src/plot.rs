//! The latency plot of a `query` run: an SVG of the percentile distribution of time to first
//! packet and time to the complete list (x: percentile on a "nines" scale, y: milliseconds).

use crate::report::Latency;
use plotters::prelude::*;
use std::path::Path;

/// x position of quantile `q`: 0 at p0, 1 at p90, 2 at p99, 3 at p99.9.
fn nines(q: f64) -> f64 {
    -(1.0 - q.min(0.9999)).log10()
}

fn curve(l: &Latency) -> Vec<(f64, f64)> {
    let h = l.histogram();
    if h.is_empty() {
        return Vec::new();
    }
    (0..=300)
        .map(|i| {
            let x = f64::from(i) / 100.0;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

pub fn latency_svg(path: &Path, title: &str, ttfp: &Latency, ttc: &Latency) -> Result<(), String> {
    let a = curve(ttfp);
    let b = curve(ttc);
    let ymax = a
        .iter()
        .chain(&b)
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..3.0, 0.0..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x: &f64| match (x * 10.0).round() as i64 {
            0 => "p0".into(),
            3 => "p50".into(),
            10 => "p90".into(),
            20 => "p99".into(),
            30 => "p99.9".into(),
            _ => format!("p{:.2}", 100.0 * (1.0 - 10f64.powf(-x))),
        })
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(a, &BLUE))
        .map_err(|e| err(&e))?
        .label("time to first packet")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(b, &RED))
        .map_err(|e| err(&e))?
        .label("time to complete list")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    debug_assert!(nines(0.9) > 0.99 && nines(0.9) < 1.01);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writes_an_svg_with_both_curves() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for i in 1..=100u64 {
            a.record(Duration::from_micros(100 * i));
            b.record(Duration::from_micros(1000 * i));
        }
        let p = std::env::temp_dir().join(format!("loadgen-plot-{}.svg", std::process::id()));
        latency_svg(&p, "test", &a, &b).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("time to complete list"));
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
    }
}
