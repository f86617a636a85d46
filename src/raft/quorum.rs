//! Majority arithmetic, as pure functions: the index a quorum has reached, the outcome of a vote,
//! the round a quorum has acknowledged.
//!
//! A quorum is a strict majority of the voters (§5.2, §5.3). Every function here takes the
//! voters' values explicitly, so the same code serves joint consensus later (thesis §4.3: a
//! joint decision is the minimum of the two majorities' answers).

use super::types::Index;

/// The size of a majority of `voters` voters (a lone voter is its own majority).
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The largest value that at least a majority of the given values reach: with one value per
/// voter (its match_index), the highest index replicated on a quorum (§5.3). `0` for no voters.
pub fn quorum_value(mut values: Vec<u64>) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[majority(values.len()) - 1]
}

/// `quorum_value` over match indexes: the commit candidate of §5.3/§5.4.2 (the caller must still
/// check that the entry there is of the current term).
pub fn committed_index(match_indexes: &[Index]) -> Index {
    Index(quorum_value(match_indexes.iter().map(|i| i.0).collect()))
}

/// Where an election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// The result of an election among `voters` voters with `granted` grants and `rejected`
/// rejections so far (§5.2: a candidate wins with votes from a majority).
pub fn vote_result(voters: usize, granted: usize, rejected: usize) -> VoteResult {
    let q = majority(voters);
    if granted >= q {
        VoteResult::Won
    } else if voters.saturating_sub(rejected) < q {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_sizes() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn committed_index_is_the_majority_match() {
        let idx = |v: &[u64]| committed_index(&v.iter().map(|&i| Index(i)).collect::<Vec<_>>());
        assert_eq!(idx(&[]), Index(0));
        assert_eq!(idx(&[7]), Index(7));
        assert_eq!(idx(&[5, 1, 3]), Index(3));
        assert_eq!(idx(&[5, 5, 1, 1]), Index(1));
        assert_eq!(idx(&[9, 2, 8, 4, 6]), Index(6));
    }

    #[test]
    fn vote_results() {
        assert_eq!(vote_result(1, 1, 0), VoteResult::Won);
        assert_eq!(vote_result(3, 1, 0), VoteResult::Pending);
        assert_eq!(vote_result(3, 2, 1), VoteResult::Won);
        assert_eq!(vote_result(3, 1, 2), VoteResult::Lost);
        assert_eq!(vote_result(4, 2, 2), VoteResult::Lost);
        assert_eq!(vote_result(5, 2, 2), VoteResult::Pending);
    }
}
