//! Mock Xiaomi push (issue 4, in progress).
