//! `trapeze classify`: the table is complete and its critical set is Robin and Irvine's.

use std::collections::BTreeSet;
use std::process::Command;

fn classify_json() -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_trapeze"))
        .args(["classify", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn one_object_per_iced_code_with_every_field() {
    let rows = classify_json();
    assert_eq!(
        rows.len(),
        iced_x86::Code::values().count() - 1,
        "every Code but INVALID"
    );
    for r in &rows {
        for k in ["code", "mnemonic", "reason"] {
            assert!(r[k].is_string(), "{k} in {r}");
        }
        for k in [
            "privileged",
            "control_sensitive",
            "behavior_sensitive",
            "critical",
        ] {
            assert!(r[k].is_boolean(), "{k} in {r}");
        }
        let sensitive = r["control_sensitive"] == true || r["behavior_sensitive"] == true;
        if r["critical"] == true {
            assert!(
                sensitive && r["privileged"] == false,
                "critical means sensitive and unprivileged: {r}"
            );
        }
    }
}

/// Robin & Irvine (USENIX Security 2000), "Analysis of the Intel Pentium's ability to
/// support a secure virtual machine monitor": the 17 sensitive, unprivileged instructions.
#[test]
fn critical_set_covers_robin_irvine() {
    let rows = classify_json();
    let critical: BTreeSet<String> = rows
        .iter()
        .filter(|r| r["critical"] == true)
        .map(|r| r["mnemonic"].as_str().unwrap().to_uppercase())
        .collect();
    for m in [
        "SGDT", "SIDT", "SLDT", "SMSW", "STR", "PUSHF", "POPF", "LAR", "LSL", "VERR", "VERW",
        "PUSH", "POP", "MOV", "CALL", "JMP", "RETF", "INT", "IRET",
    ] {
        assert!(
            critical.contains(m),
            "{m} should be critical; critical = {critical:?}"
        );
    }
    // And the classics that trap are not critical.
    for m in ["HLT", "LGDT", "LIDT", "WRMSR", "CLTS"] {
        assert!(!critical.contains(m), "{m} is privileged");
    }
    let text = Command::new(env!("CARGO_BIN_EXE_trapeze"))
        .arg("classify")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("critical: sensitive but not privileged") && text.contains("Theorem 1"),
        "{text}"
    );
}
