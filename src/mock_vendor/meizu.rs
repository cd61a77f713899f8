//! Mock Meizu push (issue 4, in progress).
