//! Mock Vivo push (issue 4, in progress).
