//! The labelled series of `/metrics`: per-command, per-outcome and per-node counters and histograms, and the
//! process's own CPU, memory and file descriptors.
//!
//! Labels are bounded: `command` comes from the command table (unknown commands are one value, `unknown`),
//! `outcome` from [`Outcome`], `error` from the error codes (at most [`super::MAX_ERROR_CODES`] + 1), `node` from
//! the cluster's nodes. Histograms are real Prometheus histograms (`_bucket`, `_sum`, `_count`), so they add up
//! across slotway instances and over time: `histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))`.
use super::histogram::{Snapshot, PROMETHEUS_LE_US};
use super::{Observe, Totals};
use crate::metrics::prometheus_help;
use std::fmt::Write;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", prometheus_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the exposition format wants it: backslash, double quote and line feed escaped.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One histogram's `_bucket` (at [`PROMETHEUS_LE_US`] and `+Inf`), `_sum` and `_count` lines.
pub fn histogram_lines(out: &mut String, name: &str, label: &str, value: &str, snap: &Snapshot) {
    let value = label_value(value);
    for (le, count) in PROMETHEUS_LE_US.iter().zip(snap.cumulative(&PROMETHEUS_LE_US)) {
        let _ = writeln!(out, "{name}_bucket{{{label}=\"{value}\",le=\"{}\"}} {count}", *le as f64 / 1e6);
    }
    let count = snap.count();
    let _ = writeln!(out, "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", snap.sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {count}");
}

/// Every labelled series. `nodes`: each node's round trips (`host:port`, summed over its pools and workers).
pub fn render(out: &mut String, observe: &Observe, totals: &Totals, nodes: &[(String, Snapshot)]) {
    let used: Vec<(usize, &super::CommandTotals)> =
        totals.commands.iter().enumerate().filter(|(_, c)| c.calls + c.rejected > 0).collect();
    let counter = |out: &mut String, name: &str, help: &str, value: fn(&super::CommandTotals) -> u64| {
        header(out, name, "counter", help);
        for (i, c) in &used {
            let _ = writeln!(out, "{name}{{command=\"{}\"}} {}", label_value(observe.command_name(*i)), value(c));
        }
    };
    counter(
        out,
        "slotway_commands_total",
        "Requests run (sent to the nodes or answered by slotway), by command; failed ones included.",
        |c| c.calls,
    );
    counter(out, "slotway_commands_failed_total", "Requests answered with an error, by command.", |c| c.failed);
    counter(
        out,
        "slotway_commands_rejected_total",
        "Requests slotway refused before running them (unknown command, arity, CROSSSLOT, ACL), by command.",
        |c| c.rejected,
    );
    let name = "slotway_command_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "End-to-end time of requests in slotway (from the read that completed the request to its reply leaving \
         the client's queue), by command.",
    );
    for (i, c) in &used {
        if let Some(l) = c.latency.as_deref() {
            histogram_lines(out, name, "command", observe.command_name(*i), l);
        }
    }

    header(out, "slotway_requests_total", "counter", "Requests by outcome (ok, error, redirected, retried, ...).");
    for (o, n, _) in &totals.outcomes {
        let _ = writeln!(out, "slotway_requests_total{{outcome=\"{}\"}} {n}", o.name());
    }
    let name = "slotway_request_duration_seconds";
    header(out, name, "histogram", "End-to-end time of requests in slotway, by outcome.");
    if observe.tracking {
        for (o, _, snap) in &totals.outcomes {
            histogram_lines(out, name, "outcome", o.name(), snap);
        }
    }

    let name = "slotway_node_round_trip_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from sending a request on a shared node connection to its reply, by node (queueing in slotway's \
         connection included).",
    );
    for (node, snap) in nodes {
        histogram_lines(out, name, "node", node, snap);
    }

    header(out, "slotway_errors_total", "counter", "Error replies sent to clients, by error code (INFO errorstats).");
    for (code, n) in &totals.errors {
        let _ = writeln!(out, "slotway_errors_total{{error=\"{}\"}} {n}", label_value(code));
    }
    let plain = |out: &mut String, name: &str, kind: &str, help: &str, v: u64| {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    };
    plain(out, "slotway_net_input_bytes_total", "counter", "Bytes read from clients.", totals.net_input);
    plain(out, "slotway_net_output_bytes_total", "counter", "Bytes written to clients.", totals.net_output);
    plain(out, "slotway_slowlog_length", "gauge", "Entries in the slow log now.", observe.slowlog.len() as u64);
    plain(
        out,
        "slotway_latency_tracking",
        "gauge",
        "1 when latency tracking (histograms, slow log) is on (latency_tracking).",
        u64::from(observe.tracking),
    );
}

/// The process's CPU time, resident memory, open file descriptors and start time, under the names Prometheus
/// client libraries use (`process_*`), read from /proc (nothing on systems without it).
pub fn process_metrics(out: &mut String, started_unix: f64) {
    // utime and stime (fields 14 and 15) in USER_HZ ticks, 100 per second on Linux.
    if let Some(ticks) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }) {
        header(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        let _ = writeln!(out, "process_cpu_seconds_total {}", ticks as f64 / 100.0);
    }
    if let Some(kb) = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    }) {
        header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        let _ = writeln!(out, "process_resident_memory_bytes {}", kb * 1024);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
    header(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    let _ = writeln!(out, "process_start_time_seconds {started_unix}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::histogram::bucket_of;

    #[test]
    fn histogram_lines_are_cumulative() {
        let mut s = Snapshot::default();
        s.buckets[bucket_of(5)] = 2; // below 8 µs
        s.buckets[bucket_of(20)] = 1; // below 32 µs
        s.buckets[bucket_of(50_000_000)] = 1; // beyond the last bound
        s.sum_ns = 1_500_000_000;
        let mut out = String::new();
        histogram_lines(&mut out, "h", "node", "a\"b", &s);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "h_bucket{node=\"a\\\"b\",le=\"0.000008\"} 2");
        assert_eq!(lines[1], "h_bucket{node=\"a\\\"b\",le=\"0.000016\"} 2");
        assert_eq!(lines[2], "h_bucket{node=\"a\\\"b\",le=\"0.000032\"} 3");
        assert_eq!(lines[20], "h_bucket{node=\"a\\\"b\",le=\"8.388608\"} 3");
        assert_eq!(lines[21], "h_bucket{node=\"a\\\"b\",le=\"+Inf\"} 4");
        assert_eq!(lines[22], "h_sum{node=\"a\\\"b\"} 1.5");
        assert_eq!(lines[23], "h_count{node=\"a\\\"b\"} 4");
    }

    #[test]
    fn process_metrics_read_proc() {
        let mut out = String::new();
        process_metrics(&mut out, 1.5);
        assert!(out.contains("process_start_time_seconds 1.5\n"));
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(out.contains("\nprocess_resident_memory_bytes "), "{out}");
            assert!(out.contains("\nprocess_cpu_seconds_total "), "{out}");
            assert!(out.contains("\nprocess_open_fds "), "{out}");
        }
    }
}
