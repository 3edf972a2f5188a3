//! `timeseries.csv`: one row per time bucket and per workload, endpoint or edge, long
//! format (easy to filter and plot with any tool). Scenarios with queues or topics add,
//! after those, one row per bucket and per queue (kind `queue`, name `BROKER/QUEUE`) or
//! consumer group (kind `group`, name `BROKER/TOPIC@GROUP`), and a last column `depth`:
//! a queue's ready, unacked and delayed messages, a group's lag. Without them the column
//! is left out, so the file is what it was before queues existed. Workload rows also
//! count their errors by class (`errors_timeout`, `errors_unavailable`,
//! `errors_rejected`, `errors_internal`, `errors_other`; `metrics::ERROR_CLASSES`).
//!
//! `meshsim run` streams the rows to the file as buckets close (`TimeseriesStream`);
//! `timeseries` makes the same bytes from rows kept in memory.

use crate::metrics::consistency::{Consistency, FlowMetrics, LagRow};
use crate::metrics::{ERROR_CLASSES, RowSink, Series, SeriesKind, SeriesRow};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

const COLUMNS: [&str; 17] = [
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
    // A workload's errors by class (`metrics::ERROR_CLASSES`, in that order).
    "errors_timeout",
    "errors_unavailable",
    "errors_rejected",
    "errors_internal",
    "errors_other",
];

/// The whole file, from rows kept in memory.
pub fn timeseries(series: &Series, consistency: &Consistency) -> Vec<u8> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let depth = !consistency.lag_rows.is_empty();
    header(&mut w, depth).expect("writing to memory");
    for row in &series.rows {
        series_row(&mut w, &series.names, row, depth).expect("writing to memory");
    }
    for row in &consistency.lag_rows {
        flow_row(&mut w, &consistency.flows, row).expect("writing to memory");
    }
    w.into_inner().expect("writing to memory")
}

fn header<W: Write>(w: &mut ::csv::Writer<W>, depth: bool) -> ::csv::Result<()> {
    let mut header = COLUMNS.to_vec();
    if depth {
        header.push("depth");
    }
    w.write_record(&header)
}

fn series_row<W: Write>(
    w: &mut ::csv::Writer<W>,
    names: &[(SeriesKind, String)],
    row: &SeriesRow,
    depth: bool,
) -> ::csv::Result<()> {
    let (kind, name) = &names[row.series as usize];
    let span_s = row.end.saturating_since(row.start).as_secs_f64();
    let rps = if span_s > 0.0 {
        row.completed as f64 / span_s
    } else {
        0.0
    };
    w.write_field(fmt(row.start.as_secs_f64()))?;
    w.write_field(fmt(row.end.as_secs_f64()))?;
    w.write_field(match kind {
        SeriesKind::Workload => "workload",
        SeriesKind::Endpoint => "endpoint",
        SeriesKind::Edge => "edge",
    })?;
    w.write_field(name)?;
    w.write_field(row.completed.to_string())?;
    w.write_field(row.errors.to_string())?;
    w.write_field(fmt(rps))?;
    w.write_field(row.p50_ms.map(fmt).unwrap_or_default())?;
    w.write_field(row.p99_ms.map(fmt).unwrap_or_default())?;
    w.write_field(row.queue_length_mean.map(fmt).unwrap_or_default())?;
    w.write_field(row.attempts.map(|a| a.to_string()).unwrap_or_default())?;
    w.write_field(row.breaker.unwrap_or_default())?;
    for k in 0..ERROR_CLASSES.len() {
        w.write_field(
            row.errors_by_class
                .map(|c| c[k].to_string())
                .unwrap_or_default(),
        )?;
    }
    if depth {
        w.write_field("")?;
    }
    w.write_record(None::<&[u8]>)
}

fn flow_row<W: Write>(
    w: &mut ::csv::Writer<W>,
    flows: &[FlowMetrics],
    row: &LagRow,
) -> ::csv::Result<()> {
    let flow = &flows[row.flow as usize];
    let mut record = vec![String::new(); COLUMNS.len() + 1];
    record[0] = fmt(row.start.as_secs_f64());
    record[1] = fmt(row.end.as_secs_f64());
    record[2] = flow.kind.to_owned();
    record[3] = flow.name.clone();
    record[COLUMNS.len()] = row.depth.to_string();
    w.write_record(&record)
}

/// `timeseries.csv` written as the run goes (a `RowSink`): the series' rows to `file`
/// as their buckets close, the flows' rows to a hidden file beside it, appended at
/// `finish` so the file has the bytes `timeseries` makes from rows kept in memory.
/// The header waits for the first rows: a `depth` column only if flows have rows.
pub struct TimeseriesStream {
    main: ::csv::Writer<BufWriter<File>>,
    /// Where the flows' rows wait, and their writer once one came.
    flows_path: PathBuf,
    flows: Option<::csv::Writer<BufWriter<File>>>,
    header_written: bool,
    error: Option<String>,
}

impl TimeseriesStream {
    /// Writes to `file`; the flows' rows wait in `flows_path` (created when needed,
    /// removed by `finish` or when the stream is dropped).
    pub fn new(file: File, flows_path: &Path) -> TimeseriesStream {
        TimeseriesStream {
            main: ::csv::Writer::from_writer(BufWriter::with_capacity(1 << 16, file)),
            flows_path: flows_path.to_path_buf(),
            flows: None,
            header_written: false,
            error: None,
        }
    }

    fn keep(&mut self, r: ::csv::Result<()>) {
        if let (Err(e), None) = (r, &self.error) {
            self.error = Some(e.to_string());
        }
    }

    fn header_once(&mut self) {
        if !self.header_written {
            self.header_written = true;
            let r = header(&mut self.main, self.flows.is_some());
            self.keep(r);
        }
    }

    fn complete(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(io::Error::other(e));
        }
        self.header_once();
        if let Some(e) = self.error.take() {
            return Err(io::Error::other(e));
        }
        self.main.flush()?;
        if let Some(flows) = self.flows.take() {
            let file = flows
                .into_inner()
                .map_err(|e| io::Error::other(e.to_string()))?
                .into_inner()
                .map_err(|e| e.into_error())?;
            drop(file);
            let mut back = File::open(&self.flows_path)?;
            // The same open file (and offset) as `main`, flushed above.
            let mut end = self.main.get_ref().get_ref().try_clone()?;
            io::copy(&mut back, &mut end)?;
        }
        Ok(())
    }
}

impl RowSink for TimeseriesStream {
    fn rows(&mut self, names: &[(SeriesKind, String)], rows: &[SeriesRow]) {
        if self.error.is_some() {
            return;
        }
        self.header_once();
        let depth = self.flows.is_some();
        for row in rows {
            let r = series_row(&mut self.main, names, row, depth);
            self.keep(r);
        }
    }

    fn flow_rows(&mut self, flows: &[FlowMetrics], rows: &[LagRow]) {
        if self.error.is_some() || rows.is_empty() {
            return;
        }
        if self.flows.is_none() {
            match File::create(&self.flows_path) {
                Ok(f) => {
                    self.flows = Some(::csv::Writer::from_writer(BufWriter::with_capacity(
                        1 << 16,
                        f,
                    )))
                }
                Err(e) => {
                    self.error = Some(format!("{}: {e}", self.flows_path.display()));
                    return;
                }
            }
        }
        let w = self.flows.as_mut().expect("created above");
        let mut result = Ok(());
        for row in rows {
            result = result.and_then(|()| flow_row(w, flows, row));
        }
        self.keep(result);
    }

    fn finish(mut self: Box<Self>) -> Result<(), String> {
        let r = self.complete();
        let _ = std::fs::remove_file(&self.flows_path);
        r.map_err(|e| e.to_string())
    }
}

impl Drop for TimeseriesStream {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.flows_path);
    }
}

/// Fixed precision: short, stable and diff-friendly.
fn fmt(x: f64) -> String {
    fmt_fast(x).unwrap_or_else(|| fmt_exact(x))
}

/// `fmt_exact` without the exact decimal expansion (a third of a streamed file's
/// cost): x x 10^6 rounded in binary is the exactly rounded value unless the product
/// lies within two ulps of a tie, where None sends it to `fmt_exact`.
fn fmt_fast(x: f64) -> Option<String> {
    if !(0.0..1e9).contains(&x) {
        return None;
    }
    let y = x * 1e6;
    let ulp = f64::from_bits(y.to_bits() + 1) - y;
    if (y - y.floor() - 0.5).abs() <= 2.0 * ulp {
        return None;
    }
    let n = y.round() as u64;
    let (int, frac) = (n / 1_000_000, n % 1_000_000);
    if frac == 0 {
        return Some(int.to_string());
    }
    let digits = format!("{frac:06}");
    Some(format!("{int}.{}", digits.trim_end_matches('0')))
}

fn fmt_exact(x: f64) -> String {
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
            errors_by_class: Some([0; 5]),
            p50_ms: Some(165.0),
            p99_ms: Some(165.0),
            queue_length_mean: None,
            attempts: None,
            breaker: None,
        });
        s
    }

    #[test]
    fn the_fast_format_is_the_exact_one() {
        let mut v: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut samples = vec![
            0.0,
            1.0,
            0.5,
            2.5e-7,
            5e-7,
            1.5e-6,
            0.0000005,
            123.4565,
            999_999_999.9,
        ];
        for _ in 0..200_000 {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let scale = 10f64.powi((v >> 60) as i32 - 6);
            samples.push((v >> 11) as f64 / (1u64 << 53) as f64 * scale);
            // Ties and near-ties at the sixth decimal.
            samples.push(((v >> 40) as f64 + 0.5) / 1e6);
        }
        let mut fast_ones = 0;
        for x in &samples {
            if let Some(fast) = fmt_fast(*x) {
                assert_eq!(fast, fmt_exact(*x), "{x:e}");
                fast_ones += 1;
            }
        }
        // Half the samples are ties, which go the exact way.
        assert!(fast_ones > samples.len() * 4 / 10, "{fast_ones}");
    }

    #[test]
    fn without_queues_the_file_is_unchanged() {
        let csv = String::from_utf8(timeseries(&series(), &Consistency::default())).unwrap();
        assert_eq!(
            csv,
            "t_start_s,t_end_s,kind,name,completed,errors,throughput_rps,p50_ms,p99_ms,queue_length_mean,attempts,breaker,errors_timeout,errors_unavailable,errors_rejected,errors_internal,errors_other\n\
             0,1,workload,clients,10,0,10,165,165,,,,0,0,0,0,0\n"
        );
    }

    #[test]
    fn lag_rows_come_last_with_a_depth_column() {
        let csv = String::from_utf8(timeseries(&series(), &sample_consistency())).unwrap();
        assert_eq!(
            csv,
            "t_start_s,t_end_s,kind,name,completed,errors,throughput_rps,p50_ms,p99_ms,queue_length_mean,attempts,breaker,errors_timeout,errors_unavailable,errors_rejected,errors_internal,errors_other,depth\n\
             0,1,workload,clients,10,0,10,165,165,,,,0,0,0,0,0,\n\
             0,1,queue,rabbit/payments,,,,,,,,,,,,,,4\n\
             0,1,group,events/orders@billing,,,,,,,,,,,,,,3\n"
        );
    }
}
