//! What happened to each file, and what that adds up to per fraud type: the share caught (earning
//! nothing and crediting no cells) and, for honest files, the share wrongly flagged. Pure: the
//! harness that ran the files through covermap fills in the outcomes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::scenario::{FileKind, FraudType, Label};

/// Issue 14's targets: at least this share of the fraud files of every type caught …
pub const CAUGHT_TARGET: f64 = 0.95;
/// … and at most this share of honest files flagged.
pub const FLAGGED_LIMIT: f64 = 0.02;

/// What covermap did with one file, as read through its public API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileOutcome {
    pub file: String,
    pub contributor: String,
    pub kind: FileKind,
    pub label: Label,
    pub strength: String,
    /// `STATUS code` when the upload was refused (4xx), e.g. `422 implausible_speed`.
    pub refused: Option<String>,
    pub upload_id: Option<i64>,
    /// The upload record's `status`: `processed`, `rejected` (or `queued` if it never left).
    pub status: Option<String>,
    /// The upload record's `trust.verdict`, where the record has one.
    pub trust_verdict: Option<String>,
    /// The upload record's `cells`.
    pub cells: Option<i64>,
    /// What the file's contributor earned over the run's epochs, base units.
    pub contributor_amount: u64,
    /// Whether the contributor was flagged (penalised) in any of the run's epochs.
    pub contributor_flagged: bool,
}

impl FileOutcome {
    /// Refused at upload, rejected, or given the trust verdict `flagged`.
    pub fn flagged(&self) -> bool {
        self.refused.is_some()
            || self.status.as_deref() == Some("rejected")
            || self.trust_verdict.as_deref() == Some("flagged")
    }

    /// Flagged (a flagged upload is kept off every map), or processed into no cell at all.
    pub fn credits_no_cells(&self) -> bool {
        self.flagged() || self.cells == Some(0)
    }

    pub fn earns_nothing(&self) -> bool {
        self.contributor_amount == 0
    }

    /// A fraud file is caught when it earns nothing and credits no cells.
    pub fn caught(&self) -> bool {
        self.earns_nothing() && self.credits_no_cells()
    }
}

/// Counts of one group of fraud files.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub files: usize,
    pub caught: usize,
    pub earns_nothing: usize,
    pub credits_no_cells: usize,
}

impl Tally {
    fn add(&mut self, o: &FileOutcome) {
        self.files += 1;
        self.caught += usize::from(o.caught());
        self.earns_nothing += usize::from(o.earns_nothing());
        self.credits_no_cells += usize::from(o.credits_no_cells());
    }

    pub fn caught_share(&self) -> f64 {
        share(self.caught, self.files)
    }
}

fn share(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// One fraud type's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeRow {
    pub fraud: FraudType,
    #[serde(flatten)]
    pub all: Tally,
    pub by_strength: BTreeMap<String, Tally>,
    pub by_kind: BTreeMap<&'static str, Tally>,
}

/// The honest files' row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HonestRow {
    pub files: usize,
    pub flagged: usize,
    /// Honest files that credited no cell (flagged, or all their observations left out).
    pub credits_no_cells: usize,
    pub by_kind: BTreeMap<&'static str, (usize, usize)>,
    /// Why honest files were flagged: reason → files.
    pub flagged_why: BTreeMap<String, usize>,
}

/// The whole measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub rows: Vec<TypeRow>,
    pub honest: HonestRow,
    /// Base units paid over the run's epochs, and the part of it fraud contributors got.
    pub distributed: u64,
    pub to_fraud: u64,
    pub fraud_contributors_paid: usize,
    pub honest_contributors_paid: usize,
    /// Base units paid to the contributors of each label (`honest` or the fraud type).
    pub paid_by_label: BTreeMap<String, u64>,
}

impl Report {
    /// Adds up `outcomes`; `earned` is every contributor's label and amount.
    pub fn from_outcomes(
        outcomes: &[FileOutcome],
        earned: &BTreeMap<String, (Label, u64)>,
    ) -> Self {
        let mut rows: BTreeMap<FraudType, TypeRow> = BTreeMap::new();
        let mut honest = HonestRow::default();
        for o in outcomes {
            match o.label {
                Label::Honest => {
                    honest.files += 1;
                    let flagged = o.flagged();
                    honest.flagged += usize::from(flagged);
                    honest.credits_no_cells += usize::from(o.credits_no_cells());
                    let k = honest.by_kind.entry(o.kind.as_str()).or_default();
                    k.0 += 1;
                    k.1 += usize::from(flagged);
                    if flagged {
                        let why = o
                            .refused
                            .clone()
                            .or_else(|| o.trust_verdict.clone().map(|v| format!("trust {v}")))
                            .or_else(|| o.status.clone())
                            .unwrap_or_default();
                        *honest.flagged_why.entry(why).or_default() += 1;
                    }
                }
                Label::Fraud(fraud) => {
                    let row = rows.entry(fraud).or_insert_with(|| TypeRow {
                        fraud,
                        all: Tally::default(),
                        by_strength: BTreeMap::new(),
                        by_kind: BTreeMap::new(),
                    });
                    row.all.add(o);
                    row.by_strength
                        .entry(o.strength.clone())
                        .or_default()
                        .add(o);
                    row.by_kind.entry(o.kind.as_str()).or_default().add(o);
                }
            }
        }
        let distributed = earned.values().map(|(_, a)| a).sum();
        let to_fraud = earned
            .values()
            .filter(|(l, _)| *l != Label::Honest)
            .map(|(_, a)| a)
            .sum();
        let paid = |honest: bool| {
            earned
                .values()
                .filter(|(l, a)| (*l == Label::Honest) == honest && *a > 0)
                .count()
        };
        let mut paid_by_label: BTreeMap<String, u64> = BTreeMap::new();
        for (label, amount) in earned.values() {
            *paid_by_label.entry(label.as_str().to_owned()).or_default() += amount;
        }
        Self {
            rows: FraudType::ALL
                .iter()
                .filter_map(|t| rows.remove(t))
                .collect(),
            honest,
            distributed,
            to_fraud,
            fraud_contributors_paid: paid(false),
            honest_contributors_paid: paid(true),
            paid_by_label,
        }
    }

    pub fn honest_flagged_share(&self) -> f64 {
        share(self.honest.flagged, self.honest.files)
    }

    pub fn fraud_reward_share(&self) -> f64 {
        if self.distributed == 0 {
            0.0
        } else {
            self.to_fraud as f64 / self.distributed as f64
        }
    }

    /// Every target missed, in words; empty when all are met.
    pub fn missed_targets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.all.caught_share() < CAUGHT_TARGET)
            .map(|r| {
                format!(
                    "{}: {:.0} % of {} files caught (target ≥ {:.0} %)",
                    r.fraud,
                    100.0 * r.all.caught_share(),
                    r.all.files,
                    100.0 * CAUGHT_TARGET
                )
            })
            .collect();
        if self.honest_flagged_share() > FLAGGED_LIMIT {
            out.push(format!(
                "honest: {:.1} % of {} files flagged (target ≤ {:.0} %)",
                100.0 * self.honest_flagged_share(),
                self.honest.files,
                100.0 * FLAGGED_LIMIT
            ));
        }
        out
    }

    /// The table for BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let pct = |n: usize, of: usize| format!("{:.0} %", 100.0 * share(n, of));
        let mut s = String::from(
            "| files of | kind | files | earn nothing | credit no cells | caught (both) | by strength: caught / files |\n|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let kinds = r.by_kind.keys().copied().collect::<Vec<_>>().join(" + ");
            let strengths = r
                .by_strength
                .iter()
                .map(|(k, t)| format!("{k} {}/{}", t.caught, t.files))
                .collect::<Vec<_>>()
                .join(", ");
            s += &format!(
                "| {} | {kinds} | {} | {} | {} | **{}** | {strengths} |\n",
                r.fraud,
                r.all.files,
                pct(r.all.earns_nothing, r.all.files),
                pct(r.all.credits_no_cells, r.all.files),
                pct(r.all.caught, r.all.files),
            );
        }
        let h = &self.honest;
        let kinds = h
            .by_kind
            .iter()
            .map(|(k, (n, f))| format!("{k} {f}/{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        s += &format!(
            "\n| honest files | flagged | credit no cells | flagged by kind |\n|---|---|---|---|\n| {} | **{}** | {} | {kinds} |\n",
            h.files,
            pct(h.flagged, h.files),
            pct(h.credits_no_cells, h.files),
        );
        s += &format!(
            "\nRewards: {} base units distributed, {:.1} % of them to fraud contributors \
             ({} of them paid; {} honest contributors paid).\n",
            self.distributed,
            100.0 * self.fraud_reward_share(),
            self.fraud_contributors_paid,
            self.honest_contributors_paid
        );
        let mut paid: Vec<(&String, &u64)> = self
            .paid_by_label
            .iter()
            .filter(|(l, a)| l.as_str() != "honest" && **a > 0)
            .collect();
        paid.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if !paid.is_empty() {
            let shares: Vec<String> = paid
                .iter()
                .map(|(l, a)| {
                    format!(
                        "{l} {:.1} %",
                        100.0 * **a as f64 / self.distributed.max(1) as f64
                    )
                })
                .collect();
            s += &format!("Paid to fraud, by type: {}.\n", shares.join(", "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(label: Label, refused: bool, amount: u64, cells: i64) -> FileOutcome {
        FileOutcome {
            file: "f".into(),
            contributor: "c".into(),
            kind: FileKind::Gpx,
            label,
            strength: "s".into(),
            refused: refused.then(|| "422 implausible_speed".into()),
            upload_id: None,
            status: Some("processed".into()),
            trust_verdict: None,
            cells: Some(cells),
            contributor_amount: amount,
            contributor_flagged: false,
        }
    }

    #[test]
    fn caught_needs_both_nothing_earned_and_no_cell_credited() {
        let t = Label::Fraud(FraudType::Teleport);
        assert!(outcome(t, true, 0, 5).caught());
        assert!(!outcome(t, true, 10, 5).caught(), "earned");
        assert!(!outcome(t, false, 0, 5).caught(), "credited cells");
        assert!(outcome(t, false, 0, 0).caught(), "nothing kept");
        let mut flagged = outcome(t, false, 0, 5);
        flagged.trust_verdict = Some("flagged".into());
        assert!(flagged.caught());
    }

    #[test]
    fn the_report_adds_up_per_type_and_for_honest_files() {
        let t = Label::Fraud(FraudType::Teleport);
        let outcomes = vec![
            outcome(t, true, 0, 3),
            outcome(t, false, 0, 3),
            outcome(Label::Honest, false, 5, 3),
            outcome(Label::Honest, true, 5, 3),
        ];
        let earned = BTreeMap::from([
            ("a".to_owned(), (Label::Honest, 75)),
            ("b".to_owned(), (t, 25)),
        ]);
        let r = Report::from_outcomes(&outcomes, &earned);
        assert_eq!(r.rows.len(), 1);
        assert_eq!((r.rows[0].all.files, r.rows[0].all.caught), (2, 1));
        assert_eq!((r.honest.files, r.honest.flagged), (2, 1));
        assert!((r.fraud_reward_share() - 0.25).abs() < 1e-12);
        assert_eq!(r.missed_targets().len(), 2);
        assert!(r.markdown().contains("| teleport | gpx | 2 |"));
        assert!(r.markdown().contains("teleport 25.0 %"), "{}", r.markdown());
    }
}
