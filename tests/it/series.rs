//! The time series: the default bucket, rows that stream to the CSV as buckets close,
//! and the bound on its rows.

use meshsim::engine::SimDuration;
use std::path::Path;

fn bundled(name: &str) -> String {
    let label = format!("scenarios/{name}.toml");
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(label)).unwrap()
}

fn bucket_of(text: &str, set: &[&str]) -> SimDuration {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    meshsim::scenario::from_source("t.toml", "t", text, &set)
        .unwrap()
        .spec
        .bucket
}

#[test]
fn the_default_bucket_follows_the_runs_length() {
    let mm1 = bundled("mm1").replace("bucket = \"1h\"", "");
    // 10^6 customers at 0.9/s end near 1.11 x 10^6 s: 1000 rows need 1111 s, the next
    // 1-2-5 value is 2000 s (556 rows).
    let s = SimDuration::from_secs;
    assert_eq!(bucket_of(&mm1, &["simulation.requests=1000000"]), s(2000));
    // A duration wins when it ends first; 1 h / 1000 = 3.6 s -> 5 s.
    assert_eq!(
        bucket_of(&mm1, &["simulation.requests=1000000", "simulation.duration=\"1h\""]),
        s(5)
    );
    // Short runs keep 1 s buckets.
    assert_eq!(bucket_of(&mm1, &["simulation.requests=100"]), s(1));
    // A schedule: 0 requests/s for 10000 s, then 10/s: 10^5 requests end at 20000 s.
    let scheduled = mm1.replace(
        "rate = 0.9 ",
        "schedule = [{ at = \"0s\", rate = 0 }, { at = \"10000s\", rate = 10 }]\n#",
    );
    assert_eq!(bucket_of(&scheduled, &["simulation.requests=100000"]), s(20));
    // Written, it is kept.
    assert_eq!(bucket_of(&bundled("mm1"), &[]), s(3600));
}
