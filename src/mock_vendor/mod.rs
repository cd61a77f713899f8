//! Loopback mock vendors.
