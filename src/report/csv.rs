//! `timeseries.csv`: one row per time bucket and per workload, endpoint or edge, long
//! format (easy to filter and plot with any tool). Scenarios with queues or topics add,
//! after those, one row per bucket and per queue (kind `queue`, name `BROKER/QUEUE`) or
//! consumer group (kind `group`, name `BROKER/TOPIC@GROUP`), and a last column `depth`:
//! a queue's ready, unacked and delayed messages, a group's lag. Without them the column
//! is left out, so the file is what it was before queues existed.

use crate::metrics::consistency::Consistency;
use crate::metrics::{Series, SeriesKind};

const COLUMNS: [&str; 12] = [
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
];

pub fn timeseries(series: &Series, consistency: &Consistency) -> Vec<u8> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let depth = !consistency.lag_rows.is_empty();
    let mut header = COLUMNS.to_vec();
    if depth {
        header.push("depth");
    }
    w.write_record(&header).expect("writing to memory");
    for row in &series.rows {
        let (kind, name) = &series.names[row.series as usize];
        let span_s = row.end.saturating_since(row.start).as_secs_f64();
        let rps = if span_s > 0.0 {
            row.completed as f64 / span_s
        } else {
            0.0
        };
        let mut record = vec![
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
        ];
        if depth {
            record.push(String::new());
        }
        w.write_record(&record).expect("writing to memory");
    }
    for row in &consistency.lag_rows {
        let flow = &consistency.flows[row.flow as usize];
        let mut record = vec![String::new(); COLUMNS.len() + 1];
        record[0] = fmt(row.start.as_secs_f64());
        record[1] = fmt(row.end.as_secs_f64());
        record[2] = flow.kind.to_owned();
        record[3] = flow.name.clone();
        record[COLUMNS.len()] = row.depth.to_string();
        w.write_record(&record).expect("writing to memory");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{SimDuration, SimTime};
    use crate::metrics::SeriesRow;
    use crate::report::json::tests::sample_consistency;

    fn series() -> Series {
        let mut s = Series::new(
            SimDuration::from_secs(1),
            vec![(SeriesKind::Workload, "clients".into())],
        );
        s.rows.push(SeriesRow {
            start: SimTime::ZERO,
            end: SimTime::from_nanos(1_000_000_000),
            series: 0,
            completed: 10,
            errors: 0,
            p50_ms: Some(165.0),
            p99_ms: Some(165.0),
            queue_length_mean: None,
            attempts: None,
            breaker: None,
        });
        s
    }

    #[test]
    fn without_queues_the_file_is_unchanged() {
        let csv = String::from_utf8(timeseries(&series(), &Consistency::default())).unwrap();
        assert_eq!(
            csv,
            "t_start_s,t_end_s,kind,name,completed,errors,throughput_rps,p50_ms,p99_ms,queue_length_mean,attempts,breaker\n\
             0,1,workload,clients,10,0,10,165,165,,,\n"
        );
    }

    #[test]
    fn lag_rows_come_last_with_a_depth_column() {
        let csv = String::from_utf8(timeseries(&series(), &sample_consistency())).unwrap();
        assert_eq!(
            csv,
            "t_start_s,t_end_s,kind,name,completed,errors,throughput_rps,p50_ms,p99_ms,queue_length_mean,attempts,breaker,depth\n\
             0,1,workload,clients,10,0,10,165,165,,,,\n\
             0,1,queue,rabbit/payments,,,,,,,,,4\n\
             0,1,group,events/orders@billing,,,,,,,,,3\n"
        );
    }
}
