//! The load harness's smoke run: `pushd-load --smoke all` runs every scenario with tiny numbers
//! for a few seconds, so CI exercises the harness (load-tests/) without the long runs. Nothing
//! about speed is asserted here: only that it ran to the end and printed its table and ratio.

#[test]
fn the_load_harness_smoke_run_completes_and_prints_its_table() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pushd-load"))
        .args(["--smoke", "all"])
        .output()
        .expect("pushd-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pushd-load --smoke failed: {:?}\n{stdout}\n{stderr}", out.status);
    for expected in [
        "| scenario |",
        "offline fan-out",
        "group fan-out",
        "presence ingest",
        "vendor trouble",
        "idle devices",
        "RATIO",
    ] {
        assert!(stdout.contains(expected), "the summary lacks {expected:?}:\n{stdout}");
    }
}
