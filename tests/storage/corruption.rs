//! Corruption: a bit flipped in each region of the data directory gives its documented
//! outcome. The tail record of the last segment: repaired like a torn write (it cannot be told
//! apart from one, and nothing valid follows it). Anything else (a record with valid records
//! after it, a sealed segment, the snapshot, a hard state record in a sealed place): an error
//! naming the file and the offset of the damaged record, with nothing on disk changed.
