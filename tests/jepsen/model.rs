//! The sequential specification of one key of the KV store (API.md §3), as the checker needs
//! it: given the state of a key and one completed operation, is that operation's answer
//! possible, and what is the state after it?
//!
//! State per key: the current value with its mod revision, or absent; plus `floor`, a lower
//! bound every later write's revision must exceed. Revisions are the Raft index of the entry
//! that made the change (§5.3 log matching: indexes strictly increase along the log), so along
//! any linearization of one key the revisions of the writes strictly increase, and an ok write's
//! returned revision must exceed every earlier write's.
//!
//! An op with unknown outcome carries no revision. When it is linearized, the value it wrote
//! has a revision known only to be above the floor at that point (`Rev::Above`); a later read
//! or compare-and-set answer that names the revision pins it down (`Rev::Known`). This keeps
//! the step function deterministic: an unknown op is either applied where it is linearized, or
//! it never happened, which the search expresses by linearizing it after everything else (its
//! return time is +infinity), so no branching is needed here.

use crate::history::{Input, Output, Value};

/// What is known about the current value's mod revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rev {
    Known(u64),
    /// Written by an op with unknown outcome: strictly greater than this bound.
    Above(u64),
}

impl Rev {
    /// If the revision could be `r`, the refined knowledge (it is `r`).
    fn pin(self, r: u64) -> Option<Rev> {
        match self {
            Rev::Known(k) if k == r => Some(Rev::Known(k)),
            Rev::Above(a) if r > a => Some(Rev::Known(r)),
            _ => None,
        }
    }

    /// Whether the revision could be something other than `r`.
    fn could_differ(self, r: u64) -> bool {
        match self {
            Rev::Known(k) => k != r,
            Rev::Above(_) => true,
        }
    }

    /// The tightest lower bound known for this revision (it is >= the result).
    fn at_least(self) -> u64 {
        match self {
            Rev::Known(k) => k,
            Rev::Above(a) => a + 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct KeyState {
    /// `None`: the key is absent.
    pub current: Option<(Value, Rev)>,
    /// Every later write's revision is strictly greater than this (0 at the start).
    pub floor: u64,
}

impl KeyState {
    /// Refine the state to agree with an observed `(value, mod revision)` or absence.
    fn observe(self, seen: Option<(Value, u64)>) -> Option<KeyState> {
        match (self.current, seen) {
            (None, None) => Some(self),
            (Some((v, rev)), Some((sv, sr))) if v == sv => {
                let pinned = rev.pin(sr)?;
                Some(KeyState {
                    current: Some((v, pinned)),
                    floor: self.floor.max(sr),
                })
            }
            _ => None,
        }
    }

    /// Refine the state to agree with an observed mod revision alone (`None` = absent), as a
    /// `prev_revision` or a passed `if_revision` reveals it.
    fn observe_revision(self, seen: Option<u64>) -> Option<KeyState> {
        match (self.current, seen) {
            (None, None) => Some(self),
            (Some((v, rev)), Some(r)) => {
                let pinned = rev.pin(r)?;
                Some(KeyState {
                    current: Some((v, pinned)),
                    floor: self.floor.max(r),
                })
            }
            _ => None,
        }
    }

    /// The precondition `if_revision` as an observation: 0 = absent, r = mod revision r.
    fn precondition(self, if_revision: Option<u64>) -> Option<KeyState> {
        match if_revision {
            None => Some(self),
            Some(0) => self.observe_revision(None),
            Some(r) => self.observe_revision(Some(r)),
        }
    }

    /// Whether `if_revision` could fail in this state.
    fn precondition_could_fail(self, if_revision: Option<u64>) -> bool {
        match (if_revision, self.current) {
            (None, _) => false,
            (Some(0), current) => current.is_some(),
            (Some(_), None) => true,
            (Some(r), Some((_, rev))) => rev.could_differ(r),
        }
    }

    /// A lower bound for the revision of a write applied now.
    fn write_floor(self) -> u64 {
        let current = self.current.map_or(0, |(_, rev)| rev.at_least());
        self.floor.max(current)
    }
}

/// Apply one completed op to `state`. `None`: this answer is impossible in this state.
/// `Output::Failed` never reaches here (the checker drops failed ops first).
pub fn step(state: KeyState, input: Input, output: Output) -> Option<KeyState> {
    match (input, output) {
        (Input::Get | Input::LeaseGet, Output::Read(seen)) => state.observe(seen),
        (Input::Get | Input::LeaseGet, Output::Unknown) => Some(state),
        (
            Input::Put { value, if_revision },
            Output::Written {
                revision,
                prev_revision,
            },
        ) => {
            let s = state.precondition(if_revision)?;
            let s = s.observe_revision(prev_revision)?;
            (revision > s.write_floor()).then_some(KeyState {
                current: Some((value, Rev::Known(revision))),
                floor: revision,
            })
        }
        (Input::Delete { if_revision }, Output::Deleted { revision, deleted }) => {
            let s = state.precondition(if_revision)?;
            if deleted != s.current.is_some() || revision <= s.write_floor() {
                return None;
            }
            Some(KeyState {
                current: None,
                floor: revision,
            })
        }
        (
            Input::Put { if_revision, .. } | Input::Delete { if_revision },
            Output::Mismatch { current },
        ) => {
            let if_revision = if_revision?;
            let s = state.observe(current)?;
            s.precondition_could_fail(Some(if_revision)).then_some(s)
        }
        (Input::Put { value, if_revision }, Output::Unknown) => {
            match state.precondition(if_revision) {
                // Applied here; had it failed its precondition it changed nothing, which is the
                // same as linearizing it last.
                Some(s) => Some(KeyState {
                    current: Some((value, Rev::Above(s.write_floor()))),
                    floor: s.floor,
                }),
                None => Some(state),
            }
        }
        (Input::Delete { if_revision }, Output::Unknown) => match state.precondition(if_revision) {
            Some(s) => Some(KeyState {
                current: None,
                floor: s.write_floor(),
            }),
            None => Some(state),
        },
        // A read answered as a write or the reverse: the recorder is broken, or the server is.
        _ => None,
    }
}
