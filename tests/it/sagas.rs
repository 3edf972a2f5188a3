//! Orchestrated sagas (issue 11, section 5): a compensation is retried by its own
//! policy, one that still fails leaves its step done but does not stop the others, and
//! the report says which steps were left; compensations never make an effect expected.
//! Every failure here is certain (`p = 1`) and every time constant, so counts are exact.

use super::support::{json, run};
use serde_json::Value;

/// Ten orders, one every 100 ms: reserve stock, charge, ship. Shipping always fails;
/// the refund fails always when `refund_fails`, and is tried `refund_attempts` times
/// (its `compensation_policy`). No effect writes `expected_for`.
fn shop(ship_fails: bool, refund_fails: bool, refund_attempts: u32) -> String {
    let ship_p = if ship_fails { 1.0 } else { 0.0 };
    let refund_p = if refund_fails { 1.0 } else { 0.0 };
    format!(
        r#"[simulation]
requests = 10

[workloads.orders]
target = "order/place"
rate = 10
arrivals = "constant"

[services.order]
workers = 10
[services.order.endpoints.place]
steps = [{{ name = "place_order", saga = [
    {{ action = "inventory/reserve", compensation = "inventory/release" }},
    {{ action = "payments/charge", compensation = "payments/refund", compensation_policy = "refunds" }},
    {{ action = "shipping/schedule" }},
] }}]

[policies.refunds.retry]
max_attempts = {refund_attempts}
on = ["internal"]

[services.inventory]
workers = 10
[services.inventory.endpoints.reserve]
steps = [{{ work = "5ms" }}, {{ effect = "reserve_stock" }}]
[services.inventory.endpoints.release]
steps = [{{ work = "5ms" }}, {{ effect = "release_stock" }}]

[services.payments]
workers = 10
[services.payments.endpoints.charge]
steps = [{{ work = "20ms" }}, {{ effect = "charge" }}]
[services.payments.endpoints.refund]
steps = [{{ work = "20ms" }}, {{ fail = "internal", p = {refund_p} }}, {{ effect = "refund" }}]

[services.shipping]
workers = 10
[services.shipping.endpoints.schedule]
steps = [{{ work = "10ms" }}, {{ fail = "unavailable", p = {ship_p} }}, {{ effect = "ship" }}]
"#
    )
}

fn report(text: &str) -> Value {
    json(&run(text, &[]).report)
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn a_failed_refund_still_releases_the_stock_and_is_reported_as_left() {
    let r = report(&shop(true, true, 3));
    let saga = &r["consistency"]["sagas"]["place_order"];
    assert_eq!(n(&saga["started"]), 10);
    assert_eq!(n(&saga["completed"]), 0);
    assert_eq!(n(&saga["compensated"]), 0);
    assert_eq!(n(&saga["compensation_failed"]), 10);
    assert_eq!(
        saga["uncompensated"],
        serde_json::json!({ "inventory/reserve": 0, "payments/charge": 10 })
    );
    let effects = &r["consistency"]["effects"];
    // Before: the saga stopped at the failed refund and the stock stayed reserved.
    assert_eq!(n(&effects["release_stock"]["applied"]), 10);
    assert_eq!(n(&effects["refund"]["applied"]), 0);
    // The refund was retried by its policy: 3 attempts for each of 10 orders.
    let refunds = &r["edges"]["order->payments/refund"];
    assert_eq!((n(&refunds["calls"]), n(&refunds["attempts"])), (10, 30));
    // The order fails with the failed action's status, not the refund's.
    assert_eq!(
        r["workloads"]["orders"]["errors"],
        serde_json::json!({ "unavailable": 10 })
    );
}

#[test]
fn a_refund_that_succeeds_on_retry_compensates_the_saga() {
    let r = report(&shop(true, false, 3));
    let saga = &r["consistency"]["sagas"]["place_order"];
    assert_eq!(n(&saga["compensated"]), 10);
    assert_eq!(n(&saga["compensation_failed"]), 0);
    assert_eq!(
        saga["uncompensated"],
        serde_json::json!({ "inventory/reserve": 0, "payments/charge": 0 })
    );
    let effects = &r["consistency"]["effects"];
    assert_eq!(n(&effects["refund"]["applied"]), 10);
    assert_eq!(n(&effects["release_stock"]["applied"]), 10);
}

#[test]
fn the_summary_names_the_steps_left_uncompensated() {
    let out = run(&shop(true, true, 1), &[]);
    let summary = meshsim::report::text::summary(&out.report, "meshsim run test.toml");
    assert!(
        summary.contains("0 compensated, 10 compensation failed")
            && summary.contains("left uncompensated: payments/charge in 10"),
        "{summary}"
    );
}

#[test]
fn compensations_do_not_make_their_effects_expected_by_default() {
    // Every order completes: the refund and the release never run. Before, the default
    // `expected_for` followed the compensation calls and counted all 10 orders as
    // `never` for both.
    let r = report(&shop(false, false, 1));
    assert_eq!(
        n(&r["consistency"]["sagas"]["place_order"]["completed"]),
        10
    );
    let effects = &r["consistency"]["effects"];
    for undo in ["refund", "release_stock"] {
        assert_eq!(n(&effects[undo]["never"]), 0, "{undo}");
        assert_eq!(n(&effects[undo]["applied"]), 0, "{undo}");
    }
    // The actions stay expected: each order applied each exactly once.
    for done in ["reserve_stock", "charge", "ship"] {
        assert_eq!(n(&effects[done]["exactly_once"]), 10, "{done}");
        assert_eq!(n(&effects[done]["never"]), 0, "{done}");
    }
}
