//! Mock Huawei push (issue 4, in progress).
