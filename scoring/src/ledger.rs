//! The rewards ledger's Merkle tree: one leaf per contributor holding its cumulative total after
//! an epoch, so a contributor can prove its amount against the epoch's root with a few hashes,
//! and anyone holding the epoch's inputs can recompute the root.
//!
//! - A leaf hashes `0x00 ‖ epoch (u64 BE) ‖ distributor ‖ contributor ‖ cumulative (u128 BE)`,
//!   each string preceded by its length (u32 BE), so no two leaves share an encoding.
//! - A node hashes `0x01 ‖ min(a, b) ‖ max(a, b)`: pairs are sorted, so a proof is only the
//!   sibling hashes, without left/right flags. The `0x00`/`0x01` prefixes keep a leaf from ever
//!   passing for a node (the second-preimage attack on plain Merkle trees).
//! - Leaves are ordered by their hash before the tree is built, so the same set of leaves gives
//!   the same root whatever order they came in. An odd node at a level is carried up as it is.
//! - The root of no leaves is 32 zero bytes.

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest.
pub type Hash = [u8; 32];

/// One contributor's cumulative reward after an epoch, as the ledger commits to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LedgerLeaf {
    pub epoch: u64,
    /// Which distribution this is (a deployment's name), so roots of two deployments never mix.
    pub distributor: String,
    pub contributor: String,
    /// Base units earned from the first epoch to this one.
    pub cumulative: u128,
}

impl LedgerLeaf {
    pub fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        h.update([0x00]);
        h.update(self.epoch.to_be_bytes());
        for s in [&self.distributor, &self.contributor] {
            // Strings longer than 4 GiB do not name anyone; their length saturates.
            h.update(u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
            h.update(s.as_bytes());
        }
        h.update(self.cumulative.to_be_bytes());
        h.finalize().into()
    }
}

fn node(a: &Hash, b: &Hash) -> Hash {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(lo);
    h.update(hi);
    h.finalize().into()
}

/// A built tree: every level, leaves (sorted by hash) first, the root last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree of `leaves` (in any order; duplicates are kept as given).
    pub fn new<'a>(leaves: impl IntoIterator<Item = &'a LedgerLeaf>) -> Self {
        let mut level: Vec<Hash> = leaves.into_iter().map(LedgerLeaf::hash).collect();
        level.sort_unstable();
        let mut levels = vec![level];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up = below
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => node(a, b),
                    [a] => *a,
                    _ => unreachable!("chunks(2) gives one or two"),
                })
                .collect();
            levels.push(up);
        }
        Self { levels }
    }

    /// The root; 32 zero bytes for a tree of no leaves.
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0; 32])
    }

    /// The sibling hashes from `leaf` up to the root; `None` if `leaf` is not in the tree.
    pub fn proof(&self, leaf: &LedgerLeaf) -> Option<Vec<Hash>> {
        let target = leaf.hash();
        let mut index = self.levels.first()?.binary_search(&target).ok()?;
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if let Some(h) = level.get(sibling) {
                proof.push(*h);
            }
            index /= 2;
        }
        Some(proof)
    }
}

/// Whether `proof` takes `leaf` to `root`.
pub fn verify(leaf: &LedgerLeaf, proof: &[Hash], root: &Hash) -> bool {
    let mut h = leaf.hash();
    for sibling in proof {
        h = node(&h, sibling);
    }
    &h == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(contributor: &str, cumulative: u128) -> LedgerLeaf {
        LedgerLeaf {
            epoch: 7,
            distributor: "covermap-test".into(),
            contributor: contributor.into(),
            cumulative,
        }
    }

    /// A small deterministic generator, so the properties run over many shapes of tree.
    fn leaves(seed: u64, n: usize) -> Vec<LedgerLeaf> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                leaf(
                    &format!("contributor-{i}-{}", x % 1000),
                    u128::from(x % 1_000_000),
                )
            })
            .collect()
    }

    #[test]
    fn every_leaf_proves_against_the_root_and_no_other_does() {
        for n in 0..40 {
            let all = leaves(n as u64, n);
            let tree = MerkleTree::new(&all);
            let root = tree.root();
            for l in &all {
                let proof = tree.proof(l).unwrap();
                assert!(verify(l, &proof, &root), "n={n} {l:?}");
                assert!(proof.len() <= 64 - (n as u64).leading_zeros() as usize);
                // The same contributor claiming one base unit more fails.
                let greedy = LedgerLeaf {
                    cumulative: l.cumulative + 1,
                    ..l.clone()
                };
                assert!(!verify(&greedy, &proof, &root));
                assert!(tree.proof(&greedy).is_none());
            }
        }
        assert_eq!(MerkleTree::new(&[] as &[LedgerLeaf]).root(), [0; 32]);
    }

    #[test]
    fn the_same_leaves_in_any_order_give_the_same_root() {
        for n in 1..30 {
            let mut all = leaves(1000 + n as u64, n);
            let root = MerkleTree::new(&all).root();
            all.reverse();
            assert_eq!(MerkleTree::new(&all).root(), root);
            all.rotate_left(n / 2);
            assert_eq!(MerkleTree::new(&all).root(), root);
        }
    }

    #[test]
    fn each_field_and_the_domain_are_bound() {
        let base = leaf("alice", 100);
        let variants = [
            LedgerLeaf {
                epoch: 8,
                ..base.clone()
            },
            LedgerLeaf {
                distributor: "other".into(),
                ..base.clone()
            },
            LedgerLeaf {
                contributor: "alicf".into(),
                ..base.clone()
            },
            LedgerLeaf {
                cumulative: 101,
                ..base.clone()
            },
            // Moving bytes between the two strings changes the hash (length prefixes).
            LedgerLeaf {
                distributor: "covermap-testa".into(),
                contributor: "lice".into(),
                ..base.clone()
            },
        ];
        for v in &variants {
            assert_ne!(v.hash(), base.hash(), "{v:?}");
        }
        // A node is the prefixed hash of its sorted pair, whichever side each child is on.
        let (a, b) = (leaf("a", 1).hash(), leaf("b", 2).hash());
        let two = MerkleTree::new(&[leaf("a", 1), leaf("b", 2)]);
        assert_eq!(two.root(), node(&a, &b));
        assert_eq!(two.root(), node(&b, &a), "pairs are sorted");
    }

    /// A root computed by hand for two leaves: sha256(0x01 ‖ min ‖ max) of the leaf hashes.
    #[test]
    fn a_two_leaf_root_matches_the_definition() {
        let l = leaf("alice", 5);
        let mut bytes = vec![0x00];
        bytes.extend_from_slice(&7u64.to_be_bytes());
        bytes.extend_from_slice(&13u32.to_be_bytes());
        bytes.extend_from_slice(b"covermap-test");
        bytes.extend_from_slice(&5u32.to_be_bytes());
        bytes.extend_from_slice(b"alice");
        bytes.extend_from_slice(&5u128.to_be_bytes());
        let by_hand: Hash = Sha256::digest(&bytes).into();
        assert_eq!(l.hash(), by_hand);
        let m = leaf("bob", 9);
        let (lo, hi) = if l.hash() < m.hash() {
            (l.hash(), m.hash())
        } else {
            (m.hash(), l.hash())
        };
        let mut n = vec![0x01];
        n.extend_from_slice(&lo);
        n.extend_from_slice(&hi);
        let root: Hash = Sha256::digest(&n).into();
        assert_eq!(MerkleTree::new(&[l, m]).root(), root);
    }
}
