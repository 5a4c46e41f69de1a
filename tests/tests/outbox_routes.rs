//! palmdao's list of events the suite must receive (`REQUIRED_ROUTES`,
//! which its outbox relay never settles unrouted) is exactly what the
//! services' queues bind: a binding added to a service without adding it
//! there would let that event be dropped when its queue is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palm_amqp::topology::topic_matches;

#[test]
fn every_binding_of_a_suite_queue_is_a_required_route_and_nothing_else_is() {
    let bindings: Vec<String> = [
        palmdao::queues(),
        palmvalidator::queues(),
        palmvalidator_discord::queues(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|queue| queue.bindings)
    .collect();
    for binding in &bindings {
        assert!(
            palmdao::REQUIRED_ROUTES.contains(&binding.as_str()),
            "`{binding}` is bound by a service of the suite but missing from palmdao::REQUIRED_ROUTES"
        );
    }
    for route in palmdao::REQUIRED_ROUTES {
        assert!(
            bindings.iter().any(|b| b == route),
            "`{route}` is in palmdao::REQUIRED_ROUTES but no service binds it"
        );
    }
    // What the issue names, concretely.
    for key in [
        "vote.submitted",
        "verification.requested.wallet",
        "verification.requested.discord",
        "vote.validated",
        "vote.rejected",
        "verification.completed",
    ] {
        assert!(
            palmdao::REQUIRED_ROUTES
                .iter()
                .any(|pattern| topic_matches(pattern, key)),
            "{key}"
        );
    }
    for key in ["member.joined", "proposal.created", "discussion.created"] {
        assert!(
            !palmdao::REQUIRED_ROUTES
                .iter()
                .any(|pattern| topic_matches(pattern, key)),
            "{key} has no subscriber in the suite and may be settled unrouted"
        );
    }
}
