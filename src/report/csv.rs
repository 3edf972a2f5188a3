//! `timeseries.csv`: one row per time bucket and per workload or endpoint, long format
//! (easy to filter and plot with any tool).

use crate::metrics::{Series, SeriesKind};

pub fn timeseries(series: &Series) -> Vec<u8> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record([
        "t_start_s",
        "t_end_s",
        "kind",
        "name",
        "completed",
        "errors",
        "throughput_rps",
        "p50_ms",
        "p99_ms",
        "queue_length_mean",
        "attempts",
        "breaker",
    ])
    .expect("writing to memory");
    for row in &series.rows {
        let (kind, name) = &series.names[row.series as usize];
        let span_s = row.end.saturating_since(row.start).as_secs_f64();
        let rps = if span_s > 0.0 {
            row.completed as f64 / span_s
        } else {
            0.0
        };
        w.write_record([
            fmt(row.start.as_secs_f64()),
            fmt(row.end.as_secs_f64()),
            match kind {
                SeriesKind::Workload => "workload".to_owned(),
                SeriesKind::Endpoint => "endpoint".to_owned(),
                SeriesKind::Edge => "edge".to_owned(),
            },
            name.clone(),
            row.completed.to_string(),
            row.errors.to_string(),
            fmt(rps),
            row.p50_ms.map(fmt).unwrap_or_default(),
            row.p99_ms.map(fmt).unwrap_or_default(),
            row.queue_length_mean.map(fmt).unwrap_or_default(),
            row.attempts.map(|a| a.to_string()).unwrap_or_default(),
            row.breaker.unwrap_or_default().to_owned(),
        ])
        .expect("writing to memory");
    }
    w.into_inner().expect("writing to memory")
}

/// Fixed precision: short, stable and diff-friendly.
fn fmt(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}
