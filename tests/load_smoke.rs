//! The load harness's smoke runs: `pushd-load --smoke all` runs every scenario with tiny numbers
//! for a few seconds, so CI exercises the harness (load-tests/) without the long runs; and the
//! same against a pushd and mocks already running in processes of their own (`--target`).
//! Nothing about speed is asserted here: only that the runs went to the end, delivered, and
//! printed their table and ratio.

mod support;

use support::{arg_path as path, PushdChild};

fn pushd_load(args: &[&str]) -> String {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_pushd-load")).args(args).output().expect("pushd-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pushd-load {args:?} failed: {:?}\n{stdout}\n{stderr}", out.status);
    stdout
}

fn assert_lines(stdout: &str, expected: &[&str]) {
    for e in expected {
        assert!(stdout.contains(e), "the summary lacks {e:?}:\n{stdout}");
    }
}

#[test]
fn the_load_harness_smoke_run_completes_and_prints_its_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("latency.tsv");
    let stdout = pushd_load(&["--smoke", "--latency-log", &path(&log), "all"]);
    assert_lines(
        &stdout,
        &[
            "| scenario |",
            "offline fan-out",
            "group fan-out",
            "presence ingest",
            "vendor trouble",
            "idle devices",
            "RATIO",
        ],
    );
    // The latency log: one line per measured push, in each phase in send order.
    let text = std::fs::read_to_string(&log).expect("latency log written");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let fanout: Vec<&Vec<&str>> = lines.iter().filter(|l| l[0] == "offline fan-out, max rate (APNs)").collect();
    assert!(!fanout.is_empty(), "no fan-out pushes in the latency log:\n{text}");
    for l in &lines {
        assert_eq!(l.len(), 4, "scenario, store, sent, latency: {l:?}");
        assert!(l[2].parse::<u64>().is_ok_and(|us| us > 1_700_000_000_000_000), "sent in µs since 1970: {l:?}");
        assert!(l[3].parse::<u64>().is_ok_and(|us| us > 0), "latency in µs: {l:?}");
    }
    let sent: Vec<u64> = fanout.iter().filter(|l| l[1] == "memory").map(|l| l[2].parse().unwrap()).collect();
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "in send order");
}

#[tokio::test]
async fn the_smoke_run_drives_a_running_pushd_and_mocks_in_other_processes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pushd.toml");
    let (_mocks, ready) = PushdChild::mocks(dir.path(), &path(dir.path()), &config).await;
    let control = ready["mock_control"].as_str().expect("mock_control").to_owned();
    let (_serve, serve_ready, _) = PushdChild::serve(dir.path(), &config).await;

    // `all`: the memory scenario is skipped (it needs pushd in-process), the others run.
    let (target, control_again) = (path(&serve_ready), control.clone());
    let stdout = tokio::task::spawn_blocking(move || {
        pushd_load(&["--smoke", "--target", &target, "--mock-control", &control, "all"])
    })
    .await
    .expect("pushd-load ran");
    assert_lines(
        &stdout,
        &[
            "memory: skipped",
            "| offline fan-out, max rate (APNs) | target |",
            "| group fan-out, 500 members, max rate | target |",
            "| presence storm + 2000 msg/s | target |",
            "| vendor trouble, 2000 msg/s | target |",
            "RATIO (target store)",
        ],
    );
    assert!(!stdout.contains("one process"), "pushd and the mocks run apart here:\n{stdout}");
    // Every message row delivered something, to each vendor it aimed at.
    let fanout = stdout.lines().find(|l| l.starts_with("| offline fan-out, max rate (APNs) |")).expect("fan-out row");
    assert!(fanout.contains("apns 1000"), "the fan-out row: {fanout}");
    let mixed = stdout.lines().find(|l| l.contains("(APNs + FCM + Huawei)")).expect("mixed row");
    assert!(mixed.contains("fcm 250") && mixed.contains("huawei 250"), "the mixed row: {mixed}");

    // A second run against the same pushd: its ids are its own, so nothing is a duplicate.
    let target = path(&serve_ready);
    let again = tokio::task::spawn_blocking(move || {
        pushd_load(&["--smoke", "--target", &target, "--mock-control", &control_again, "fanout"])
    })
    .await
    .expect("pushd-load ran");
    let fanout = again.lines().find(|l| l.starts_with("| offline fan-out, max rate (APNs) |")).expect("fan-out row");
    assert!(fanout.contains("apns 1000"), "the second run's fan-out row: {fanout}");
}
