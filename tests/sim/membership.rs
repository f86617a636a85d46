//! Membership changes in the simulator (thesis ch. 4): placeholder, filled below.
