//! Mock Honor push (issue 4, in progress).
