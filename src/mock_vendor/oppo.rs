//! Mock Oppo push (issue 4, in progress).
