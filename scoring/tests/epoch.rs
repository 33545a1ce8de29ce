//! Closing an epoch: one small epoch computed by hand, and the properties every epoch keeps.
#![allow(clippy::unwrap_used, clippy::panic)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use covermap_domain::Cell;
use covermap_domain::rewards::{
    Bounty, Capture, CellLastSeen, CellRoads, ContributorEvidence, DemandArea, EpochInputs,
    EpochPeriod, KnownEmitter, PreviousTotal, RadioSample, Refusal, UploadEvidence, UsageCount,
};
use covermap_scoring::epoch::{self, EpochOutcome};
use covermap_scoring::ledger::{self, LedgerLeaf};
use covermap_scoring::policy::{DEFAULT_POLICY, RewardPolicy};
use covermap_trust::{Evidence, Gap, Verdict};
use proptest::prelude::*;

fn policy(emission: u64, pool_share: f64) -> RewardPolicy {
    RewardPolicy::parse(
        &DEFAULT_POLICY
            .replace(
                "emission = 1000000000000",
                &format!("emission = {emission}"),
            )
            .replace("pool_share = 0.2", &format!("pool_share = {pool_share}")),
    )
    .unwrap()
}

fn cell(lat: f64, lon: f64) -> Cell {
    Cell(
        h3o::LatLng::new(lat, lon)
            .unwrap()
            .to_cell(h3o::Resolution::Eleven),
    )
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn capture(who: Option<&str>, upload: i64, frame: i32, cell: Cell, at: DateTime<Utc>) -> Capture {
    Capture {
        contributor: who.map(str::to_owned),
        upload_id: upload,
        frame,
        cell,
        captured_at: at,
    }
}

fn radio(who: &str, upload: i64, cell: Cell, signal: i32, at: DateTime<Utc>) -> RadioSample {
    let c = h3o::LatLng::from(cell.0);
    RadioSample {
        contributor: Some(who.into()),
        upload_id: upload,
        seq: 0,
        cell,
        technology: "lte".into(),
        operator: "208-1".into(),
        emitter: "lte:208:1:1:1".into(),
        signal_dbm: Some(signal),
        observed_at: at,
        lat: c.lat(),
        lon: c.lng(),
    }
}

fn amount(o: &EpochOutcome, who: &str) -> u64 {
    o.rewards
        .iter()
        .find(|r| r.contributor == who)
        .map_or(0, |r| r.amount)
}

/// The epoch of the golden test: every number below is worked out in the comments.
fn golden_inputs() -> EpochInputs {
    let s = start();
    let h = Duration::hours(1);
    let a = cell(43.73, 7.42);
    let b = cell(43.74, 7.43);
    let c = cell(43.75, 7.44);
    EpochInputs {
        period: EpochPeriod {
            epoch: 0,
            start: s,
            end: s + Duration::days(1),
        },
        captures: vec![
            capture(Some("alice"), 1, 0, a, s),
            capture(Some("bob"), 2, 0, a, s + h),
            capture(Some("bob"), 2, 1, b, s + h * 2),
            capture(Some("carol"), 3, 0, b, s + h),
        ],
        last_seen: vec![CellLastSeen {
            cell: a,
            last_seen: s - Duration::hours(84),
        }],
        roads: vec![CellRoads {
            cell: a,
            road_length_m: 100.0,
            observed_m: 50.0,
        }],
        radio: vec![radio("dave", 4, a, -90, s + h)],
        // Erin heard dave's cell in an earlier epoch: a second, independent witness.
        emitters: vec![KnownEmitter {
            emitter: "lte:208:1:1:1".into(),
            lat: h3o::LatLng::from(a.0).lat(),
            lon: h3o::LatLng::from(a.0).lng(),
            frequency_mhz: 0.0,
            samples: 5,
            observers: vec!["erin".into()],
            radius_m: 100.0,
        }],
        demand: vec![DemandArea {
            id: 7,
            name: "harbour".into(),
            weight: 1.0,
            cells: vec![b, c],
            created_at: s - Duration::days(1),
            expires_at: Some(s + h * 12),
            bounty: Some(Bounty {
                budget: 100,
                spent: 0,
                claimed: vec![],
                refunded: false,
            }),
        }],
        evidence: vec![ContributorEvidence {
            contributor: "carol".into(),
            fixes_accepted: 100,
            fixes_spoofed: 0,
            frames_duplicated: 3,
        }],
        previous: vec![
            PreviousTotal {
                contributor: "alice".into(),
                cumulative: 50,
            },
            PreviousTotal {
                contributor: "carol".into(),
                cumulative: 10,
            },
        ],
        usage: vec![],
        uploads: vec![],
        refusals: vec![],
    }
}

#[test]
fn a_small_epoch_computed_by_hand() {
    let p = policy(1000, 0.2);
    let o = epoch::close(&golden_inputs(), &p);
    // Carol repeated 3 frames of others: flagged, her capture of B is left out.
    assert_eq!(o.penalties.len(), 1);
    assert_eq!(o.penalties[0].reason, "duplicated_frames");
    // Cell A: 50 of 100 m driven → gap 0.5 → coverage factor 0.5 + 0.5 × 0.5 = 0.75.
    // Alice at the epoch's start, 84 h = half the 7-day recovery after A's last capture:
    //   0.5 × 0.75 = 0.375 → 375,000 µpoints.
    // Bob an hour later: staleness 1/168 × 0.75 = 0.004464… → 4,464.
    // Cell B: never seen, no roads (factor 1), demand 1 + 1 = 2: Bob earns 2,000,000.
    // Dave's LTE sample in A, no other contributor near: 0.25 × 0.25 = 62,500.
    let points = |who| {
        o.rewards
            .iter()
            .find(|r| r.contributor == who)
            .unwrap()
            .points
    };
    assert_eq!(points("alice"), 375_000);
    assert_eq!(points("bob"), 2_004_464);
    assert_eq!(points("dave"), 62_500);
    // The bounty: 100 over cells B and C, 50 a cell; Bob's capture claims B (Carol's earlier
    // one does not count). It expired within the epoch: 50 refunded.
    assert_eq!(o.claims.len(), 1);
    assert_eq!(
        (o.claims[0].contributor.as_str(), o.claims[0].paid),
        ("bob", 50)
    );
    assert_eq!(o.refunds[0].amount, 50);
    // Base pool 1000 − 50 = 950 over 2,441,964 µpoints, floored:
    //   alice 950 × 375,000 / 2,441,964 = 145.89 → 145
    //   bob   950 × 2,004,464 / …       = 779.80 → 779 (+ 50 bounty)
    //   dave  950 × 62,500 / …          =  24.31 →  24      dust 950 − 948 = 2.
    assert_eq!(amount(&o, "alice"), 145);
    assert_eq!(amount(&o, "bob"), 829);
    assert_eq!(amount(&o, "dave"), 24);
    assert_eq!(amount(&o, "carol"), 0);
    assert_eq!(o.manifest.unallocated, 2);
    assert_eq!(o.manifest.distributed, 998);
    assert_eq!(o.manifest.bounty_paid, 50);
    // Cumulative totals: alice 50 + 145; carol keeps her 10 in the ledger.
    let cum = |who| {
        o.rewards
            .iter()
            .find(|r| r.contributor == who)
            .unwrap()
            .cumulative
    };
    assert_eq!(cum("alice"), 195);
    assert_eq!(cum("carol"), 10);
    // The root is over these four leaves and each proves against it.
    let leaves = epoch::leaves(&o);
    assert_eq!(leaves.len(), 4);
    let root: ledger::Hash = hex::decode(&o.manifest.root).unwrap().try_into().unwrap();
    for l in &leaves {
        let (leaf, proof) = epoch::proof_for(&leaves, &l.contributor).unwrap();
        assert!(ledger::verify(&leaf, &proof, &root));
    }
    let forged = LedgerLeaf {
        cumulative: 196,
        ..leaves
            .iter()
            .find(|l| l.contributor == "alice")
            .unwrap()
            .clone()
    };
    let (_, proof) = epoch::proof_for(&leaves, "alice").unwrap();
    assert!(!ledger::verify(&forged, &proof, &root));
    // The manifest names the policy and every input.
    assert_eq!(o.manifest.policy_hash, p.hash);
    assert_eq!(o.manifest.inputs.captures.len(), 64);
}

#[test]
fn the_same_place_a_week_later_earns_again_and_moments_later_hardly() {
    let p = policy(1_000_000, 0.2);
    let a = cell(43.73, 7.42);
    let s = start();
    let mut inputs = golden_inputs();
    inputs.demand.clear();
    inputs.radio.clear();
    inputs.evidence.clear();
    inputs.roads.clear();
    inputs.last_seen = vec![CellLastSeen {
        cell: a,
        last_seen: s - Duration::days(8),
    }];
    inputs.captures = vec![
        capture(Some("first"), 1, 0, a, s),
        capture(Some("repeat"), 2, 0, a, s + Duration::minutes(5)),
    ];
    let o = epoch::close(&inputs, &p);
    assert!(amount(&o, "first") > 1000 * amount(&o, "repeat").max(1));
}

#[test]
fn map_consumers_looking_at_an_area_raise_its_demand() {
    let p = policy(1_000_000, 0.2);
    let a = cell(43.73, 7.42);
    let far = cell(43.80, 7.50);
    let s = start();
    let mut inputs = golden_inputs();
    inputs.demand.clear();
    inputs.radio.clear();
    inputs.evidence.clear();
    inputs.roads.clear();
    inputs.last_seen.clear();
    inputs.previous.clear();
    inputs.captures = vec![
        capture(Some("watched"), 1, 0, a, s),
        capture(Some("unwatched"), 2, 0, far, s),
    ];
    // 1023 requests: ⌊log2 1024⌋ = 10 doublings × 0.1 = +1.0 on the multiplier.
    inputs.usage = vec![UsageCount {
        area: Cell(a.0.parent(h3o::Resolution::Seven).unwrap()),
        requests: 1023,
    }];
    let o = epoch::close(&inputs, &p);
    let points = |who| {
        o.rewards
            .iter()
            .find(|r| r.contributor == who)
            .unwrap()
            .points
    };
    assert_eq!(points("watched"), 2_000_000);
    assert_eq!(points("unwatched"), 1_000_000);
}

// ---- properties ----

fn arb_inputs() -> impl Strategy<Value = EpochInputs> {
    let cells: Vec<Cell> = (0..8)
        .map(|i| cell(43.70 + 0.01 * f64::from(i), 7.40))
        .collect();
    let who = prop::sample::select(vec!["a", "b", "c", "d", "e"]);
    let cell_s = prop::sample::select(cells.clone());
    let minutes = 0i64..(24 * 60);
    let captures = prop::collection::vec(
        (
            prop::option::weighted(0.9, who.clone()),
            cell_s.clone(),
            minutes.clone(),
        ),
        0..40,
    );
    let last_seen = prop::collection::vec((cell_s.clone(), 0i64..(20 * 24 * 60)), 0..8);
    let roads = prop::collection::vec((cell_s.clone(), 1.0f64..500.0, 0.0f64..600.0), 0..8);
    let radio_s = prop::collection::vec(
        (who.clone(), cell_s.clone(), -150i32..-20, minutes.clone()),
        0..20,
    );
    let areas = prop::collection::vec(
        (
            0.0f64..3.0,
            prop::collection::vec(cell_s.clone(), 1..4),
            prop::option::of(1u64..5000),
            prop::option::of(0i64..(48 * 60)),
        ),
        0..3,
    );
    let evidence = prop::collection::vec((who.clone(), 0u64..5, 0u64..50), 0..3);
    let previous = prop::collection::vec((who, 0u128..1_000_000), 0..5);
    let usage = prop::collection::vec((cell_s.clone(), 0u64..100_000), 0..4);
    (
        (captures, last_seen, roads, radio_s),
        (areas, evidence, previous, usage),
    )
        .prop_map(
            |((captures, last_seen, roads, radio_s), (areas, evidence, previous, usage))| {
                let s = start();
                EpochInputs {
                    period: EpochPeriod {
                        epoch: 3,
                        start: s,
                        end: s + Duration::days(1),
                    },
                    captures: captures
                        .into_iter()
                        .enumerate()
                        .map(|(i, (w, c, m))| {
                            capture(w, i as i64 % 5, i as i32, c, s + Duration::minutes(m))
                        })
                        .collect(),
                    last_seen: last_seen
                        .into_iter()
                        .map(|(c, m)| CellLastSeen {
                            cell: c,
                            last_seen: s - Duration::minutes(m),
                        })
                        .collect(),
                    roads: roads
                        .into_iter()
                        .map(|(c, l, o)| CellRoads {
                            cell: c,
                            road_length_m: l,
                            observed_m: o,
                        })
                        .collect(),
                    radio: radio_s
                        .into_iter()
                        .enumerate()
                        .map(|(i, (w, c, sig, m))| {
                            let mut r = radio(w, 100 + i as i64, c, sig, s + Duration::minutes(m));
                            r.seq = i as i32;
                            r
                        })
                        .collect(),
                    emitters: vec![],
                    demand: areas
                        .into_iter()
                        .enumerate()
                        .map(|(i, (w, cells, budget, expires))| DemandArea {
                            id: i as i64,
                            name: format!("area {i}"),
                            weight: w,
                            cells,
                            created_at: s - Duration::hours(1),
                            expires_at: expires.map(|m| s + Duration::minutes(m)),
                            bounty: budget.map(|b| Bounty {
                                budget: b,
                                spent: 0,
                                claimed: vec![],
                                refunded: false,
                            }),
                        })
                        .collect(),
                    evidence: evidence
                        .into_iter()
                        .map(|(w, d, f)| ContributorEvidence {
                            contributor: w.into(),
                            fixes_accepted: 40,
                            fixes_spoofed: f,
                            frames_duplicated: d,
                        })
                        .collect(),
                    previous: {
                        let mut seen = std::collections::BTreeMap::new();
                        for (w, c) in previous {
                            seen.insert(w, c);
                        }
                        seen.into_iter()
                            .map(|(w, c)| PreviousTotal {
                                contributor: w.into(),
                                cumulative: c,
                            })
                            .collect()
                    },
                    usage: usage
                        .into_iter()
                        .map(|(c, n)| UsageCount {
                            area: Cell(c.0.parent(h3o::Resolution::Seven).unwrap()),
                            requests: n,
                        })
                        .collect(),
                    uploads: vec![],
                    refusals: vec![],
                }
            },
        )
}

fn evidence(upload: i64, who: &str, e: &Evidence) -> UploadEvidence {
    UploadEvidence {
        upload_id: upload,
        contributor: Some(who.into()),
        device: format!("cam-{who}"),
        kind: "gpx".into(),
        evidence: serde_json::to_string(e).unwrap(),
    }
}

/// Two of a contributor's drives, and a third of another's, each capturing its own fresh cell.
fn three_drives() -> EpochInputs {
    let mut inputs = golden_inputs();
    let s = start();
    inputs.captures = vec![
        capture(Some("erin"), 11, 0, cell(43.71, 7.41), s),
        capture(Some("erin"), 12, 0, cell(43.72, 7.41), s),
        capture(Some("fred"), 13, 0, cell(43.76, 7.45), s),
    ];
    inputs.radio.clear();
    inputs.evidence.clear();
    inputs.demand.clear();
    inputs.uploads = [(11, "erin"), (12, "erin"), (13, "fred")]
        .into_iter()
        .map(|(u, w)| evidence(u, w, &Evidence::default()))
        .collect();
    inputs
}

#[test]
fn a_flagged_upload_earns_nothing_and_its_verdict_is_recorded() {
    let p = policy(1000, 0.2);
    let mut inputs = three_drives();
    let honest = epoch::close(&inputs, &p);
    assert!(
        honest
            .verdicts
            .iter()
            .all(|v| v.verdict == Verdict::Trusted)
    );
    assert_eq!(honest.manifest.flagged_uploads, 0);
    // Erin's second drive is the same bytes as an upload another device sent first.
    inputs.uploads[1] = evidence(
        12,
        "erin",
        &Evidence {
            copy_of: Some(3),
            ..Evidence::default()
        },
    );
    let o = epoch::close(&inputs, &p);
    let v = o.verdicts.iter().find(|v| v.upload_id == 12).unwrap();
    assert_eq!(v.verdict, Verdict::Flagged);
    assert_eq!(v.findings[0].code, "copied_upload");
    assert_eq!(o.manifest.flagged_uploads, 1);
    assert!(!o.cells.iter().any(|c| c.cell == cell(43.72, 7.41)));
    // One flagged upload of two is no repeat offence: erin keeps her first drive's reward.
    assert!(o.penalties.is_empty());
    assert!(amount(&o, "erin") > 0 && amount(&o, "erin") < amount(&honest, "erin"));
    assert_ne!(o.manifest.inputs.uploads, honest.manifest.inputs.uploads);
}

#[test]
fn a_teleport_between_two_uploads_flags_both_and_their_sender() {
    let p = policy(1000, 0.2);
    let mut inputs = three_drives();
    // Drive 12 starts 5 km from where drive 11 ended, ten seconds later.
    inputs.uploads[1] = evidence(
        12,
        "erin",
        &Evidence {
            gaps: vec![Gap {
                upload: 11,
                shared: "device".into(),
                seconds: 10.0,
                distance_m: 5000.0,
                min_drive_s: None,
            }],
            ..Evidence::default()
        },
    );
    let o = epoch::close(&inputs, &p);
    for id in [11, 12] {
        let v = o.verdicts.iter().find(|v| v.upload_id == id).unwrap();
        assert_eq!(v.verdict, Verdict::Flagged, "{v:?}");
        assert_eq!(v.findings[0].code, "teleport");
    }
    assert_eq!(o.penalties[0].contributor, "erin");
    assert_eq!(o.penalties[0].reason, "repeat_offender");
    assert_eq!(amount(&o, "erin"), 0);
    assert_eq!(amount(&o, "fred"), 1000);
}

#[test]
fn refusals_count_towards_repeat_offences() {
    let p = policy(1000, 0.2);
    let mut inputs = three_drives();
    inputs.uploads[0] = evidence(
        11,
        "erin",
        &Evidence {
            copy_of: Some(2),
            ..Evidence::default()
        },
    );
    let refused = Refusal {
        contributor: "erin".into(),
        device: "cam-erin".into(),
        reason: "implausible_speed".into(),
        at: start(),
    };
    inputs.refusals = vec![refused];
    let o = epoch::close(&inputs, &p);
    assert_eq!(o.penalties[0].reason, "repeat_offender");
    assert!(o.penalties[0].detail.contains("1 refused"));
    assert_eq!(amount(&o, "erin"), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_flagged_upload_changes_nobody_elses_reward_and_earns_its_sender_nothing(
        inputs in arb_inputs()
    ) {
        let p = policy(1_000_000_000, 0.2);
        let mut flagged = inputs.clone();
        // Upload 0 is flagged; dropping its captures and samples must change no reward.
        flagged.uploads.push(UploadEvidence {
            upload_id: 0,
            contributor: None,
            device: "cam-x".into(),
            kind: "gpx".into(),
            evidence: serde_json::to_string(&Evidence {
                copy_of: Some(99),
                ..Evidence::default()
            })
            .unwrap(),
        });
        let mut without = flagged.clone();
        without.captures.retain(|c| c.upload_id != 0);
        without.radio.retain(|r| r.upload_id != 0);
        let a = epoch::close(&flagged, &p);
        let b = epoch::close(&without, &p);
        prop_assert_eq!(a.rewards, b.rewards);
        prop_assert_eq!(&a.manifest.root, &b.manifest.root);
    }

    #[test]
    fn rewards_sum_to_the_emission_minus_the_recorded_dust(
        inputs in arb_inputs(), share in 0.0f64..1.0, emission in 0u64..10_000_000_000
    ) {
        let o = epoch::close(&inputs, &policy(emission, share));
        let paid: u64 = o.rewards.iter().map(|r| r.amount).sum();
        prop_assert_eq!(paid + o.manifest.unallocated, emission);
        prop_assert_eq!(paid, o.manifest.distributed);
        prop_assert!(o.manifest.bounty_paid as f64 <= emission as f64 * share + 1.0);
    }

    #[test]
    fn the_same_inputs_in_any_order_give_the_same_root(
        inputs in arb_inputs(), seed in any::<u64>()
    ) {
        let p = policy(1_000_000_000, 0.2);
        let a = epoch::close(&inputs, &p);
        let mut shuffled = inputs.clone();
        let mut rng = seed;
        let mut next = move || { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); rng };
        fn shuffle<T>(v: &mut [T], next: &mut impl FnMut() -> u64) {
            for i in (1..v.len()).rev() { v.swap(i, (next() % (i as u64 + 1)) as usize); }
        }
        shuffle(&mut shuffled.captures, &mut next);
        shuffle(&mut shuffled.last_seen, &mut next);
        shuffle(&mut shuffled.roads, &mut next);
        shuffle(&mut shuffled.radio, &mut next);
        shuffle(&mut shuffled.demand, &mut next);
        for d in &mut shuffled.demand { shuffle(&mut d.cells, &mut next); }
        shuffle(&mut shuffled.evidence, &mut next);
        shuffle(&mut shuffled.previous, &mut next);
        let b = epoch::close(&shuffled, &p);
        prop_assert_eq!(&a.manifest, &b.manifest);
        prop_assert_eq!(a.rewards, b.rewards);
    }

    #[test]
    fn flagged_contributors_and_refused_measurements_never_earn(inputs in arb_inputs()) {
        let p = policy(1_000_000_000, 0.2);
        let mut inputs = inputs;
        // "z" only ever sent a physically impossible radio sample.
        let any_cell = cell(43.70, 7.40);
        inputs.radio.push(radio("z", 999, any_cell, -5, start()));
        let o = epoch::close(&inputs, &p);
        prop_assert_eq!(amount(&o, "z"), 0);
        for pen in &o.penalties {
            let r = o.rewards.iter().find(|r| r.contributor == pen.contributor).unwrap();
            prop_assert!(r.flagged);
            prop_assert_eq!(r.amount, 0);
            prop_assert_eq!(r.points, 0);
            prop_assert!(!o.claims.iter().any(|c| c.contributor == pen.contributor));
        }
    }

    #[test]
    fn a_fresh_capture_of_a_stale_cell_never_lowers_its_contributors_reward(
        inputs in arb_inputs(), who in prop::sample::select(vec!["a", "b", "c"]),
        minute in 0i64..(24 * 60), pick in 0usize..8
    ) {
        // Bounties may take the whole emission here, so no claim is scaled by the cap.
        let p = policy(1_000_000_000, 1.0);
        let recovery = Duration::days(7);
        let c = cell(43.70 + 0.01 * pick as f64, 7.40);
        let t = start() + Duration::minutes(minute);
        let stale = inputs.captures.iter().chain(std::iter::empty())
            .filter(|x| x.cell == c)
            .all(|x| x.captured_at <= t - recovery || x.captured_at > t)
            && inputs.last_seen.iter().filter(|l| l.cell == c).all(|l| l.last_seen <= t - recovery);
        prop_assume!(stale);
        let before = epoch::close(&inputs, &p);
        let mut more = inputs.clone();
        more.captures.push(capture(Some(who), 4242, 0, c, t));
        let after = epoch::close(&more, &p);
        prop_assert!(amount(&after, who) >= amount(&before, who),
            "{} < {}", amount(&after, who), amount(&before, who));
    }
}
