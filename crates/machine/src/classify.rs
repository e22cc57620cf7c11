//! `trapeze classify`: the Popek–Goldberg table (DESIGN.md §3), as text or JSON.

use std::collections::{BTreeMap, BTreeSet};

use iced_x86::Code;
use trapeze_cpu::classify::{classify, Class, ROBIN_IRVINE};

/// Every instruction form iced-x86 knows, with its class.
fn forms() -> impl Iterator<Item = (Code, Class)> {
    Code::values()
        .filter(|c| *c != Code::INVALID)
        .map(|c| (c, classify(c)))
}

/// One JSON object per `Code`.
pub fn json() -> String {
    let rows: Vec<serde_json::Value> = forms()
        .map(|(c, k)| {
            serde_json::json!({
                "code": format!("{c:?}"),
                "mnemonic": format!("{:?}", c.mnemonic()),
                "privileged": k.privileged,
                "control_sensitive": k.control_sensitive,
                "behavior_sensitive": k.behavior_sensitive,
                "critical": k.critical(),
                "iopl_sensitive": k.iopl_sensitive,
                "reason": k.reason,
            })
        })
        .collect();
    serde_json::to_string_pretty(&rows).expect("JSON of plain values")
}

/// (MNEMONIC, sensitivity, reason): one line of the text table.
type Line = (String, &'static str, &'static str);

/// The table grouped by class, mnemonics with their reasons.
pub fn text() -> String {
    let mut groups: BTreeMap<(u8, &'static str), BTreeSet<Line>> = BTreeMap::new();
    let mut innocuous = 0;
    for (c, k) in forms() {
        let group = if k.privileged {
            (0, "privileged (#GP at CPL > 0)")
        } else if k.critical() {
            (
                1,
                "critical: sensitive but not privileged (the x86 hole in Theorem 1)",
            )
        } else if k.iopl_sensitive {
            (2, "IOPL-sensitive (#GP at CPL > IOPL)")
        } else {
            innocuous += 1;
            continue;
        };
        let sens = match (k.control_sensitive, k.behavior_sensitive) {
            (true, true) => "control+behaviour",
            (true, false) => "control",
            (false, true) => "behaviour",
            _ => "",
        };
        groups.entry(group).or_default().insert((
            format!("{:?}", c.mnemonic()).to_uppercase(),
            sens,
            k.reason,
        ));
    }
    let mut out = String::new();
    for ((_, title), ms) in &groups {
        out.push_str(&format!("{title}:\n"));
        for (m, sens, reason) in ms {
            out.push_str(&format!("  {m:<12} {sens:<18} {reason}\n"));
        }
    }
    out.push_str(&format!("innocuous: {innocuous} instruction forms\n\n"));
    let ri: Vec<String> = ROBIN_IRVINE
        .iter()
        .map(|m| format!("{m:?}").to_uppercase())
        .collect();
    out.push_str(&format!(
        "Theorem 1 (Popek & Goldberg 1974) fails on x86: these sensitive instructions do not trap\n\
         when deprivileged (Robin & Irvine 2000): {}.\n\
         `trapeze run --pg-strict` makes every sensitive instruction fault at CPL > 0.\n",
        ri.join(" ")
    ));
    out
}
