//! palmdao's grouping of `vote.validated` results (`store::results`, ADR
//! 0032) against the real database (or the stand-in): one group holding a
//! first vote, an older vote of the same PalmID, a vote decided otherwise
//! before, a vote older than the ballot already in place and an unknown
//! vote (and a duplicate) gets each its own outcome, and leaves the ballots
//! a recount of the latest signed votes; applying the group again changes
//! nothing; a later message with other numbers does not change the ballot's;
//! two grouping tasks racing leave every PalmID's newer ballot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::TryStreamExt as _;
use futures_util::future::join_all;
use mongodb::bson::{Document, doc};
use palmdao::store::Store;
use palmdao::store::results::{Applied, ValidatedResults, ValidatedVote};

const PROPOSAL: &str = "proposal-1";

fn result(vote_id: &str, palm_id: &str, choice: usize) -> ValidatedVote {
    let mut allocation = vec![0.0; 3];
    allocation[choice] = 1.0;
    ValidatedVote {
        vote_id: vote_id.to_owned(),
        proposal_id: PROPOSAL.to_owned(),
        palm_id: palm_id.to_owned(),
        voting_power: 1.0,
        allocation,
    }
}

fn vote(id: &str, palm_id: &str, timestamp: i64, status: &str) -> Document {
    doc! {
        "_id": id, "proposal_id": PROPOSAL, "palm_id": palm_id,
        "timestamp": timestamp, "status": status,
    }
}

/// Applies `group` at once (so it forms one group, or a few); the outcomes
/// in order.
async fn apply_all(results: &ValidatedResults, group: &[ValidatedVote]) -> Vec<Applied> {
    join_all(group.iter().map(|r| results.apply(r.clone())))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn a_group_gives_each_result_its_own_outcome_and_a_second_pass_changes_nothing() {
    let client = mongodb::Client::with_uri_str(palm_testkit::mongo_url())
        .await
        .unwrap();
    let db = client.database(&palm_testkit::unique_database());
    let votes = db.collection::<Document>("votes");
    votes
        .insert_many([
            vote("latest-of-a", "a", 200, "pending"),
            vote("older-of-a", "a", 100, "pending"),
            vote("rejected-of-b", "b", 100, "rejected"),
            vote("older-than-ballot-of-c", "c", 100, "pending"),
        ])
        .await
        .unwrap();
    let ballots = db.collection::<Document>("ballots");
    ballots
        .insert_one(doc! {
            "_id": format!("{PROPOSAL}:c"), "proposal_id": PROPOSAL, "palm_id": "c",
            "vote_id": "newer-of-c", "timestamp": 300_i64, "allocation": [0.0, 0.0, 1.0], "power": 1.0,
        })
        .await
        .unwrap();

    let results = ValidatedResults::start(Store::new(db.clone()));
    let group = [
        result("latest-of-a", "a", 0),
        result("older-of-a", "a", 1),
        result("rejected-of-b", "b", 0),
        result("older-than-ballot-of-c", "c", 0),
        result("unknown", "d", 0),
        // A duplicate delivery in the same group.
        result("latest-of-a", "a", 0),
    ];
    let first = apply_all(&results, &group).await;
    assert_eq!(first[0], Applied::Valid { placed: true });
    assert!(matches!(first[1], Applied::Valid { .. }), "{:?}", first[1]);
    assert_eq!(first[2], Applied::DecidedOtherwise("rejected".into()));
    assert_eq!(first[3], Applied::Valid { placed: false });
    assert_eq!(first[4], Applied::Unknown);
    assert!(matches!(first[5], Applied::Valid { .. }), "{:?}", first[5]);

    let check = || async {
        let mut placed: Vec<(String, String)> = ballots
            .find(doc! {})
            .await
            .unwrap()
            .try_collect::<Vec<Document>>()
            .await
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b.get_str("palm_id").unwrap().to_owned(),
                    b.get_str("vote_id").unwrap().to_owned(),
                )
            })
            .collect();
        placed.sort();
        assert_eq!(
            placed,
            [
                ("a".to_owned(), "latest-of-a".to_owned()),
                ("c".to_owned(), "newer-of-c".to_owned()),
            ]
        );
        for (id, status) in [
            ("latest-of-a", "valid"),
            ("older-of-a", "valid"),
            ("rejected-of-b", "rejected"),
            ("older-than-ballot-of-c", "valid"),
        ] {
            let found = votes.find_one(doc! { "_id": id }).await.unwrap().unwrap();
            assert_eq!(found.get_str("status").unwrap(), status, "{found}");
        }
    };
    check().await;

    // The same results again (a redelivery): nothing is placed, nothing
    // changes.
    let second = apply_all(&results, &group).await;
    assert_eq!(second[0], Applied::Valid { placed: false });
    assert_eq!(second[1], Applied::Valid { placed: false });
    assert_eq!(second[2], Applied::DecidedOtherwise("rejected".into()));
    assert_eq!(second[3], Applied::Valid { placed: false });
    assert_eq!(second[4], Applied::Unknown);
    assert_eq!(second[5], Applied::Valid { placed: false });
    check().await;

    // A later message for a decided vote with other numbers: the ballot
    // keeps the stored (first) decision's allocation.
    ballots
        .delete_one(doc! { "_id": format!("{PROPOSAL}:a") })
        .await
        .unwrap();
    let replay = results.apply(result("latest-of-a", "a", 2)).await.unwrap();
    assert_eq!(replay, Applied::Valid { placed: true });
    let ballot = ballots
        .find_one(doc! { "_id": format!("{PROPOSAL}:a") })
        .await
        .unwrap()
        .unwrap();
    let allocation: Vec<f64> = ballot
        .get_array("allocation")
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(allocation, [1.0, 0.0, 0.0], "{ballot}");
    db.drop().await.ok();
}

/// Two replicas' grouping tasks placing the two votes of each of many
/// PalmIDs at once, the newer through one and the older through the other:
/// the newer vote's ballot is in place for every PalmID. (On MongoDB both
/// upserts of a new ballot can find nothing and collide; the stand-in runs
/// one statement at a time, so there it checks the outcome, not the race.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_leave_the_newer_ballot_of_every_palm_id() {
    let client = mongodb::Client::with_uri_str(palm_testkit::mongo_url())
        .await
        .unwrap();
    let db = client.database(&palm_testkit::unique_database());
    let palm_ids: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let votes = db.collection::<Document>("votes");
    votes
        .insert_many(palm_ids.iter().flat_map(|palm| {
            [
                vote(&format!("newer-{palm}"), palm, 200, "pending"),
                vote(&format!("older-{palm}"), palm, 100, "pending"),
            ]
        }))
        .await
        .unwrap();
    let first = ValidatedResults::start(Store::new(db.clone()));
    let second = ValidatedResults::start(Store::new(db.clone()));
    let newer = join_all(
        palm_ids
            .iter()
            .map(|palm| first.apply(result(&format!("newer-{palm}"), palm, 0))),
    );
    let older = join_all(
        palm_ids
            .iter()
            .map(|palm| second.apply(result(&format!("older-{palm}"), palm, 1))),
    );
    let (newer, older) = tokio::join!(newer, older);
    for outcome in newer.into_iter().chain(older) {
        assert!(matches!(outcome.unwrap(), Applied::Valid { .. }));
    }
    let placed: Vec<Document> = db
        .collection::<Document>("ballots")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(placed.len(), palm_ids.len());
    for ballot in &placed {
        let palm = ballot.get_str("palm_id").unwrap();
        assert_eq!(
            ballot.get_str("vote_id").unwrap(),
            format!("newer-{palm}"),
            "{ballot}"
        );
    }
    db.drop().await.ok();
}
