//! `covermap policy`: the policy in force and its governance — list and show proposals, propose
//! a policy file (as the operator), vote (as a contributor, signing with a device's key over
//! HTTP), and check a proposal's count from a server's published ballots alone.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Subcommand;
use covermap_domain::rewards::ContributorReward;
use covermap_ingest::access::DeviceSigner;
use covermap_pipeline::governance::{self, PolicyBook, Proposing};
use covermap_scoring::governance::{Choice, GovernanceRules};
use covermap_store::{Store, VoteRecord};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The policies in force over time, then every proposal (JSON lines, newest first).
    List,
    /// One proposal in full: policy text, voting rules, simulated effect, electorate, signed
    /// ballots and count (JSON). With --from URL, read from that server and check every ballot's
    /// signature and the count here, trusting nothing the server computed.
    Show {
        /// The proposal's id, as `policy list` shows it.
        id: i64,
        /// A covermap server's address (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        from: Option<String>,
    },
    /// Propose a policy file, as the operator: it is checked against the policy in force,
    /// simulated on the last closed epochs, and put to the contributors' vote.
    Propose {
        /// The proposed policy, a TOML file.
        file: PathBuf,
        /// One line saying what it changes.
        #[arg(long)]
        title: String,
        /// Why: what it is meant to fix, and for whom.
        #[arg(long, default_value = "")]
        rationale: String,
        /// Who proposes, for the record.
        #[arg(long, default_value = "operator")]
        by: String,
    },
    /// Vote on a proposal as a contributor: the ballot is a request to SERVER signed with one of
    /// the contributor's devices' keys, kept whole as the ballot.
    Vote {
        /// The proposal's id.
        id: i64,
        /// yes, no or abstain.
        choice: String,
        /// The covermap server's address.
        #[arg(long)]
        server: String,
        /// The device's id, as registered.
        #[arg(long)]
        device: String,
        /// The contributor the device is registered under.
        #[arg(long)]
        contributor: String,
        /// A file holding the device's ed25519 secret key, 64 hex digits.
        #[arg(long)]
        secret_key_file: PathBuf,
    },
}

/// The policy book of `store`, seeded with the settings' policy if the store has none.
pub async fn open_book(settings: &Settings, store: &dyn Store) -> anyhow::Result<PolicyBook> {
    let genesis = settings.reward_policy()?;
    Ok(PolicyBook::open(store, &genesis, settings.policy.is_some(), Utc::now()).await?)
}

/// The store and its policy book, with the votes that closed decided.
async fn governed(settings: &Settings) -> anyhow::Result<(Arc<dyn Store>, PolicyBook)> {
    let store = crate::open_store(settings).await?;
    let book = open_book(settings, store.as_ref()).await?;
    book.refresh(store.as_ref(), Utc::now()).await?;
    Ok((store, book))
}

pub async fn run(command: PolicyCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Show {
            id,
            from: Some(url),
        } => show_remote(&url, id).await,
        PolicyCommand::Vote {
            id,
            choice,
            server,
            device,
            contributor,
            secret_key_file,
        } => vote(id, &choice, &server, device, contributor, &secret_key_file).await,
        PolicyCommand::List => {
            let (store, _) = governed(settings).await?;
            for s in store.policy_schedule().await? {
                println!("{}", json!({ "in_force": s }));
            }
            for p in store.proposals(1000).await? {
                println!("{}", json!({ "proposal": p }));
            }
            Ok(())
        }
        PolicyCommand::Show { id, from: None } => {
            let (store, _) = governed(settings).await?;
            let view = governance::view(store.as_ref(), id, Utc::now()).await?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(())
        }
        PolicyCommand::Propose {
            file,
            title,
            rationale,
            by,
        } => {
            let (store, book) = governed(settings).await?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let now = Utc::now();
            let proposing = Proposing {
                proposed_by: &by,
                title: &title,
                rationale: &rationale,
                policy: &text,
            };
            let record = governance::propose(store.as_ref(), &book, proposing, now).await?;
            let view = governance::view(store.as_ref(), record.id, now).await?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(())
        }
    }
}

async fn vote(
    id: i64,
    choice: &str,
    server: &str,
    device: String,
    contributor: String,
    secret_key_file: &std::path::Path,
) -> anyhow::Result<()> {
    let choice: Choice = choice.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let secret_hex = std::fs::read_to_string(secret_key_file)
        .with_context(|| format!("cannot read {}", secret_key_file.display()))?;
    let secret: [u8; 32] = hex::decode(secret_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("the secret key file must hold 64 hex digits")?;
    let signer = DeviceSigner::from_secret(device, secret).bound_to(contributor);
    let path = format!("/api/v1/policy/proposals/{id}/votes");
    let body = serde_json::to_vec(&json!({ "choice": choice.as_str() }))?;
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.trim_end_matches('/')))
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in signer.headers("POST", &path, &body, Utc::now()) {
        request = request.header(name, value);
    }
    let response = request.send().await.context("cannot reach the server")?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the server refused the ballot ({status}): {answer}");
    }
    println!("{answer}");
    Ok(())
}

/// Reads proposal `id` from a server and checks it without trusting the server's arithmetic:
/// that the policy text is the one hashed; every ballot (signed for this proposal's path, by the
/// close plus the allowed clock skew, with a signature that holds; each signed ballot once; a
/// voter's ballots in the order their device signed them); that every elector earned, in the
/// epochs the electorate was drawn from, what their weight says (from the public rewards); and
/// the count and outcome under the proposal's own voting rules. Prints the check; fails if the
/// server's count or outcome, the policy's hash or an elector's weight disagrees.
async fn show_remote(url: &str, id: i64) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    let address = format!("{base}/api/v1/policy/proposals/{id}");
    let view: serde_json::Value = get(&address).await?;
    let rules: GovernanceRules = serde_json::from_value(view["voting_rules"].clone())
        .context("the proposal's voting rules")?;
    let electorate: Vec<(String, u64)> = view["electorate"]
        .as_array()
        .context("the proposal's electorate")?
        .iter()
        .filter_map(|e| Some((e["contributor"].as_str()?.to_owned(), e["weight"].as_u64()?)))
        .collect();
    let ends: chrono::DateTime<Utc> = serde_json::from_value(view["voting_ends_at"].clone())?;
    let votes: Vec<VoteRecord> = view["votes"]
        .as_array()
        .context("the proposal's ballots")?
        .iter()
        .map(|v| serde_json::from_value::<VoteRecord>(v.clone()))
        .collect::<Result<_, _>>()
        .context("a ballot")?;
    let refused: Vec<i64> = votes
        .iter()
        .filter(|v| !governance::ballot_counts(v, id, ends))
        .map(|v| v.id)
        .collect();
    let in_time: Vec<VoteRecord> = votes.into_iter().filter(|v| v.cast_at < ends).collect();
    let tally = governance::count(id, ends, &rules, &electorate, &in_time);
    let claimed: covermap_scoring::governance::Tally =
        serde_json::from_value(view["tally"].clone()).context("the server's count")?;
    let outcome = view["outcome"].as_str();
    let outcome_agrees = match outcome {
        Some("passed") => tally.passed,
        Some("failed") => !tally.passed,
        _ => true,
    };
    let text = view["policy"].as_str().unwrap_or_default();
    let hash_agrees =
        view["policy_hash"].as_str() == Some(hex::encode(Sha256::digest(text.as_bytes())).as_str());
    let wrong_weights = check_electorate(base, &view, &rules, &electorate).await?;
    println!(
        "{}",
        json!({
            "proposal": id,
            "policy_hash": view["policy_hash"],
            "policy_hash_agrees": hash_agrees,
            "ballots_not_counted": refused,
            "electors_with_wrong_weights": wrong_weights,
            "recounted": tally,
            "server_count_agrees": claimed == tally,
            "outcome": outcome,
            "outcome_agrees": outcome_agrees,
        })
    );
    if claimed != tally || !outcome_agrees || !hash_agrees || !wrong_weights.is_empty() {
        bail!("proposal {id}: what the server published does not add up");
    }
    Ok(())
}

async fn get(address: &str) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(address)
        .await
        .with_context(|| format!("cannot reach {address}"))?
        .error_for_status()?
        .json()
        .await?)
}

/// The electors whose weight their public rewards in the electorate's epochs do not bear out
/// (an elector invented, or weighted up). Who was left out cannot be seen from here; a voter can
/// see whether they are in.
async fn check_electorate(
    base: &str,
    view: &serde_json::Value,
    rules: &GovernanceRules,
    electorate: &[(String, u64)],
) -> anyhow::Result<Vec<String>> {
    let (Some(from), Some(to)) = (
        view["electorate_from"].as_u64(),
        view["electorate_to"].as_u64(),
    ) else {
        return Ok(electorate.iter().map(|(c, _)| c.clone()).collect());
    };
    let mut wrong = Vec::new();
    for (who, weight) in electorate {
        let earned = get(&format!("{base}/api/v1/rewards/{}", urlencode(who))).await?;
        let rewards: Vec<ContributorReward> = earned["epochs"]
            .as_array()
            .context("a contributor's rewards")?
            .iter()
            .filter(|e| {
                e["epoch"]
                    .as_u64()
                    .is_some_and(|n| (from..=to).contains(&n))
            })
            .map(|e| ContributorReward {
                contributor: who.clone(),
                points: e["points"].as_u64().unwrap_or(0),
                base: e["base"].as_u64().unwrap_or(0),
                bounty: e["bounty"].as_u64().unwrap_or(0),
                amount: e["amount"].as_u64().unwrap_or(0),
                cumulative: 0,
                flagged: e["flagged"].as_bool().unwrap_or(true),
            })
            .collect();
        let expected = covermap_scoring::governance::electorate(rules, &rewards);
        if expected.get(who) != Some(weight) {
            wrong.push(who.clone());
        }
    }
    Ok(wrong)
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
