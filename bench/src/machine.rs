//! What machine a benchmark ran on, for its report.

/// The CPU's model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU (no /proc/cpuinfo)".to_owned())
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
#[allow(dead_code)] // bench-int8 does not print it
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown (no /proc/loadavg)".to_owned())
}
