//! The fault steps of a run in the HTML report: when each happened and what it cost.

use std::fmt::Write as _;

use super::{Num, esc};
use crate::report::Report;

/// One row per fault step; nothing for a run without fault steps.
pub(super) fn fault_table(out: &mut String, r: &Report) {
    if r.faults.is_empty() {
        return;
    }
    out.push_str("<h2>Fault steps</h2>\n<section style=\"overflow-x:auto\"><p>Each step's window runs from its settle time before it was applied to its settle time after it ended; commands are counted by their intended send time, connections by when their drop was detected. Latencies of the window are left out of the steady-state figures above.</p>\n<table>\n");
    out.push_str("<tr><th class=\"text\">step</th><th class=\"text\">action</th><th>applied (s)</th><th>ended (s)</th><th>devices</th><th>relay down (ms)</th><th>sent</th><th>lost</th><th>duplicated</th><th>unacknowledged</th><th>resent</th><th>routing p99 (ms)</th><th>update p99 (ms)</th><th>reconnects</th><th>recovery p99 (ms)</th><th class=\"text\">error</th></tr>\n");
    for f in &r.faults {
        let w = &f.window;
        let down = f.target_down_ms.map_or("–".to_string(), |d| Num(d, 0).to_string());
        let lost_class = if w.lost > 0 { " class=\"bad\"" } else { "" };
        let _ = writeln!(
            out,
            "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{down}</td><td>{}</td><td{lost_class}>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
            esc(&f.name),
            f.action.as_str(),
            Num(f.applied_at_s, 1),
            Num(f.ended_at_s, 1),
            f.devices,
            w.sent,
            w.lost,
            w.duplicated,
            w.unacknowledged,
            w.resent,
            Num(w.routing.p99_ms, 1),
            Num(w.update.p99_ms, 1),
            w.recovery.count,
            Num(w.recovery.p99_ms, 0),
            esc(f.error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table></section>\n");
}
